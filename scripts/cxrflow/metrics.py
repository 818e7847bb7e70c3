"""Predictions -> metrics of one fold, and their mean/sd over folds.

Everything is computed by scikit-learn from the predictions table, so the
numbers in metrics.json can be re-derived from predictions.csv alone. Keras is
imported lazily (only by :func:`predict` and :func:`evaluate_main`) because the
caller must choose KERAS_BACKEND before the first import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from .data import load_split, read_split_table
from .joblog import open_log

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
    return classification_report(predictions["true_label"], predictions["predicted_label"], labels=list(classes),
                                 target_names=list(classes), digits=REPORT_DIGITS, zero_division=0)


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
    report = classification_report(y_true, y_pred, labels=classes, target_names=classes, output_dict=True,
                                   zero_division=0)
    per_class_auc = roc_auc_per_class(predictions, classes)
    notes = [f"ROC AUC of {c} undefined: the true labels are all {'other classes' if not (y_true == c).any() else c}"
             for c, auc in per_class_auc.items() if auc is None]
    absent = [c for c in classes if not (y_true == c).any()]
    if absent:  # sklearn's macro avg counts such a class as F1 0; the intervals (uncertainty) refuse it
        notes.append(f"macro F1 undefined: {', '.join(absent)} absent from the test set (sklearn's macro avg "
                     "above counts it as 0)")
    if len(classes) == 2:
        roc_auc, roc_kind = per_class_auc[classes[0]], f"binary, positive class {classes[0]}"
    elif all(auc is not None for auc in per_class_auc.values()):
        index = {c: i for i, c in enumerate(classes)}
        scores = predictions[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
        roc_auc = float(roc_auc_score(y_true.map(index), scores, multi_class="ovr", average="macro",
                                      labels=list(range(len(classes)))))
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
        "confusion_matrix_counts": (f"each test image once per fold ({len(fold_metrics)} models on the same images)"
                                    if shared_test_set else "each test image once"),
    }


def predict(model: Any, images: np.ndarray, arch: str, batch_size: int) -> np.ndarray:
    """Class probabilities [N, C] for uint8 gray images [N,S,S,1], without augmentation."""
    from .augment import AugmentedBatches
    from .model import preprocess_batch

    n_classes = int(model.output_shape[-1])
    if len(images) == 0:
        return np.zeros((0, n_classes), dtype=np.float32)
    batches = AugmentedBatches(images, None, n_classes, batch_size, lambda x: preprocess_batch(arch, x),
                               augmentation=None, seed=0, shuffle=False)
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)


def predict_split(model: Any, split_csv: str, classes: Sequence[str], experiment: Mapping[str, Any],
                  predictions_path: str, mask: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A split's predictions.csv from a loaded model (``mask``: the border-only control's input).

    Shared by the internal and the external evaluation so both read their images,
    predict and write predictions the same way. Returns the predictions and the split's table.
    """
    images, _, table = load_split(split_csv, classes, experiment["image_size"], mask)
    if len(images) == 0:
        raise ValueError(f"{split_csv}: no images to evaluate")
    probs = predict(model, images, experiment["arch"], experiment["batch_size"])
    predictions = predictions_table(table, probs, classes)
    predictions.to_csv(predictions_path, index=False, float_format="%.8g")
    return predictions, table


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions.csv back, ids as strings: ids such as 0001 or 324a must not turn into numbers."""
    return pd.read_csv(path, dtype={"image_id": str, "patient_id": str, "group": str})


def predictions_table(table: pd.DataFrame, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """predictions.csv: image_id, patient_id, group (the resampling unit), true_label, predicted_label (argmax),
    prob_<class> in class order. A split file without groups gives each image's patient (or the image) as its group."""
    from .uncertainty import resampling_units

    out = pd.DataFrame({
        "image_id": table["image_id"].to_numpy(),
        "patient_id": table["patient_id"].to_numpy(),
        "group": resampling_units(table).to_numpy(),
        "true_label": table["label"].to_numpy(),
        "predicted_label": np.asarray(classes, dtype=object)[probs.argmax(axis=1)] if len(probs) else [],
    })
    for i, name in enumerate(classes):
        out[f"prob_{name}"] = probs[:, i]
    return out


