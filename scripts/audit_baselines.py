"""Rule baselines: logistic regressions on thumbnails and on the border ring alone, beside the model.

Trained on the fold's train split, tested on its test split, so they face exactly
the model's test images; the margin model - baseline says how much the deep model
adds over what a linear model reads off a 28x28 picture (or off the border alone).
"""


import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from cxrflow import baselines
from cxrflow.data import load_split, open_log


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class F1 (zero_division=0, as the model's report) and accuracy."""
    f1 = f1_score(y_true, y_pred, labels=list(classes), average=None, zero_division=0)
    return {"f1": {c: float(v) for c, v in zip(classes, f1)}, "accuracy": float(accuracy_score(y_true, y_pred))}


def run_baselines(train_csv: str, test_csv: str, model_metrics: Mapping[str, Any], classes: Sequence[str],
                  settings: Mapping[str, Any]) -> dict[str, Any]:
    """Both baselines' scores, the model's F1 per class and the margins for classes[0]."""
    classes = list(classes)
    size = settings["image_size"]
    train_images, _, train = load_split(train_csv, classes, size)
    test_images, _, test = load_split(test_csv, classes, size)
    if len(test) == 0:
        raise ValueError(f"{test_csv}: the test split is empty, no baseline can be scored")
    features = {
        "thumbnail": lambda x: baselines.thumbnail_features(x, settings["thumbnail_size"]),
        "border_ring": lambda x: baselines.border_ring_features(x, settings["ring_width"], settings["thumbnail_size"]),
    }
    y_train, y_test = train["label"].to_numpy(), test["label"].to_numpy()
    model_f1 = {c: float(model_metrics["per_class"][c]["f1-score"]) for c in classes}
    positive = classes[0]
    out: dict[str, Any] = {"classes": classes, "positive_class": positive, "settings": dict(settings),
                           "n_train": int(len(train)), "n_test": int(len(test)),
                           "model": {"f1": model_f1, "accuracy": float(model_metrics["accuracy"])}}
    for name, featurize in features.items():
        probs = baselines.logistic_baseline(featurize(train_images), y_train, featurize(test_images), settings["seed"])
        predicted = np.unique(y_train)[probs.argmax(axis=1)]
        result = score(y_test, predicted, classes)
        result["margin_f1"] = model_f1[positive] - result["f1"][positive]
        out[name] = result
    return out


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        metrics = json.loads(Path(sm.input.metrics).read_text())["metrics"]
        result = run_baselines(sm.input.train, sm.input.test, metrics, sm.params.classes, sm.params.settings)
        Path(sm.output[0]).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        log.info("baselines: thumbnail F1 %s, border ring F1 %s, model F1 %s", result["thumbnail"]["f1"],
                 result["border_ring"]["f1"], result["model"]["f1"])
    except Exception:
        log.exception("baselines failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
