"""Audits: source predictability, shortcut verdict, patient leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrflow.data_audit import leakage_report, source_predictability
from cxrflow.baselines import thumbnail_features


def _two_source_images(n: int, marker: bool, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images; source B (optionally) carries a bright corner marker, like burnt-in text."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, size=(n, 32, 32), dtype=np.uint8)
    sources = np.array(["A", "B"] * (n // 2))
    if marker:
        images[sources == "B", :6, :6] = 255
    groups = np.array([f"{s}:{k // 2}" for k, s in enumerate(sources)])  # two images per patient
    return images, sources, groups


def test_source_predictable_and_confounded() -> None:
    images, sources, groups = _two_source_images(60, marker=True, seed=0)
    labels = np.where(sources == "A", "COVID-19", "Normal")  # each source holds one class
    res = source_predictability(thumbnail_features(images, 8), sources, labels, groups, seed=0, folds=5)
    assert res["accuracy"] > 0.95 and res["balanced_accuracy"] > 0.95
    assert res["majority_accuracy"] == 0.5 and res["chance_balanced_accuracy"] == 0.5
    assert res["cramers_v"] == pytest.approx(1.0)
    assert res["contingency"] == {"A": {"COVID-19": 30, "Normal": 0}, "B": {"COVID-19": 0, "Normal": 30}}


def test_source_not_predictable_and_not_confounded() -> None:
    images, sources, groups = _two_source_images(60, marker=False, seed=1)
    labels = np.array(["COVID-19", "COVID-19", "Normal", "Normal"] * 15)  # balanced within each source
    res = source_predictability(thumbnail_features(images, 8), sources, labels, groups, seed=0, folds=5)
    assert res["balanced_accuracy"] < 0.75
    assert res["cramers_v"] == pytest.approx(0.0)


def test_single_source_is_recorded_not_crashed() -> None:
    X = np.random.default_rng(0).random((10, 4))
    res = source_predictability(X, ["A"] * 10, ["COVID-19", "Normal"] * 5, [str(i) for i in range(10)], seed=0, folds=5)
    assert "only one source" in res["skipped"] and res["n_sources"] == 1
    with pytest.raises(ValueError, match="lengths differ"):
        source_predictability(X, ["A"] * 9, ["x"] * 10, ["g"] * 10, seed=0, folds=5)
    with pytest.raises(ValueError, match="cannot fill"):
        source_predictability(X, ["A", "B"] * 5, ["x"] * 10, ["g", "h"] * 5, seed=0, folds=5)


def _assignments() -> pd.DataFrame:
    rows = []
    for p in range(9):
        for i in range(2):
            rows.append(
                {
                    "image_id": f"s:{p}:{i}",
                    "label": "COVID-19" if p % 2 else "Normal",
                    "patient_id": str(p),
                    "source": "s",
                    "group": f"s:{p}",
                    "path": f"x/{p}_{i}.png",
                    "fold0": ("train", "val", "test")[p % 3],
                    "fold1": ("test", "train", "val")[p % 3],
                }
            )
    return pd.DataFrame(rows)


def test_leakage_report_clean_and_leaky() -> None:
    clean = _assignments()
    rep = leakage_report(clean)
    assert rep["ok"] and rep["total_shared"] == 0
    assert rep["folds"]["fold0"]["n_images"] == {"train": 6, "val": 6, "test": 6}

    leaky = clean.copy()
    leaky.loc[leaky.image_id == "s:0:1", "fold1"] = "train"  # patient 0: test and train in fold1
    rep = leakage_report(leaky)
    assert not rep["ok"]
    assert rep["folds"]["fold1"]["shared_patients"]["train/test"] == 1
    assert rep["folds"]["fold1"]["examples"]["train/test"] == ["s:0"]
    assert rep["folds"]["fold0"]["shared_patients"] == {"train/val": 0, "train/test": 0, "val/test": 0}

    # same patient id in another collection is another patient
    other = clean.copy()
    other.loc[other.image_id == "s:0:1", ["source", "group", "fold0"]] = ["t", "t:0", "test"]
    assert leakage_report(other)["ok"]

    # a near-duplicate pair straddling splits is a leak even with distinct patients
    pairs = pd.DataFrame({"image_id_a": ["s:0:0"], "image_id_b": ["s:1:0"], "distance": [2]})
    rep = leakage_report(clean, pairs)
    assert rep["folds"]["fold0"]["split_duplicate_pairs"] == 1 and not rep["ok"]


def test_leakage_report_bad_input() -> None:
    bad = _assignments()
    bad.loc[0, "fold0"] = "holdout"
    with pytest.raises(ValueError, match="outside"):
        leakage_report(bad)
    with pytest.raises(ValueError, match="fold0"):
        leakage_report(_assignments().drop(columns="fold0"))
    with pytest.raises(ValueError, match="lack columns"):
        leakage_report(_assignments().drop(columns="group"))
