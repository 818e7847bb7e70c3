"""Predictions -> metrics of one fold, and their mean/sd over folds.

Everything is computed by scikit-learn from the predictions table, so the
numbers in metrics.json can be re-derived from predictions.csv alone. Running a
model to get the predictions is ``evaluate``'s job; the intervals are ``uncertainty``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from .results_io import json_safe

REPORT_DIGITS = 2  # the original article's table
# Sections of compute_metrics' dict averaged over folds (numeric leaves only).
SUMMARY_SECTIONS = ("accuracy", "per_class", "macro avg", "weighted avg", "roc_auc", "roc_auc_per_class")


def _check(predictions: pd.DataFrame, classes: Sequence[str]) -> None:
    needed = ["true_label", "predicted_label", *(f"prob_{c}" for c in classes)]
    missing = [c for c in needed if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}")
    if predictions.empty:
        raise ValueError("no predictions: the test split is empty")
    unknown = sorted((set(predictions["true_label"]) | set(predictions["predicted_label"])) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")


def classification_report_text(predictions: pd.DataFrame, classes: Sequence[str]) -> str:
    """sklearn's text table, two digits like the article's."""
    return classification_report(
        predictions["true_label"],
        predictions["predicted_label"],
        labels=list(classes),
        target_names=list(classes),
        digits=REPORT_DIGITS,
        zero_division=0,
    )


def roc_auc_per_class(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, float | None]:
    """One-vs-rest AUC of each class from its probability column; None where only one outcome occurs."""
    aucs: dict[str, float | None] = {}
    for name in classes:
        positive = (predictions["true_label"] == name).to_numpy()
        defined = 0 < positive.sum() < len(positive)
        aucs[name] = float(roc_auc_score(positive, predictions[f"prob_{name}"])) if defined else None
    return aucs


def compute_metrics(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, accuracy, macro/weighted averages, ROC AUC, confusion matrix.

    ROC AUC: binary -> AUC of the positive class classes[0]; multi-class ->
    one-vs-rest macro average (sklearn), plus per class either way. Undefined
    AUCs (a class absent from the true labels) are None with a note, not 0.5.
    zero_division=0: a class never predicted gets precision 0, as sklearn's report shows it.
    """
    _check(predictions, classes)
    classes = list(classes)
    y_true, y_pred = predictions["true_label"], predictions["predicted_label"]
    report = classification_report(
        y_true, y_pred, labels=classes, target_names=classes, output_dict=True, zero_division=0
    )
    per_class_auc = roc_auc_per_class(predictions, classes)
    notes = [
        f"ROC AUC of {c} undefined: the true labels are all {'other classes' if not (y_true == c).any() else c}"
        for c, auc in per_class_auc.items()
        if auc is None
    ]
    absent = [c for c in classes if not (y_true == c).any()]
    if absent:  # sklearn's macro avg counts such a class as F1 0; the intervals (uncertainty) refuse it
        notes.append(
            f"macro F1 undefined: {', '.join(absent)} absent from the test set (sklearn's macro avg "
            "above counts it as 0)"
        )
    if len(classes) == 2:
        roc_auc, roc_kind = per_class_auc[classes[0]], f"binary, positive class {classes[0]}"
    elif all(auc is not None for auc in per_class_auc.values()):
        index = {c: i for i, c in enumerate(classes)}
        scores = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
        roc_auc = float(
            roc_auc_score(
                y_true.map(index), scores, multi_class="ovr", average="macro", labels=list(range(len(classes)))
            )
        )
        roc_kind = "one-vs-rest macro average"
    else:
        roc_auc, roc_kind = None, "one-vs-rest macro average"
    return {
        "classes": classes,
        "n": int(len(predictions)),
        "accuracy": float(report["accuracy"]),
        "per_class": {c: report[c] for c in classes},
        "macro avg": report["macro avg"],
        "weighted avg": report["weighted avg"],
        "roc_auc": roc_auc,
        "roc_auc_kind": roc_kind,
        "roc_auc_per_class": per_class_auc,
        "notes": notes,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "classification_report_text": classification_report_text(predictions, classes),
    }


