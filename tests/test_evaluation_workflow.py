"""Calibration, the frozen operating point, subgroups, confounders and seeds through the real `snakemake`:
on the demo with three seeds, on the real ieee8023 collection (COVID-19 against its other findings),
and with a planted age confound (normals all children) that must raise the confounder flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_curve

from workflow_helpers import run_snakemake, tiny_config

pytestmark = pytest.mark.slow

TINY = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8, "checkpoint_every": 1}
QUICK_AUDIT = {"border_only": {"enabled": False}, "gradcam": {"enabled": False}}


def _check_model_files(fold: Path, positive: str) -> None:
    """calibration.json, operating_point.json and subgroups.json agree with predictions.csv (scikit-learn)."""
    pred = pd.read_csv(fold / "predictions.csv", dtype={"image_id": str, "patient_id": str})
    val = pd.read_csv(fold / "val_predictions.csv", dtype={"image_id": str, "patient_id": str})
    y = (pred["true_label"] == positive).to_numpy()
    cal = json.loads((fold / "calibration.json").read_text())["sets"]["test"][positive]
    assert cal["brier"]["estimate"] == pytest.approx(brier_score_loss(y, pred[f"prob_{positive}"]))
    assert sum(b["count"] for b in cal["reliability"]) == len(pred)
    op = json.loads((fold / "operating_point.json").read_text())["classes"][positive]
    assert op["threshold"]["chosen_on"] == "validation"
    yv = (val["true_label"] == positive).to_numpy()
    if op["threshold"]["fallback"] is None:
        fpr, tpr, thr = roc_curve(yv, val[f"prob_{positive}"], drop_intermediate=False)
        assert op["threshold"]["threshold"] == pytest.approx(min(thr[np.argmax(tpr - fpr)], 1.0))
    t = op["threshold"]["threshold"]
    sens = op["sets"]["test"]["at_threshold"]["sensitivity"]["estimate"]
    if y.any():
        assert sens == pytest.approx((pred.loc[y, f"prob_{positive}"] >= t).mean())
    sub = json.loads((fold / "subgroups.json").read_text())
    table = pd.DataFrame(sub["table"])
    assert set(table["covariate"]) == {"source", "sex", "age_band", "view"}
    assert (table.groupby("covariate")["images"].sum() == len(pred)).all()  # every test image in one group each
    assert sub["threshold"]["threshold"] == t


def test_demo_with_three_seeds(tmp_path: Path) -> None:
    cfg = tiny_config(experiments={"tiny": {**TINY, "seeds": [1, 2, 3]}}, audit=QUICK_AUDIT)
    targets = [f"results/experiments/tiny_seed{s}/fold0/{f}" for s in (1, 2, 3)
               for f in ("calibration.json", "operating_point.json", "subgroups.json")]  # fmt: skip
    run_snakemake(tmp_path, cfg, *targets, "results/experiments/tiny/seeds.json", "results/audit/confounders.json",
                  "results/trust_summary.csv", "results/report/verdict.html")  # fmt: skip
    results = tmp_path / "results"
    for s in (1, 2, 3):
        _check_model_files(results / f"experiments/tiny_seed{s}/fold0", "COVID-19")
    seeds = json.loads((results / "experiments/tiny/seeds.json").read_text())
    f1 = [json.loads((results / f"experiments/tiny_seed{s}/fold0/metrics.json").read_text())["metrics"]["per_class"]
          ["COVID-19"]["f1-score"] for s in (1, 2, 3)]  # fmt: skip
    assert [r["seed"] for r in seeds["per_seed"]] == [1, 2, 3]
    assert seeds["f1"]["mean"] == pytest.approx(np.mean(f1)) and seeds["f1"]["sd"] == pytest.approx(np.std(f1, ddof=1))
    # one split for all seeds: every run was tested on the same images
    tested = {s: set(pd.read_csv(results / f"experiments/tiny_seed{s}/fold0/predictions.csv")["image_id"])
              for s in (1, 2, 3)}  # fmt: skip
    assert tested[1] == tested[2] == tested[3]
    assert (results / "experiments/tiny/seeds.png").stat().st_size > 1000
    confounders = json.loads((results / "audit/confounders.json").read_text())
    assert confounders["counts"]["age_band"]["unknown"] > 0  # the demo's normals carry no age
    trust = pd.read_csv(results / "trust_summary.csv")
    for s, row in zip((1, 2, 3), trust.itertuples(index=False), strict=True):
        fold = results / f"experiments/tiny_seed{s}/fold0"
        op = json.loads((fold / "operating_point.json").read_text())["classes"]["COVID-19"]
        cal = json.loads((fold / "calibration.json").read_text())["sets"]["test"]["COVID-19"]
        assert row.threshold == pytest.approx(op["threshold"]["threshold"], abs=1e-4)
        assert row.brier == pytest.approx(cal["brier"]["estimate"], abs=1e-4)
        assert row.confounder_flag == confounders["flag"]
    page = (results / "report/verdict.html").read_text()
    assert "Confounders:" in page and "applied unchanged to test" in page and "subgroups.csv.html" in page
    assert "Seeds of tiny: F1 of COVID-19 seed 1" in page


def _ieee_config(shared_data: Path) -> dict:
    root = shared_data / "ieee8023-covid-chestxray-2020-03-24"
    others = {f: "Other" for f in ("SARS", "ARDS", "Streptococcus", "Pneumocystis", "No Finding")}
    return {"sources": {"ieee8023": {"format": "ieee8023", "path": str(root), "filters": {"modality": "X-ray"},
                                     "labels": {"COVID-19": "COVID-19", **others}}},
            "classes": ["COVID-19", "Other"], "preprocess": {"size": 64},
            "experiments": {"tiny": TINY}, "audit": QUICK_AUDIT}  # fmt: skip


@pytest.mark.shared_data
def test_ieee8023_subgroups_and_confounders(tmp_path: Path, shared_data: Path) -> None:
    targets = [f"results/experiments/tiny/fold0/{f}" for f in ("calibration.json", "operating_point.json",
                                                               "subgroups.json")]  # fmt: skip
    run_snakemake(tmp_path, _ieee_config(shared_data), *targets, "results/audit/confounders.json")
    results = tmp_path / "results"
    covariates = pd.read_csv(results / "preprocessed/covariates.csv", dtype=str, keep_default_na=False)
    assert (covariates["sex"] != "").sum() > 100 and (covariates["age"] != "").sum() > 100
    assert set(covariates["view"]) <= {"PA", "AP", "lateral", ""}
    _check_model_files(results / "experiments/tiny/fold0", "COVID-19")
    table = pd.read_csv(results / "experiments/tiny/fold0/subgroups.csv")
    assert {"F", "M"} <= set(table.loc[table["covariate"] == "sex", "group"])
    assert table["small"].any()  # a test split of ~30 images: some groups are small, and shown
    confounders = json.loads((results / "audit/confounders.json").read_text())
    assert confounders["covariates"]["sex"]["n_known"] > 100
    print(table.to_string())  # the numbers a reader would quote
    print(confounders["sentence"])


@pytest.mark.shared_data
def test_planted_paediatric_normals_raise_the_confounder_flag(tmp_path: Path, shared_data: Path) -> None:
    """Adult COVID-19 films of ieee8023 against normal films given children's ages (as public sets pair them)."""
    seed = shared_data / "seed-covid19-detection"
    names = pd.read_csv(seed / "normal_xray_dataset.csv")["filename"].head(60)
    rng = np.random.default_rng(0)
    planted = pd.DataFrame({"file": names, "finding": "Normal", "age": [f"{a:03d}Y" for a in rng.integers(1, 18, 60)],
                            "patient": [f"child{i}" for i in range(60)]})  # fmt: skip
    (tmp_path / "normals").mkdir()
    planted.to_csv(tmp_path / "normals" / "ages.csv", index=False)
    (tmp_path / "normals" / "images").symlink_to(seed / "normal_dataset")
    root = shared_data / "ieee8023-covid-chestxray-2020-03-24"
    cfg = {"sources": {"ieee8023": {"format": "ieee8023", "path": str(root),
                                    "filters": {"finding": "COVID-19", "modality": "X-ray"}},
                       "children": {"format": "csv", "path": str(tmp_path / "normals"), "csv": "ages.csv",
                                    "images": "images", "columns": {"filename": "file", "label": "finding",
                                                                    "patient_id": "patient", "age": "age"}}},
           "preprocess": {"size": 64}, "experiments": {}}  # fmt: skip
    run_snakemake(tmp_path / "repo", cfg, "results/audit/confounders.json")
    result = json.loads((tmp_path / "repo/results/audit/confounders.json").read_text())
    assert result["flag"] and "age_band" in result["flagged"], result["sentence"]
    assert result["sentence"].startswith("Confounder flagged: age_band")
