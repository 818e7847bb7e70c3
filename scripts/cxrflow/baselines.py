"""Trivial baselines a deep model must beat before its score means anything.

On small, multi-source COVID-19 sets a logistic regression on 28x28 thumbnails
already scores ~0.8, and one that sees only a 24-pixel border ring (no lung at
all) ~0.75: the classes differ in how the images were produced (source, text,
borders), not only in the lungs. These functions make those controls cheap:
thumbnail and border-ring features for a linear model, and ``mask_center`` to
feed the CNN itself a border-only image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .data import load_split, read_gray
from .results_io import json_safe, read_predictions, write_json
from .uncertainty import paired_bootstrap

LOG = logging.getLogger(__name__)

# lbfgs on a few thousand standardised pixel features needs more than sklearn's 100 iterations.
_MAX_ITER = 5000


def _as_stack(images: np.ndarray) -> np.ndarray:
    """[N,H,W] or [N,H,W,1] uint8 -> [N,H,W] uint8; anything else is a caller error."""
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(f"expected grayscale images [N,H,W] or [N,H,W,1], got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {arr.dtype}")
    return arr


def load_gray_images(paths: Iterable[str | Path]) -> np.ndarray:
    """Read image files as one uint8 [N,H,W] grayscale stack; unreadable or mismatched sizes raise."""
    images = []
    for path in paths:
        img = read_gray(path)
        if images and img.shape != images[0].shape:
            raise ValueError(f"{path} is {img.shape}, the first image is {images[0].shape}: preprocess first")
        images.append(img)
    if not images:
        raise ValueError("no images given")
    return np.stack(images)


def thumbnail_features(images: np.ndarray, size: int) -> np.ndarray:
    """Each image shrunk to size x size (INTER_AREA: a proper average) and scaled to [0, 1]: [N, size*size]."""
    stack = _as_stack(images)
    thumbs = [cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in stack]
    return np.stack(thumbs).reshape(len(stack), size * size).astype(np.float32) / 255.0


def mask_center(images: np.ndarray, keep_border: int) -> np.ndarray:
    """Black out everything but an outer ring ``keep_border`` pixels wide (the lung field goes).

    The border-only control: a model that still separates the classes on these
    images is reading acquisition artefacts, not lungs. Works on [N,H,W] and
    [N,H,W,C] of any dtype; returns a copy.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected images [N,H,W] or [N,H,W,C], got shape {arr.shape}")
    h, w = arr.shape[1:3]
    if keep_border < 1 or 2 * keep_border >= min(h, w):
        raise ValueError(f"keep_border={keep_border} leaves no centre to mask in {h}x{w} images")
    out = arr.copy()
    out[:, keep_border : h - keep_border, keep_border : w - keep_border] = 0
    return out


def border_ring_features(images: np.ndarray, ring_width: int, size: int) -> np.ndarray:
    """Thumbnail features of the images with all but the outer ``ring_width`` pixels zeroed."""
    return thumbnail_features(mask_center(_as_stack(images), ring_width), size)


