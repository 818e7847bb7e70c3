"""Raw data to results/report.html through the real `snakemake`, and every printed metric checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from cxrflow.config import schema_defaults
from workflow_helpers import run_snakemake, tiny_config

pytestmark = pytest.mark.slow

CLASSES = schema_defaults()["classes"]  # the schema's default, which every run without `classes:` reads

TINY_EXPERIMENT = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 2, "batch_size": 8,
                   "checkpoint_every": 1}  # fmt: skip


def assert_metrics_match_predictions(fold_dir: Path, classes: list[str]) -> None:
    """Every number in metrics.json is what scikit-learn computes from predictions.csv."""
    pred = pd.read_csv(fold_dir / "predictions.csv", dtype={"image_id": str, "patient_id": str})
    m = json.loads((fold_dir / "metrics.json").read_text())["metrics"]
    y, p = pred["true_label"], pred["predicted_label"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        got = m["per_class"][c]
        assert (got["precision"], got["recall"], got["f1-score"], got["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i])
        )
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y, p, labels=classes, average=avg, zero_division=0)
        got = m[f"{avg} avg"]
        assert (got["precision"], got["recall"], got["f1-score"]) == pytest.approx((ap, ar, af))
    assert m["confusion_matrix"] == confusion_matrix(y, p, labels=classes).tolist()
    auc = roc_auc_score((y == classes[0]).astype(int), pred[f"prob_{classes[0]}"])
    assert m["roc_auc"] == pytest.approx(auc)
    probs = pred[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert (pred["predicted_label"] == np.array(classes)[probs.argmax(axis=1)]).all()


def test_kfold_summary_mean_and_sd(tmp_path: Path) -> None:
    cfg = tiny_config(experiments={"tiny": {**TINY_EXPERIMENT, "epochs": 1}})
    cfg["split"] = {"folds": 2, "val_size": 0.0}
    run_snakemake(tmp_path, cfg, "results/experiments/tiny/metrics.json")
    exp = tmp_path / "results/experiments/tiny"
    accs = []
    for k in range(2):
        assert_metrics_match_predictions(exp / f"fold{k}", CLASSES)
        accs.append(json.loads((exp / f"fold{k}/metrics.json").read_text())["metrics"]["accuracy"])
    summary = json.loads((exp / "metrics.json").read_text())
    acc = summary["metrics"]["accuracy"]
    assert acc["mean"] == pytest.approx(np.mean(accs)) and acc["sd"] == pytest.approx(np.std(accs, ddof=1))


@pytest.mark.shared_data
def test_original_experiment_data_end_to_end(tmp_path: Path, shared_data: Path) -> None:
    """92 COVID-19 + the first 99 normal images, as in the original experiment, cropped at 224
    in the default batch mode; the model sees them at 64 px (a 224 px VGG19 on a CPU would
    make this the suite's most expensive test without checking anything more)."""
    root = shared_data / "seed-covid19-detection"
    columns = {"filename": "filename", "label": "finding"}
    sources = {
        "seed_covid": {"format": "csv", "path": str(root), "csv": "covid_dataset.csv",
                       "images": "covid_adjusted", "columns": columns},
        "seed_normal": {"format": "csv", "path": str(root), "csv": "normal_xray_dataset.csv",
                        "images": "normal_dataset", "columns": columns, "limit": 99},
    }  # fmt: skip
    experiment = {**TINY_EXPERIMENT, "image_size": 64, "epochs": 2, "batch_size": 32}
    cfg = tiny_config(sources=sources, experiments={"seed": experiment})
    cfg["preprocess"]["size"] = 224
    cfg["preprocess"]["batch_size"] = schema_defaults()["preprocess"]["batch_size"]  # the default batch mode
    run_snakemake(tmp_path, cfg, "--report", "results/report.html", "--report-after-run", timeout=1800)
    fold = tmp_path / "results/experiments/seed/fold0"
    assert_metrics_match_predictions(fold, CLASSES)
    counts = json.loads((fold / "metrics.json").read_text())["counts"]
    assert sum(c["images"] for c in counts.values()) == 191
    assert "seed_covid" in (tmp_path / "results/report/verdict.html").read_text()
