"""A trained model on one split: predictions.csv, metrics.json and the report's figures of a fold.

Keras is imported lazily (only by :func:`predict` and :func:`evaluate_main`) because the
caller must choose KERAS_BACKEND before the first import. The metric maths live in
``metrics`` and the intervals in ``uncertainty``; this module only runs the model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import load_split, read_split_table
from .metrics import ci_report_text, compute_metrics, confidence_intervals
from .plots import roc_plot_with_ci
from .results_io import write_json
from .rule_log import open_log


def predict(model: Any, images: np.ndarray, arch: str, batch_size: int) -> np.ndarray:
    """Class probabilities [N, C] for uint8 gray images [N,S,S,1], without augmentation."""
    from .augment import AugmentedBatches
    from .model import preprocess_batch

    n_classes = int(model.output_shape[-1])
    if len(images) == 0:
        return np.zeros((0, n_classes), dtype=np.float32)
    batches = AugmentedBatches(
        images,
        None,
        n_classes,
        batch_size,
        lambda x: preprocess_batch(arch, x),
        augmentation=None,
        seed=0,
        shuffle=False,
    )
    return np.asarray(model.predict(batches, verbose=0), dtype=np.float64)


def predict_split(
    model: Any,
    split_csv: str,
    classes: Sequence[str],
    experiment: Mapping[str, Any],
    predictions_path: str,
    mask: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def validation_predictions(model: Any, val_csv: str, classes: Sequence[str], experiment: Mapping[str, Any],
                           output: str, log: logging.Logger) -> pd.DataFrame:  # fmt: skip
    """val_predictions.csv: a fold's model on its validation split through the test split's own
    ``predict_split``, so the operating point is chosen without the test set. An empty
    validation split gives an empty table with the same columns."""
    table = pd.read_csv(val_csv, dtype=str)
    if table.empty:
        empty = predictions_table(table, np.zeros((0, len(classes))), classes)
        empty.to_csv(output, index=False)
        log.info("empty validation split: %s written without rows", output)
        return empty
    predictions, _ = predict_split(model, val_csv, list(classes), experiment, output)
    log.info("validation predictions of %d images written to %s", len(predictions), output)
    return predictions


def predictions_table(table: pd.DataFrame, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """predictions.csv: image_id, patient_id, group (the resampling unit), true_label, predicted_label (argmax),
    prob_<class> in class order. A split file without groups gives each image's patient (or the image) as its group."""
    from .uncertainty import resampling_units

    out = pd.DataFrame(
        {
            "image_id": table["image_id"].to_numpy(),
            "patient_id": table["patient_id"].to_numpy(),
            "group": resampling_units(table).to_numpy(),
            "true_label": table["label"].to_numpy(),
            "predicted_label": np.asarray(classes, dtype=object)[probs.argmax(axis=1)] if len(probs) else [],
        }
    )
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
    confusion and roc paths (and history_plot, drawn from ``history_csv``; and
    val_predictions, the model on its validation split, where the operating point is
    chosen: written here because loading Keras and the model once more cost a job about
    6 s of CPU). ``run`` is {experiment, fold}. An external test always carries bootstrap CIs.
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
    if "val_predictions" in outputs:
        validation_predictions(model, splits["val"], classes, settings.experiment, outputs["val_predictions"], log)
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