def _numeric_leaves(tree: Any, prefix: str = "") -> dict[str, float | None]:
    """Flatten nested dicts to 'a/b/c' -> number (None kept: an undefined AUC stays visible)."""
    if isinstance(tree, Mapping):
        leaves: dict[str, float | None] = {}
        for key, value in tree.items():
            leaves.update(_numeric_leaves(value, f"{prefix}/{key}" if prefix else str(key)))
        return leaves
    if tree is None or isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix: None if tree is None else float(tree)}
    return {}


def summarize_folds(fold_metrics: Sequence[Mapping[str, Any]], shared_test_set: bool = False) -> dict[str, Any]:
    """Mean and sample sd (ddof=1; None for one fold) of each metric over folds, with the per-fold values.

    Undefined values (None) are left out of mean/sd and counted in ``n``.
    The confusion matrices are summed: with disjoint test folds every test image is
    counted once; on a test set shared by all folds (external) each image is counted
    once per fold, which ``confusion_matrix_counts`` says.
    """
    if not fold_metrics:
        raise ValueError("no fold metrics to summarize")
    flat = [_numeric_leaves({k: m[k] for k in SUMMARY_SECTIONS}) for m in fold_metrics]
    summary: dict[str, Any] = {}
    for name in flat[0]:
        values = [f.get(name) for f in flat]
        known = np.array([v for v in values if v is not None], dtype=float)
        summary[name] = {
            "mean": float(known.mean()) if known.size else None,
            "sd": float(known.std(ddof=1)) if known.size > 1 else None,
            "n": int(known.size),
            "values": values,
        }
    return {
        "folds": len(fold_metrics),
        "classes": list(fold_metrics[0]["classes"]),
        "metrics": summary,
        "confusion_matrix_total": np.sum([m["confusion_matrix"] for m in fold_metrics], axis=0).tolist(),
        "confusion_matrix_counts": (
            f"each test image once per fold ({len(fold_metrics)} models on the same images)"
            if shared_test_set
            else "each test image once"
        ),
    }


def confidence_intervals(
    predictions: pd.DataFrame, classes: Sequence[str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Every test metric's interval from the statistics core (uncertainty.metric_intervals), NaN -> None for JSON.

    The unit is the split group (the ``group`` column), else the patient id, else
    the image (``uncertainty.resampling_units``).
    """
    from .uncertainty import metric_intervals

    ci = metric_intervals(
        predictions, list(classes), n_boot=settings["n"], seed=settings["seed"], level=settings["level"]
    )
    return json_safe(ci)


def format_value(value: float | None, digits: int = REPORT_DIGITS) -> str:
    """A number as the reports print it; "n/a" for an undefined (None or NaN) one."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def ci_report_text(ci: Mapping[str, Any]) -> str:
    """The CI table appended to classification_report.txt (two digits, as the report above it)."""
    from .uncertainty import ci_table

    table = ci_table(ci)
    head = (
        f"{ci['level']:.0%} confidence intervals over {ci['n_units']} test units (split groups), "
        f"{ci['n_images']} images; bootstrap: {ci['n_boot']} resamples, seed {ci['seed']}, n_used = resamples "
        "where defined\n\n"
    )
    lines = [f"{'class':>14} {'metric':>10} {'estimate':>9} {'low':>6} {'high':>6} {'n_used':>7}  method"]
    lines += [
        f"{row['class']:>14} {row['metric']:>10} {format_value(row['estimate']):>9} "
        f"{format_value(row['low']):>6} {format_value(row['high']):>6} "
        f"{'-' if row['n_used'] is None or pd.isna(row['n_used']) else int(row['n_used']):>7}  {row['method']}"
        for row in table.to_dict("records")
    ]
    return head + "\n".join(lines) + "\n"
