"""Bootstrap confidence intervals for test-set metrics, resampling patients.

A test set of ~40 images gives metrics with intervals tens of points wide; a
reviewer needs those intervals next to the point estimates. Images of one patient
are correlated, so the unit of resampling is the patient: a resampled patient
brings all of its images. Resampling with replacement is done exactly with
per-image weights (a patient drawn twice weighs 2), so every metric is computed
on the same weighted data that duplication would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

PER_CLASS_METRICS = ("precision", "recall", "f1", "roc_auc")


def check_predictions(predictions: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Validate the predictions.csv contract; return the probability columns in class order."""
    prob_cols = [f"prob_{c}" for c in classes]
    missing = {"patient_id", "true_label", "predicted_label", *prob_cols} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}")
    if predictions.empty:
        raise ValueError("predictions are empty")
    if predictions["patient_id"].isna().any():
        raise ValueError("predictions have rows without patient_id: patients cannot be resampled")
    for col in ("true_label", "predicted_label"):
        unknown = set(predictions[col].astype(str)) - set(classes)
        if unknown:
            raise ValueError(f"{col} has labels outside classes {list(classes)}: {sorted(unknown)}")
    if not np.isfinite(predictions[prob_cols].to_numpy(dtype=float)).all():
        raise ValueError("probability columns contain NaN or infinite values")
    return prob_cols


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision/recall/F1 and accuracy from (..., K, K) confusion counts; NaN where undefined."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    actual = cm.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
        # F1 = 2tp / (2tp + fp + fn); undefined only when the class is neither true nor predicted
        denom = predicted + actual
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        total = cm.sum(axis=(-2, -1))
        accuracy = np.where(total > 0, tp.sum(axis=-1) / total, np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def _bootstrap_auc(
    positive: np.ndarray, score: np.ndarray, patient_of_image: np.ndarray, draws: np.ndarray
) -> np.ndarray:
    """One-vs-rest ROC AUC for every resample at once (Mann-Whitney with weights, ties count 1/2).

    Equals sklearn's ``roc_auc_score(..., sample_weight=w)``; NaN where a resample
    has no positive or no negative image.
    """
    levels, level_of_image = np.unique(score, return_inverse=True)
    shape = (draws.shape[1], len(levels))
    # images of patient p at score level u, split by class: sparse (patients x levels)
    pos = coo_matrix((positive.astype(float), (patient_of_image, level_of_image)), shape=shape).tocsr()
    neg = coo_matrix(((~positive).astype(float), (patient_of_image, level_of_image)), shape=shape).tocsr()
    w_pos = (pos.T @ draws.T).T  # (n_boot, levels): weight of positives at each score level
    w_neg = (neg.T @ draws.T).T
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (w_pos * (neg_below + 0.5 * w_neg)).sum(axis=1) / pairs
    return np.where(pairs > 0, auc, np.nan)


def point_estimates(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics on the full data, computed with scikit-learn (the numbers a report states)."""
    prob_cols = check_predictions(predictions, classes)
    y = predictions["true_label"].astype(str).to_numpy()
    p = predictions["predicted_label"].astype(str).to_numpy()
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, p, labels=list(classes), average=None, zero_division=np.nan
    )
    per_class: dict[str, dict[str, float]] = {}
    for k, cls in enumerate(classes):
        positive = y == cls
        auc = (
            float(roc_auc_score(positive, predictions[prob_cols[k]].to_numpy(float)))
            if 0 < positive.sum() < len(y)
            else float("nan")
        )
        per_class[cls] = {
            "precision": float(prec[k]),
            "recall": float(rec[k]),
            "f1": float(f1[k]),
            "roc_auc": auc,
        }
    return {"accuracy": float(accuracy_score(y, p)), "per_class": per_class}


def percentile_interval(values: np.ndarray, estimate: float, level: float) -> dict[str, float | int]:
    """The ``level`` percentile interval of the finite resampled ``values``, beside the full-data estimate."""
    used = values[np.isfinite(values)]
    alpha = (1 - level) / 2
    low, high = np.quantile(used, [alpha, 1 - alpha]) if len(used) else (np.nan, np.nan)
    return {"estimate": estimate, "low": float(low), "high": float(high), "n_used": int(len(used))}


def bootstrap_ci(
    predictions: pd.DataFrame, classes: Sequence[str], *, n_boot: int, seed: int, level: float
) -> dict[str, Any]:
    """Percentile bootstrap CIs (patients resampled) for accuracy and per-class P/R/F1/ROC AUC.

    Each metric reports ``estimate`` (sklearn, full data), ``low``, ``high`` and
    ``n_used``: resamples where the metric is undefined (e.g. no image of the class
    drawn) are skipped and not counted. ROC AUC of a class is one-vs-rest on its
    ``prob_<class>`` column (for two classes, classes[0]'s AUC is the binary AUC).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    prob_cols = check_predictions(predictions, classes)
    estimates = point_estimates(predictions, classes)
    index = {c: k for k, c in enumerate(classes)}
    y = predictions["true_label"].astype(str).map(index).to_numpy()
    p = predictions["predicted_label"].astype(str).map(index).to_numpy()
    probs = predictions[prob_cols].to_numpy(float)
    patients, patient_of_image = np.unique(
        predictions["patient_id"].astype(str).to_numpy(), return_inverse=True
    )
    n_pat, n_cls = len(patients), len(classes)

    # confusion counts per patient, then per resample as patient-count-weighted sums
    per_patient = np.zeros((n_pat, n_cls, n_cls))
    np.add.at(per_patient, (patient_of_image, y, p), 1)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_pat, np.full(n_pat, 1 / n_pat), size=n_boot)  # (n_boot, n_pat)
    boot = metrics_from_confusion(np.einsum("bp,pij->bij", draws, per_patient))
    boot["roc_auc"] = np.stack(
        [_bootstrap_auc(y == k, probs[:, k], patient_of_image, draws.astype(float)) for k in range(n_cls)],
        axis=1,
    )

    per_class = {
        cls: {m: percentile_interval(boot[m][:, k], estimates["per_class"][cls][m], level) for m in PER_CLASS_METRICS}
        for k, cls in enumerate(classes)
    }
    return {
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "unit": "patient",
        "n_patients": int(n_pat),
        "n_images": int(len(predictions)),
        "accuracy": percentile_interval(boot["accuracy"], estimates["accuracy"], level),
        "per_class": per_class,
    }


def ci_table(result: dict[str, Any]) -> pd.DataFrame:
    """Flatten ``bootstrap_ci``'s result into rows (class, metric, estimate, low, high, n_used) for reports."""
    rows = [{"class": "all", "metric": "accuracy", **result["accuracy"]}]
    for cls, metrics in result["per_class"].items():
        rows += [{"class": cls, "metric": m, **v} for m, v in metrics.items()]
    return pd.DataFrame(rows, columns=["class", "metric", "estimate", "low", "high", "n_used"])
