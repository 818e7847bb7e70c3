"""Experiment summaries over folds carry spread and CIs; ROC has one curve per class beyond two classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrflow.evaluate import predictions_table
from cxrflow.metrics import compute_metrics, confidence_intervals
from cxrflow.plots import roc_plot_with_ci
from cxrflow.experiment_summary import experiment_summary, pooled_ci, summary_plot, summary_text
from workflow_helpers import read_figure

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
BOOT = {"n": 1000, "level": 0.95, "seed": 0}


def predictions(seed: int, n: int = 24, prefix: str = "") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    true = np.arange(n) % 3
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), true] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame(
        {
            "image_id": [f"{prefix}i{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "label": np.asarray(CLASSES)[true],
        }
    )
    return predictions_table(table, probs, CLASSES)


def fold_result(pred: pd.DataFrame, k: int) -> dict:
    return {
        "experiment": "e",
        "fold": k,
        "arch": "vgg19",
        "metrics": compute_metrics(pred, CLASSES),
        "ci": confidence_intervals(pred, CLASSES, BOOT),
    }


def test_roc_has_one_curve_per_class_beyond_two(tmp_path: Path) -> None:
    pred = predictions(0)
    metrics = compute_metrics(pred, CLASSES)
    fig = roc_plot_with_ci(pred, CLASSES, metrics, confidence_intervals(pred, CLASSES, BOOT), tmp_path / "roc.png")
    labels = [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert len(labels) == 3 and all(label.startswith(c) for label, c in zip(labels, CLASSES))
    assert metrics["roc_auc_kind"] == "one-vs-rest macro average"
    assert all(metrics["roc_auc_per_class"][c] is not None for c in CLASSES)
    binary = pred[pred["true_label"] != "Normal"].drop(columns="prob_Normal")
    two = ["COVID-19", "Pneumonia"]
    binary = binary.assign(predicted_label=np.where(binary["prob_COVID-19"] >= binary["prob_Pneumonia"], *two))
    m2 = compute_metrics(binary, two)
    fig2 = roc_plot_with_ci(binary, two, m2, confidence_intervals(binary, two, BOOT), tmp_path / "roc2.png")
    assert [ln.get_label()[:8] for ln in fig2.axes[0].get_lines() if not ln.get_label().startswith("_")] == ["COVID-19"]


def test_pooled_ci_resamples_patients_of_all_folds() -> None:
    folds = [predictions(1), predictions(2, prefix="b")]  # same patient ids in both folds: kept apart
    ci = pooled_ci(folds, CLASSES, BOOT)
    assert ci["n_patients"] == 24 and ci["n_images"] == 48
    pooled = pd.concat(folds)
    assert ci["accuracy"]["estimate"] == pytest.approx((pooled["true_label"] == pooled["predicted_label"]).mean())


def test_summary_of_one_fold_and_of_several(tmp_path: Path) -> None:
    preds = [predictions(s, prefix=str(s)) for s in range(3)]
    folds = [fold_result(p, k) for k, p in enumerate(preds)]
    one = experiment_summary(folds[:1], preds[:1], CLASSES, BOOT)
    assert one["folds"] == 1 and one["metrics"] == folds[0]["metrics"] and one["ci"] == folds[0]["ci"]
    many = experiment_summary(folds, preds, CLASSES, BOOT, external=folds[::-1])
    assert many["folds"] == 3 and len(many["ci_per_fold"]) == 3
    f1 = many["metrics"]["per_class/Normal/f1-score"]
    assert f1["values"] == [f["metrics"]["per_class"]["Normal"]["f1-score"] for f in folds]
    assert (
        many["ci_pooled"]["per_class"]["Normal"]["f1"]["low"] <= many["ci_pooled"]["per_class"]["Normal"]["f1"]["high"]
    )
    assert many["external"]["folds"] == 3 and "ci_pooled" not in many["external"]
    text = summary_text(many, CLASSES)
    assert "pooled CI" in text and "External test" in text and "±" in text
    assert "hold-out test" in summary_text(one, CLASSES)
    summary_plot(many, CLASSES, tmp_path / "s.png")
    summary_plot(one, CLASSES, tmp_path / "o.png")
    read_figure(tmp_path / "s.png")
    read_figure(tmp_path / "o.png")
    with pytest.raises(ValueError, match="prediction tables"):
        experiment_summary(folds, preds[:1], CLASSES, BOOT)
