"""The trust audit through the real `snakemake`: near-duplicates kept together, bootstrap CIs,
trivial baselines, the data audit and the trust summary, on a three-class csv source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow import record

from cxrflow.metrics import confidence_intervals
from workflow_helpers import read_figure, run_snakemake, tiny_config

pytestmark = pytest.mark.slow

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
TRUST_COLUMNS = list(record.TRUST_COLUMNS)  # the one list (cxrflow.record)
EXPERIMENT = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8,
              "checkpoint_every": 1}  # fmt: skip


def write_image(path: Path, seed: int) -> None:
    """Noise with a dark top bar: distinct images have unrelated perceptual hashes."""
    img = np.random.default_rng(seed).integers(90, 230, (80, 64), dtype=np.uint8)
    img[:8] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("trust")
    data = root / "data"
    rows = []
    for i in range(36):
        write_image(data / "img" / f"x{i}.png", i)
        rows.append((f"x{i}.png", CLASSES[i % 3], f"p{i}"))
    # The planted duplicate: one radiograph republished under another name and patient id.
    shutil.copy(data / "img" / "x0.png", data / "img" / "copy_of_x0.png")
    rows.append(("copy_of_x0.png", "COVID-19", "someone_else"))
    pd.DataFrame(rows, columns=["file", "finding", "patient"]).to_csv(data / "meta.csv", index=False)
    source = {"format": "csv", "path": str(data), "csv": "meta.csv", "images": "img",
              "columns": {"filename": "file", "label": "finding", "patient_id": "patient"}}  # fmt: skip
    # no Grad-CAM panel (tests/test_demo.py and tests/test_gradcam.py draw it; nothing here reads it)
    cfg = tiny_config(sources={"mine": source}, classes=CLASSES, labels={c: c for c in CLASSES},
                      experiments={"tiny": EXPERIMENT}, audit={"gradcam": {"enabled": False}})  # fmt: skip
    work = root / "work"
    run_snakemake(work, cfg)  # rule all
    return work, cfg


def test_planted_duplicate_found_and_kept_in_one_split(run: tuple[Path, dict]) -> None:
    work, _ = run
    pairs = pd.read_csv(work / "results/audit/duplicates.csv", dtype=str)
    assert {"image_id_a", "image_id_b", "distance", "source_a", "source_b", "patient_id_a", "patient_id_b"} <= set(
        pairs.columns
    )
    assert len(pairs) == 1
    pair = pairs.iloc[0]
    assert {pair["image_id_a"], pair["image_id_b"]} == {"mine-x0", "mine-copy_of_x0"}
    assert {pair["patient_id_a"], pair["patient_id_b"]} == {"p0", "someone_else"} and pair["distance"] == "0"
    assert pair["method"] == "exact" and float(pair["score"]) == 1.0
    read_figure(work / "results/audit/shared_images.png")  # the report's per-source-pair figure
    groups = json.loads((work / "results/audit/duplicate_groups.json").read_text())
    assert groups["mine-x0"] == groups["mine-copy_of_x0"]
    assignments = pd.read_csv(work / "results/splits/assignments.csv", dtype=str).set_index("image_id")
    assert assignments.loc["mine-x0", "fold0"] == assignments.loc["mine-copy_of_x0", "fold0"]
    audit = json.loads((work / "results/audit/data_audit.json").read_text())
    assert audit["leakage"]["ok"] and audit["leakage"]["folds"]["fold0"]["split_duplicate_pairs"] == 0
    assert audit["duplicate_pairs"] == 1
    assert "only one source" in audit["source_predictability"]["skipped"]
    assert audit["source_predictability"]["flag"] is False


def test_cis_reproducible_and_contain_estimate(run: tuple[Path, dict]) -> None:
    work, cfg = run
    fold = work / "results/experiments/tiny/fold0"
    ci = json.loads((fold / "metrics.json").read_text())["ci"]
    assert ci["unit"] == "split group" and ci["n_boot"] == 1000 and ci["level"] == 0.95
    pred = pd.read_csv(fold / "predictions.csv", dtype={"image_id": str, "patient_id": str})
    settings = {"n": 1000, "level": 0.95, "seed": 0}
    again = json.loads(json.dumps(confidence_intervals(pred, CLASSES, settings)))
    assert again == ci  # recomputed from predictions.csv: the same numbers
    # every reported interval is analytic (Clopper-Pearson, Newcombe, Bonferroni): no seed moves it
    other_seed = json.loads(json.dumps(confidence_intervals(pred, CLASSES, {**settings, "seed": 1})))
    assert {**other_seed, "seed": ci["seed"]} == ci
    intervals = [ci["accuracy"]] + [v for per in ci["per_class"].values() for v in per.values()]
    for interval in intervals:
        if interval["estimate"] is not None and interval["low"] is not None:
            assert interval["low"] <= interval["estimate"] <= interval["high"]
    assert set(ci["per_class"]) == set(CLASSES)
    assert "confidence intervals over" in (fold / "classification_report.txt").read_text()


def test_three_classes_metrics(run: tuple[Path, dict]) -> None:
    work, _ = run
    m = json.loads((work / "results/experiments/tiny/fold0/metrics.json").read_text())["metrics"]
    assert list(m["per_class"]) == CLASSES and set(m["roc_auc_per_class"]) == set(CLASSES)
    assert np.asarray(m["confusion_matrix"]).shape == (3, 3)


def test_baselines_and_trust_summary(run: tuple[Path, dict]) -> None:
    work, _ = run
    base = json.loads((work / "results/experiments/tiny/fold0/baselines.json").read_text())
    for name in ("thumbnail", "border_ring"):
        assert set(base[name]["f1"]) == set(CLASSES) and 0 <= base[name]["accuracy"] <= 1
        assert base[name]["margin_f1"] == pytest.approx(base["model"]["f1"][CLASSES[0]] - base[name]["f1"][CLASSES[0]])
    trust = pd.read_csv(work / "results/trust_summary.csv")
    assert list(trust.columns) == TRUST_COLUMNS and len(trust) == 1
    row = trust.iloc[0]
    assert row["experiment"] == "tiny" and row["class"] == CLASSES[0]
    assert row["patients_shared"] == 0 and row["duplicates_across_splits"] == 0
    assert row["model_f1_low"] <= row["model_f1"] + 1e-4 and row["ci_width"] >= 0
    assert row[["test_sources", "external_f1", "duplicates_internal_external"]].isna().all()  # no test_sources
    # The border-only control ran beside the model (audit.border_only is on by default).
    audit = json.loads((work / "results/experiments/tiny/fold0/shortcut_audit.json").read_text())
    assert row["shortcut_verdict"] == audit["verdict"] and bool(row["shortcut_flag"]) == audit["flag"]
    assert row["chance_macro_f1"] == pytest.approx(audit["chance"]["macro_f1"], abs=1e-4)
    assert row["full_macro_f1"] == pytest.approx(audit["full"]["macro_f1"]["estimate"], abs=1e-4)
    assert row["border_only_f1"] == pytest.approx(audit["border_only"]["f1"][CLASSES[0]], abs=1e-4)
    assert set(audit["full"]["f1"]) == set(CLASSES)  # three classes: macro over all three
    # one fold: the experiment's verdict is that fold's
    whole = json.loads((work / "results/experiments/tiny/shortcut_audit.json").read_text())
    assert whole["folds"] == 1 and whole["verdict"] == audit["verdict"] and whole["full"] == audit["full"]
    assert row["experiment_shortcut_verdict"] == audit["verdict"] and row["folds_flagged"] == f"{int(audit['flag'])}/1"
