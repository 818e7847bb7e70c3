"""External validation, nested cross-validation and three classes through the real `snakemake`.

One run, two experiments on two three-class csv sources ("hospitals"): ``external``
(trains on hosp_a, tests on hosp_b as well) and ``nested`` (own 2 outer folds, 2 inner
folds, a 2-value learning-rate grid). An experiment on the shared split is in every other
workflow test.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from workflow_helpers import read_figure, run_snakemake, tiny_config

pytestmark = pytest.mark.slow

CLASSES = ["COVID-19", "Pneumonia", "Normal"]
EXPERIMENT = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8,
              "checkpoint_every": 1}  # fmt: skip
GRID = [1e-3, 1e-4]


def write_image(path: Path, seed: int) -> None:
    """Noise with a dark top bar: distinct images have unrelated perceptual hashes."""
    img = np.random.default_rng(seed).integers(90, 230, (80, 64), dtype=np.uint8)
    img[:8] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def csv_source(root: Path, rows: list[tuple[str, str, str]]) -> dict:
    pd.DataFrame(rows, columns=["file", "finding", "patient"]).to_csv(root / "meta.csv", index=False)
    return {"format": "csv", "path": str(root), "csv": "meta.csv", "images": "img",
            "columns": {"filename": "file", "label": "finding", "patient_id": "patient"}}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("validation")
    a, b = root / "hosp_a", root / "hosp_b"
    rows_a = []
    for i in range(30):  # 15 patients with two images each
        write_image(a / "img" / f"x{i}.png", i)
        rows_a.append((f"x{i}.png", CLASSES[(i // 2) % 3], f"p{i // 2}"))
    rows_b = []
    for i in range(12):  # patient ids p0.. again: another hospital's p0 is another patient
        write_image(b / "img" / f"x{i}.png", 1000 + i)
        rows_b.append((f"x{i}.png", CLASSES[i % 3], f"p{i}"))
    # hosp_b republished one of hosp_a's radiographs: a near-duplicate across internal and external
    shutil.copy(a / "img" / "x1.png", b / "img" / "copy.png")
    rows_b.append(("copy.png", CLASSES[0], "px"))
    sources = {"hosp_a": csv_source(a, rows_a), "hosp_b": csv_source(b, rows_b)}
    experiments = {
        "external": {**EXPERIMENT, "test_sources": ["hosp_b"]},
        # learning_rate outside the grid: the final model's rate shows whether the choice was applied
        # save_optimizer: the final models keep their optimizer, whose learning rate shows the choice
        "nested": {**EXPERIMENT, "learning_rate": 0.05, "folds": 2, "inner_folds": 2,
                   "grid": {"learning_rate": GRID}, "save_optimizer": True},
    }  # fmt: skip
    # no Grad-CAM panels (tests/test_demo.py and tests/test_gradcam.py draw them): three experiments' worth
    # of model loads that nothing here reads
    cfg = tiny_config(sources=sources, classes=CLASSES, labels={c: c for c in CLASSES}, experiments=experiments,
                      audit={"gradcam": {"enabled": False}})  # fmt: skip
    work = root / "work"
    run_snakemake(work, cfg, "--report", "results/report.html", "--report-after-run")  # rule all, then the report
    return work, cfg


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_up_to_date_after_the_run(run: tuple[Path, dict]) -> None:
    work, cfg = run
    report = (work / "results/report.html").read_text(errors="replace")
    assert all(name in report for name in ("internal_vs_external.csv", "nested_cv.csv", "summary.png"))
    again = run_snakemake(work, cfg, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_external_source_never_trained_on(run: tuple[Path, dict]) -> None:
    work, _ = run
    splits = work / "results/experiments/external/splits"
    internal = pd.concat([read(splits / f"fold0/{s}.csv") for s in ("train", "val", "test")])
    assert set(internal["source"]) == {"hosp_a"} and len(internal) == 30
    external = read(splits / "external.csv")
    assert set(external["source"]) == {"hosp_b"} and len(external) == 13
    assert not set(internal["image_id"]) & set(external["image_id"])
    # the shared split, which the experiments without splits of their own use, holds both sources
    assert set(read(work / "results/splits/fold0/train.csv")["source"]) == {"hosp_a", "hosp_b"}
    audit = json.loads((splits / "audit.json").read_text())
    assert audit["leakage"]["ok"] and audit["test_sources"] == ["hosp_b"]
    ext = audit["external"]
    assert ext["images"] == 13 and ext["duplicate_pairs"] == 1
    assert ext["duplicate_examples"][0] == {"internal_id": "hosp_a-x1", "external_id": "hosp_b-copy", "distance": 0}
    where = read(work / "results/experiments/external/splits/assignments.csv").set_index("image_id")
    train_val = int(where.loc["hosp_a-x1", "fold0"] in ("train", "val"))
    assert ext["duplicate_pairs_per_fold"]["fold0"]["train_val"] == train_val


def test_internal_and_external_metrics_side_by_side(run: tuple[Path, dict]) -> None:
    work, _ = run
    exp = work / "results/experiments/external"
    internal = json.loads((exp / "fold0/metrics.json").read_text())
    external = json.loads((exp / "fold0/external/metrics.json").read_text())
    assert external["test"] == "external" and external["counts"]["external"]["images"] == 13
    assert external["ci"]["n_images"] == 13 and set(external["ci"]["per_class"]) == set(CLASSES)
    pred = read(exp / "fold0/external/predictions.csv")
    assert set(pred["image_id"]) == set(read(exp / "splits/external.csv")["image_id"])
    assert "precision" in (exp / "fold0/external/classification_report.txt").read_text()
    for name in ("confusion_matrix.png", "roc.png"):
        read_figure(exp / "fold0/external" / name)
    table = pd.read_csv(exp / "internal_vs_external.csv", dtype={"fold": str}).set_index(["class", "metric"])
    assert len(table) == len(CLASSES) + 2
    for c in CLASSES:
        assert table.loc[(c, "f1"), "internal"] == pytest.approx(
            internal["metrics"]["per_class"][c]["f1-score"], abs=1e-4
        )
        assert table.loc[(c, "f1"), "external"] == pytest.approx(
            external["metrics"]["per_class"][c]["f1-score"], abs=1e-4
        )
        assert table.loc[(c, "f1"), "external_low"] == pytest.approx(
            external["ci"]["per_class"][c]["f1"]["low"], abs=1e-4
        )
    summary = json.loads((exp / "metrics.json").read_text())
    assert summary["external"]["test_sources"] == ["hosp_b"]
    assert summary["external"]["metrics"] == external["metrics"] and summary["ci"] == internal["ci"]
    assert len(summary["internal_vs_external"]) == len(CLASSES) + 2
    text = (exp / "summary.txt").read_text()
    assert "External test on hosp_b" in text and "Internal vs external" in text

    trust = pd.read_csv(work / "results/trust_summary.csv").set_index(["experiment", "fold"])
    row = trust.loc[("external", 0)]
    assert row["test_sources"] == "hosp_b"
    assert row["external_f1"] == pytest.approx(external["metrics"]["per_class"][CLASSES[0]]["f1-score"], abs=1e-4)
    assert (
        row["duplicates_internal_external"]
        == json.loads((exp / "splits/audit.json").read_text())["external"]["duplicate_pairs_per_fold"]["fold0"][
            "train_val"
        ]
    )
    # a model without an external test set: those columns empty
    assert trust.loc[("nested", 0)][["test_sources", "external_f1", "duplicates_internal_external"]].isna().all()

    # the border-only control on the external set too, masked as it was trained, and its verdict there
    border = json.loads((exp / "fold0/external/border_only/metrics.json").read_text())
    assert border["test"] == "external" and border["mask"] == {"fraction": 0.8, "fill": 128}
    assert set(read(exp / "fold0/external/border_only/predictions.csv")["image_id"]) == set(pred["image_id"])
    audit = json.loads((exp / "fold0/external/shortcut_audit.json").read_text())
    assert audit["test"] == "external" and audit["n_test"] == 13
    assert audit["full"]["f1"][CLASSES[0]] == pytest.approx(external["metrics"]["per_class"][CLASSES[0]]["f1-score"])
    assert row["external_shortcut_verdict"] == audit["verdict"] and bool(row["external_shortcut_flag"]) == audit["flag"]
    assert row["external_border_only_f1"] == pytest.approx(audit["border_only"]["f1"][CLASSES[0]], abs=1e-4)
    assert "external test set" in (exp / "fold0/external/shortcut_audit.txt").read_text()
    assert trust.loc[("nested", 0)][["external_border_only_f1", "external_shortcut_verdict"]].isna().all()


def test_nested_cv_choice_per_outer_fold(run: tuple[Path, dict]) -> None:
    import keras

    work, _ = run
    exp = work / "results/experiments/nested"
    chosen = []
    for k in range(2):
        fold = exp / f"fold{k}"
        outer_train = read(exp / f"splits/fold{k}/train.csv")
        vals = []
        for j in range(2):
            inner_train, inner_val = read(fold / f"inner/split{j}/train.csv"), read(fold / f"inner/split{j}/val.csv")
            patients = [set(t["source"] + ":" + t["patient_id"]) for t in (inner_train, inner_val)]
            assert not patients[0] & patients[1]
            assert set(inner_train["image_id"]) | set(inner_val["image_id"]) == set(outer_train["image_id"])
            vals.append(set(inner_val["image_id"]))
            for p in range(len(GRID)):
                score = json.loads((fold / f"inner/split{j}/point{p}/score.json").read_text())
                assert score["params"] == {"learning_rate": GRID[p]} and 0 <= score["macro_f1"] <= 1
                assert not (fold / f"inner/split{j}/point{p}/model.scratch.keras").exists()
        assert not vals[0] & vals[1]
        choice = json.loads((fold / "choice.json").read_text())
        assert [p["params"]["learning_rate"] for p in choice["points"]] == GRID
        assert all(len(p["scores"]) == 2 for p in choice["points"])
        best = max(p["mean"] for p in choice["points"])
        assert choice["chosen"]["index"] == min(i for i, p in enumerate(choice["points"]) if p["mean"] >= best - 1e-9)
        lr = choice["chosen"]["params"]["learning_rate"]
        model = keras.saving.load_model(fold / "model.keras")
        assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(lr)
        chosen.append(lr)
    table = pd.read_csv(exp / "nested_cv.csv", dtype={"fold": str})
    assert list(table["fold"]) == ["0", "1", "mean", "sd"]
    assert list(table["learning_rate"][:2]) == pytest.approx(chosen)
    f1 = [json.loads((exp / f"fold{k}/metrics.json").read_text())["metrics"]["macro avg"]["f1-score"] for k in range(2)]
    assert table.loc[2, "outer_macro_f1"] == pytest.approx(np.mean(f1), abs=1e-4)
    summary = json.loads((exp / "metrics.json").read_text())
    nested = summary["nested"]
    assert [c["params"]["learning_rate"] for c in nested["choices"]] == chosen
    assert nested["outer_macro_f1"]["values"] == pytest.approx(f1)
    assert nested["outer_macro_f1"]["sd"] == pytest.approx(np.std(f1, ddof=1))
    # the summary over outer folds carries spread and CIs
    assert summary["folds"] == 2 and len(summary["ci_per_fold"]) == 2
    assert summary["ci_pooled"]["n_images"] == sum(len(read(exp / f"fold{k}/predictions.csv")) for k in range(2))
    assert "Nested cross-validation" in (exp / "summary.txt").read_text()
    trust = pd.read_csv(work / "results/trust_summary.csv")
    rows = trust[trust["experiment"] == "nested"]
    assert list(rows["fold"]) == [0, 1]
    # one shortcut verdict for the experiment, on both outer folds' test patients pooled
    audit = json.loads((exp / "shortcut_audit.json").read_text())
    folds = [json.loads((exp / f"fold{k}/shortcut_audit.json").read_text()) for k in range(2)]
    assert audit["folds"] == 2 and audit["n_test"] == sum(f["n_test"] for f in folds)
    assert [f["verdict"] for f in audit["per_fold"]] == [f["verdict"] for f in folds]
    assert set(rows["experiment_shortcut_verdict"]) == {audit["verdict"]}
    assert set(rows["folds_flagged"]) == {f"{sum(f['flag'] for f in folds)}/2"}
    assert "Verdicts of the single folds" in (exp / "shortcut_audit.txt").read_text()


def test_three_classes_per_class_metrics_and_roc(run: tuple[Path, dict]) -> None:
    work, _ = run
    fold = work / "results/experiments/external/fold0"  # its internal test set
    result = json.loads((fold / "metrics.json").read_text())
    m = result["metrics"]
    assert list(m["per_class"]) == CLASSES and np.asarray(m["confusion_matrix"]).shape == (3, 3)
    for c in CLASSES:
        assert {"precision", "recall", "f1-score", "support"} <= set(m["per_class"][c])
        assert set(result["ci"]["per_class"][c]) == {"precision", "recall", "f1", "roc_auc"}
    assert set(m["roc_auc_per_class"]) == set(CLASSES) and m["roc_auc_kind"] == "one-vs-rest macro average"
    report = (fold / "classification_report.txt").read_text()
    assert all(c in report for c in CLASSES) and "macro avg" in report
    text = (work / "results/experiments/external/summary.txt").read_text()
    assert all(re.search(rf"{c}\s+f1\s", text) for c in CLASSES)