def logistic_baseline(X_train: np.ndarray, y_train: Sequence, X_test: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities [n_test, n_classes] of a standardised logistic regression, columns in sorted label order."""
    y = np.asarray(y_train)
    if len(np.unique(y)) < 2:
        raise ValueError("logistic baseline needs at least two classes in the training data")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=_MAX_ITER, random_state=seed))
    model.fit(X_train, y)
    return model.predict_proba(X_test)


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class F1 (zero_division=0, as the model's report) and accuracy."""
    f1 = f1_score(y_true, y_pred, labels=list(classes), average=None, zero_division=0)
    return {"f1": {c: float(v) for c, v in zip(classes, f1)}, "accuracy": float(accuracy_score(y_true, y_pred))}


def margin_intervals(
    model_predictions: pd.DataFrame,
    baseline_predictions: pd.DataFrame,
    classes: Sequence[str],
    bootstrap: Mapping[str, Any],
) -> dict[str, Any]:
    """Paired BCa intervals of model - baseline (macro and positive-class F1) over the same test units."""
    ci = paired_bootstrap({"model": model_predictions, "baseline": baseline_predictions}, classes,
                          n_boot=bootstrap["n"], seed=bootstrap["seed"], level=bootstrap["level"])  # fmt: skip
    return json_safe(ci["model - baseline"])


def run_baselines(
    train_csv: str,
    test_csv: str,
    model_metrics: Mapping[str, Any],
    classes: Sequence[str],
    settings: Mapping[str, Any],
    model_predictions: pd.DataFrame | None = None,
    bootstrap: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Thumbnail and border-ring baselines beside the model: their scores, the model's F1 per class, and
    the margins (model - baseline) for classes[0].

    Trained on the fold's train split and tested on its test split, so they face exactly
    the model's test images. ``settings`` is the config's ``audit.baselines``. Given the
    model's predictions and the bootstrap settings, each margin gets a paired interval
    (``margin``: macro and positive-class F1, each {estimate, low, high, n_used}).
    """
    classes = list(classes)
    size = settings["image_size"]
    train_images, _, train = load_split(train_csv, classes, size)
    test_images, _, test = load_split(test_csv, classes, size)
    if len(test) == 0:
        raise ValueError(f"{test_csv}: the test split is empty, no baseline can be scored")
    features = {
        "thumbnail": lambda x: thumbnail_features(x, settings["thumbnail_size"]),
        "border_ring": lambda x: border_ring_features(x, settings["ring_width"], settings["thumbnail_size"]),
    }
    y_train, y_test = train["label"].to_numpy(), test["label"].to_numpy()
    model_f1 = {c: float(model_metrics["per_class"][c]["f1-score"]) for c in classes}
    positive = classes[0]
    out: dict[str, Any] = {"classes": classes, "positive_class": positive, "settings": dict(settings),
                           "n_train": int(len(train)), "n_test": int(len(test)),
                           "model": {"f1": model_f1, "accuracy": float(model_metrics["accuracy"])}}  # fmt: skip
    for name, featurize in features.items():
        probs = logistic_baseline(featurize(train_images), y_train, featurize(test_images), settings["seed"])
        predicted = np.unique(y_train)[probs.argmax(axis=1)]
        result = score(y_test, predicted, classes)
        result["margin_f1"] = model_f1[positive] - result["f1"][positive]
        if model_predictions is not None and bootstrap is not None:
            table = pd.DataFrame({"image_id": test["image_id"].to_numpy(), "patient_id": test["patient_id"].to_numpy(),
                                  "true_label": y_test, "predicted_label": predicted})  # fmt: skip
            if "group" in test.columns:
                table["group"] = test["group"].to_numpy()
            for k, cls in enumerate(np.unique(y_train)):
                table[f"prob_{cls}"] = probs[:, k]
            for cls in classes:
                if f"prob_{cls}" not in table:
                    table[f"prob_{cls}"] = 0.0
            model = model_predictions.set_index("image_id").loc[table["image_id"]].reset_index()
            result["margin"] = margin_intervals(model, table, classes, bootstrap)
        out[name] = result
    return out


def baselines_main(
    train_csv: str,
    test_csv: str,
    metrics_json: str,
    output: str,
    classes: Sequence[str],
    settings: Mapping[str, Any],
    predictions_csv: str | None = None,
    bootstrap: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Rule baselines: :func:`run_baselines` beside the fold's model (its metrics.json and predictions.csv),
    to baselines.json."""
    metrics = json.loads(Path(metrics_json).read_text())["metrics"]
    predictions = read_predictions(predictions_csv) if predictions_csv else None
    result = run_baselines(train_csv, test_csv, metrics, classes, settings, predictions, bootstrap)
    write_json(result, output)
    LOG.info(
        "baselines: thumbnail F1 %s, border ring F1 %s, model F1 %s",
        result["thumbnail"]["f1"],
        result["border_ring"]["f1"],
        result["model"]["f1"],
    )
    return result
