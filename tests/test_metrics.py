"""Metrics equal what scikit-learn computes directly from the predictions table; fold summaries; plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from cxrflow.evaluate import predictions_table
from cxrflow.metrics import compute_metrics, summarize_folds
from cxrflow.plots import confusion_matrix_plot, history_plot, roc_plot


def fake_predictions(classes: list[str], n: int, seed: int) -> pd.DataFrame:
    """A predictions table as evaluate writes it, with noisy but informative probabilities."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % len(classes)
    logits = rng.normal(size=(n, len(classes)))
    logits[np.arange(n), true] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "label": np.asarray(classes)[true],
        }
    )
    return predictions_table(table, probs, classes)


@pytest.mark.parametrize("classes", [["COVID-19", "Normal"], ["COVID-19", "Normal", "Pneumonia"]])
def test_metrics_equal_sklearn(classes: list[str]) -> None:
    pred = fake_predictions(classes, 30, seed=len(classes))
    m = compute_metrics(pred, classes)
    y_true, y_pred = pred["true_label"], pred["predicted_label"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    for i, name in enumerate(classes):
        assert m["per_class"][name]["precision"] == pytest.approx(p[i])
        assert m["per_class"][name]["recall"] == pytest.approx(r[i])
        assert m["per_class"][name]["f1-score"] == pytest.approx(f[i])
        assert m["per_class"][name]["support"] == s[i]
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=average, zero_division=0)
        assert [m[f"{average} avg"][k] for k in ("precision", "recall", "f1-score")] == pytest.approx([p, r, f])
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=classes).tolist()
    if len(classes) == 2:  # AUC of the positive class classes[0] from its probability
        expected = roc_auc_score(y_true == classes[0], pred[f"prob_{classes[0]}"])
    else:
        expected = roc_auc_score(
            y_true, pred[[f"prob_{c}" for c in classes]], multi_class="ovr", average="macro", labels=classes
        )
    assert m["roc_auc"] == pytest.approx(expected)
    for name in classes:
        assert m["roc_auc_per_class"][name] == pytest.approx(roc_auc_score(y_true == name, pred[f"prob_{name}"]))
    assert "precision    recall  f1-score   support" in m["classification_report_text"]
    assert f"{m['accuracy']:.2f}" in m["classification_report_text"]
    json.dumps(m, allow_nan=False)  # metrics.json must be strict JSON


def test_predictions_table_and_csv_roundtrip(tmp_path: Path) -> None:
    classes = ["COVID-19", "Normal"]
    pred = fake_predictions(classes, 10, seed=0)
    assert list(pred.columns) == [
        "image_id",
        "patient_id",
        "group",
        "true_label",
        "predicted_label",
        "prob_COVID-19",
        "prob_Normal",
    ]
    assert (pred["predicted_label"] == np.where(pred["prob_COVID-19"] > 0.5, "COVID-19", "Normal")).all()
    pred.to_csv(tmp_path / "p.csv", index=False, float_format="%.8g")
    again = compute_metrics(pd.read_csv(tmp_path / "p.csv"), classes)
    assert again["roc_auc"] == pytest.approx(compute_metrics(pred, classes)["roc_auc"])


def test_undefined_auc_is_none_with_a_note() -> None:
    classes = ["COVID-19", "Normal"]
    pred = fake_predictions(classes, 10, seed=1)
    only_normal = pred[pred["true_label"] == "Normal"]
    m = compute_metrics(only_normal, classes)
    assert m["roc_auc"] is None and m["notes"]
    with pytest.raises(ValueError, match="not among the classes"):
        compute_metrics(pred.assign(true_label="Other"), classes)
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(pred.iloc[:0], classes)


def test_summarize_folds_mean_sd_and_values() -> None:
    classes = ["COVID-19", "Normal"]
    folds = [compute_metrics(fake_predictions(classes, 20, seed=s), classes) for s in range(3)]
    summary = summarize_folds(folds)
    accuracies = [f["accuracy"] for f in folds]
    assert summary["folds"] == 3
    assert summary["metrics"]["accuracy"]["values"] == accuracies
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["metrics"]["accuracy"]["sd"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary["metrics"]["per_class/COVID-19/recall"]["mean"] == pytest.approx(
        np.mean([f["per_class"]["COVID-19"]["recall"] for f in folds])
    )
    assert summary["metrics"]["roc_auc"]["n"] == 3
    assert summary["confusion_matrix_total"] == np.sum([f["confusion_matrix"] for f in folds], axis=0).tolist()


def test_plots_write_pngs(tmp_path: Path) -> None:
    classes = ["COVID-19", "Normal", "Pneumonia"]
    pred = fake_predictions(classes, 12, seed=2)
    m = compute_metrics(pred, classes)
    history_plot(pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "accuracy": [0.5, 0.7]}), tmp_path / "h.png")
    confusion_matrix_plot(m["confusion_matrix"], classes, tmp_path / "cm.png")
    roc_plot(pred, classes, m, tmp_path / "roc.png")
    for name in ("h.png", "cm.png", "roc.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