def split_counts(csv_path: str | Path, classes: Sequence[str]) -> dict[str, Any]:
    """Images and distinct patients of a split, overall and per class."""
    table = read_split_table(csv_path, classes)
    return {
        "images": int(len(table)),
        "patients": int(table["patient_id"].nunique()),
        "images_per_class": {c: int((table["label"] == c).sum()) for c in classes},
    }


def write_json(data: Any, path: str | Path) -> None:
    """Strict JSON (NaN refused: run it through :func:`json_safe` first), indented, newline-terminated."""
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


@dataclass(frozen=True)
class EvaluationSettings:
    """One evaluation's settings under the names the evaluate rules' ``params:`` give them.

    ``experiment`` is the experiment's config section (arch, image_size, batch_size,
    weights); ``bootstrap`` the config's audit.bootstrap ({n, level, seed}) or None for
    no confidence intervals; ``mask`` ({fraction, fill}) evaluates the border-only
    control on images masked as it was trained.
    """

    classes: tuple[str, ...]
    experiment: Mapping[str, Any]
    bootstrap: Mapping[str, Any] | None = None
    mask: Mapping[str, Any] | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EvaluationSettings:
        """From a rule's params (a Snakemake Namedlist or a dict): classes, experiment, bootstrap, mask."""
        return cls(tuple(params["classes"]), params["experiment"], params.get("bootstrap"), params.get("mask"))


def evaluate_main(
    model_path: str,
    splits: Mapping[str, str],
    outputs: Mapping[str, str],
    settings: EvaluationSettings,
    run: Mapping[str, Any],
    log_path: str,
    history_csv: str | None = None,
) -> dict[str, Any]:
    """Entry point of the evaluate rules (KERAS_BACKEND already set): predictions, metrics, report and plots.

    ``splits`` names the split CSVs (train, val, and test, or external for the held-out
    sources): the one evaluated is ``external`` when given, else ``test``; all are
    counted in metrics.json. ``outputs`` are the rule's predictions, report, metrics,
    confusion and roc paths (and history_plot, drawn from ``history_csv``). ``run``
    is {experiment, fold}. An external test always carries bootstrap CIs.
    """
    import keras

    from .plots import confusion_matrix_plot, history_plot, roc_plot

    log = open_log(log_path)
    external = "external" in splits
    if external and settings.bootstrap is None:
        raise ValueError("an external test needs the bootstrap settings (audit.bootstrap)")
    test_csv = splits["external" if external else "test"]
    classes = list(settings.classes)
    model = keras.saving.load_model(model_path)
    predictions, table = predict_split(model, test_csv, classes, settings.experiment, outputs["predictions"],
                                       settings.mask)  # fmt: skip
    metrics = compute_metrics(predictions, classes)
    ci = None if settings.bootstrap is None else confidence_intervals(predictions, classes, settings.bootstrap)
    report_text = metrics["classification_report_text"] + ("" if ci is None else "\n" + ci_report_text(ci))
    sources = sorted(set(table["source"]))
    if external:
        model_name = "" if settings.mask is None else "border-only control, "
        report_text = f"External test ({model_name}{', '.join(sources)})\n\n" + report_text
    Path(outputs["report"]).write_text(report_text)
    result: dict[str, Any] = {"experiment": run.get("experiment", ""), "fold": run.get("fold", "")}
    if external:
        result.update({"test": "external", "test_sources": sources})
    result.update({
        "backend": keras.backend.backend(), "arch": settings.experiment["arch"],
        "weights": settings.experiment["weights"],
        "counts": {name: split_counts(path, classes) for name, path in splits.items()},
        "metrics": metrics,
    })  # fmt: skip
    if ci is not None:
        result["ci"] = ci
    if settings.mask is not None:
        result["mask"] = dict(settings.mask)
    write_json(result, outputs["metrics"])
    if history_csv is not None and "history_plot" in outputs:
        history_plot(pd.read_csv(history_csv), outputs["history_plot"])
    confusion_matrix_plot(metrics["confusion_matrix"], classes, outputs["confusion"])
    if ci is None:
        roc_plot(predictions, classes, metrics, outputs["roc"])
    else:
        roc_plot_with_ci(predictions, classes, metrics, ci, outputs["roc"])
    log.info("%s test of %s fold %s on %d images: accuracy=%.4f roc_auc=%s\n%s",
             "external" if external else "internal", result["experiment"], result["fold"], len(table),
             metrics["accuracy"], metrics["roc_auc"], metrics["classification_report_text"])  # fmt: skip
    return result


def json_safe(tree: Any) -> Any:
    """NumPy scalars to Python, non-finite floats to None: strict JSON (allow_nan=False) accepts the result."""
    if isinstance(tree, Mapping):
        return {str(k): json_safe(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [json_safe(v) for v in tree]
    if isinstance(tree, (float, np.floating)):
        return float(tree) if np.isfinite(tree) else None
    if isinstance(tree, np.integer):
        return int(tree)
    return tree


def confidence_intervals(predictions: pd.DataFrame, classes: Sequence[str],
                         settings: Mapping[str, Any]) -> dict[str, Any]:
    """Every test metric's interval from the statistics core (uncertainty.metric_intervals), NaN -> None for JSON.

    The unit is the split group (the ``group`` column), else the patient id, else
    the image (``uncertainty.resampling_units``).
    """
    from .uncertainty import metric_intervals

    ci = metric_intervals(predictions, list(classes), n_boot=settings["n"], seed=settings["seed"],
                          level=settings["level"])
    return json_safe(ci)


def format_value(value: float | None, digits: int = REPORT_DIGITS) -> str:
    """A number as the reports print it; "n/a" for an undefined (None or NaN) one."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def ci_report_text(ci: Mapping[str, Any]) -> str:
    """The CI table appended to classification_report.txt (two digits, as the report above it)."""
    from .uncertainty import ci_table

    table = ci_table(ci)
    head = (f"{ci['level']:.0%} confidence intervals over {ci['n_units']} test units (split groups), "
            f"{ci['n_images']} images; bootstrap: {ci['n_boot']} resamples, seed {ci['seed']}, n_used = resamples "
            "where defined\n\n")
    lines = [f"{'class':>14} {'metric':>10} {'estimate':>9} {'low':>6} {'high':>6} {'n_used':>7}  method"]
    lines += [f"{row['class']:>14} {row['metric']:>10} {format_value(row['estimate']):>9} "
              f"{format_value(row['low']):>6} {format_value(row['high']):>6} "
              f"{'-' if row['n_used'] is None or pd.isna(row['n_used']) else int(row['n_used']):>7}  {row['method']}"
              for row in table.to_dict("records")]
    return head + "\n".join(lines) + "\n"


def roc_plot_with_ci(predictions: pd.DataFrame, classes: Sequence[str], metrics: Mapping[str, Any],
                     ci: Mapping[str, Any], path: str | Path) -> Any:
    """plots.roc_plot, with each curve's legend reading AUC [low, high] (the bootstrap CI).

    Binary: the positive class's curve; more classes: one one-vs-rest curve per class.
    Returns the matplotlib Figure, so a test can count the curves.
    """
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    shown = classes[:1] if len(classes) == 2 else classes
    for name in shown:
        auc = metrics["roc_auc_per_class"].get(name)
        if auc is None:  # one class only among the true labels: no curve exists
            ax.plot([], [], label=f"{name}: undefined (no positives or no negatives)")
            continue
        bounds = ci["per_class"][name]["roc_auc"]
        fpr, tpr, _ = roc_curve(predictions["true_label"] == name, predictions[f"prob_{name}"])
        low, high = format_value(bounds["low"], 3), format_value(bounds["high"], 3)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f} [{low}, {high}])")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate",
           title=f"ROC ({ci['level']:.0%} CI over split groups)", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig
