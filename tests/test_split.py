"""Splits: grouped by patient, seeded, stratified in expectation, stable under additions."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrflow.split import (
    fold_columns,
    assign_splits,
    check_no_leakage,
    group_uniform,
    read_split_file,
    split_summary,
    write_split_files,
)

CLASSES = ["COVID-19", "Normal", "Pneumonia"]
HOLDOUT = dict(seed=42, test_size=0.2, val_size=0.1, folds=1, classes=CLASSES)


def _manifest(n_patients: int, *, first: int = 0, seed: int = 0, source: str = "src") -> pd.DataFrame:
    """n patients, 1-4 images each, one label per patient (cycling through CLASSES)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(first, first + n_patients):
        for i in range(int(rng.integers(1, 5))):
            image_id = f"{source}-p{p:04d}-{i}"
            rows.append(
                {
                    "image_id": image_id,
                    "source": source,
                    "label": CLASSES[p % len(CLASSES)],
                    "patient_id": f"{p:04d}",
                    "output_path": f"out/{image_id}.png",
                    "status": "ok",
                    "reason": "",
                }
            )
    return pd.DataFrame(rows)


def _group_split(assignments: pd.DataFrame, col: str = "fold0") -> pd.Series:
    per_group = assignments.groupby("group")[col]
    assert (per_group.nunique() == 1).all()
    return per_group.first()


def test_uniform_is_the_documented_hash() -> None:
    # The formula of docs/stages.md, recomputed, and a pinned value: a change of hash or formula
    # would silently reshuffle every existing split.
    digest = hashlib.blake2b(b"42:src:0001", digest_size=8).digest()
    assert group_uniform(42, "src:0001") == (int.from_bytes(digest, "big") >> 11) / 2**53
    assert f"{group_uniform(42, 'src:0001'):.12f}" == "0.770944110657"
    assert group_uniform(42, "src:0001") != group_uniform(43, "src:0001")
    assert 0 <= group_uniform(0, "") < 1


def test_no_patient_in_two_splits_and_columns() -> None:
    a = assign_splits(_manifest(400), **HOLDOUT)
    assert list(a.columns) == [
        "image_id",
        "label",
        "patient_id",
        "source",
        "group",
        "path",
        "fold0",
    ]
    assert set(a["fold0"]) == {"train", "val", "test"}
    check_no_leakage(a)
    summary = split_summary(a, CLASSES)
    assert summary["folds"][0]["shared_patients"] == 0
    assert summary["folds"][0]["shared_groups"] == 0
    assert sum(s["images"] for s in summary["folds"][0]["splits"].values()) == len(a)


def test_leak_is_detected() -> None:
    a = assign_splits(_manifest(30), **HOLDOUT)
    multi = a["group"].value_counts().index[0]  # a patient with >1 image
    i = a.index[a["group"] == multi][0]
    a.loc[i, "fold0"] = "test" if a.loc[i, "fold0"] != "test" else "train"
    with pytest.raises(ValueError, match="more than one split"):
        check_no_leakage(a)
    assert split_summary(a, CLASSES)["folds"][0]["shared_patients"] == 1


def test_stratified_per_label() -> None:
    """Per-label test share within 3.5 binomial std of test_size.

    Each patient is test with probability 0.2 independently, so with n patients of a
    label the share has std sqrt(0.2 * 0.8 / n) (0.035 for n = 133): 3.5 std (±0.12)
    fails by chance with probability ~5e-4 per label, and the seed is fixed anyway.
    """
    a = assign_splits(_manifest(400), **HOLDOUT)
    per_group = a.groupby("group").agg(label=("label", "first"), split=("fold0", "first"))
    for label, part in per_group.groupby("label"):
        n = len(part)
        tol = 3.5 * math.sqrt(0.2 * 0.8 / n)
        share = (part["split"] == "test").mean()
        assert abs(share - 0.2) <= tol, (label, share, tol)
        val_share = (part["split"] == "val").mean()
        assert abs(val_share - 0.1) <= 3.5 * math.sqrt(0.1 * 0.9 / n), (label, val_share)


def test_small_set_has_every_class_in_every_split() -> None:
    # 60 patients (20 per class): P(a class misses val) = 0.9**20 = 0.12 per class
    # for a random seed; the configured seed is fixed, so this is deterministic.
    a = assign_splits(_manifest(60), **HOLDOUT)
    summary = split_summary(a, CLASSES)
    for split in summary["folds"][0]["splits"].values():
        assert all(n > 0 for n in split["groups_per_label"].values()), split
    assert summary["warnings"] == []


def test_missing_class_is_warned() -> None:
    a = assign_splits(_manifest(6), **HOLDOUT)
    warnings = split_summary(a, CLASSES)["warnings"]
    assert any("has no image of" in w or "is empty" in w for w in warnings), warnings


def test_deterministic_and_order_independent() -> None:
    m = _manifest(200)
    first = assign_splits(m, **HOLDOUT)
    pd.testing.assert_frame_equal(first, assign_splits(m, **HOLDOUT))
    shuffled = assign_splits(m.sample(frac=1, random_state=1), **HOLDOUT)
    pd.testing.assert_series_equal(_group_split(first), _group_split(shuffled))
    other_seed = assign_splits(m, **{**HOLDOUT, "seed": 7})
    assert not _group_split(first).equals(_group_split(other_seed))


@pytest.mark.parametrize("folds", [1, 5])
def test_adding_patients_moves_few_existing_patients(folds: int) -> None:
    """Ranks by hash within a label stratum: one added patient moves at most one group per cut point of
    its own stratum and none of another; +30% patients move a small share."""
    settings = {**HOLDOUT, "folds": folds}
    old = _manifest(300)
    before = assign_splits(old, **settings)
    cols = [f"fold{k}" for k in range(folds)]
    one = pd.concat([old, _manifest(1, first=300, seed=3)])
    added_label = one["label"].iloc[-1]
    after = assign_splits(one, **settings).set_index("image_id").loc[before["image_id"]]
    moved = (after[cols].to_numpy() != before[cols].to_numpy()).any(axis=1)
    moved_groups = before.loc[moved, "group"].unique()
    assert set(before.loc[moved, "label"]) <= {added_label}
    cuts = 2 if folds == 1 else folds  # hold-out: test|val|train; k-fold: k test windows on the ring
    assert len(moved_groups) <= cuts
    new = pd.concat([_manifest(45, first=300, seed=1), old, _manifest(45, first=0, seed=2, source="other")])
    after = assign_splits(new, **settings).set_index("image_id").loc[before["image_id"]]
    moved = (after[cols].to_numpy() != before[cols].to_numpy()).any(axis=1)
    assert before.loc[moved, "group"].nunique() <= 0.25 * before["group"].nunique()


def test_every_test_fold_holds_its_share_of_each_label() -> None:
    """10 COVID-19 patients among 100, 5 folds: 2 in every test fold, whatever the seed (random sampling
    of patients left a fold without any at 48% of seeds)."""
    m = _manifest(100)
    m = m.assign(label=np.where(m["patient_id"].astype(int) % 10 == 0, CLASSES[0], CLASSES[1]))
    for seed in range(8):
        a = assign_splits(m, **{**HOLDOUT, "folds": 5, "seed": seed})
        per_group = a.groupby("group").agg(label=("label", "first"), **{c: (c, "first") for c in fold_columns(5)})
        covid = per_group[per_group["label"] == CLASSES[0]]
        assert [(covid[c] == "test").sum() for c in fold_columns(5)] == [2] * 5, seed


def test_kfold_each_group_tested_exactly_once() -> None:
    k = 5
    a = assign_splits(_manifest(400), **{**HOLDOUT, "folds": k})
    cols = [f"fold{j}" for j in range(k)]
    assert list(a.columns[-k:]) == cols
    check_no_leakage(a)
    per_group = a.groupby("group")[cols].first()
    assert ((per_group == "test").sum(axis=1) == 1).all()
    n = len(per_group)
    for col in cols:
        shares = per_group[col].value_counts() / n
        # test is 1/k of ALL patients, val is val_size of ALL patients (3.5 std).
        assert abs(shares["test"] - 1 / k) <= 3.5 * math.sqrt(0.2 * 0.8 / n)
        assert abs(shares["val"] - 0.1) <= 3.5 * math.sqrt(0.1 * 0.9 / n)
    # Each fold's val set is a different slice of patients.
    assert not per_group["fold0"].eq("val").equals(per_group["fold1"].eq("val"))


def test_quarantined_rows_are_excluded(tmp_path: Path) -> None:
    m = _manifest(40)
    m.loc[m.index[:5], ["status", "reason", "output_path"]] = ["quarantined", "undecodable", ""]
    a = assign_splits(m, **HOLDOUT)
    assert set(a["image_id"]).isdisjoint(m["image_id"][:5])
    assert len(a) == len(m) - 5
    files = write_split_files(a, tmp_path / "splits")
    listed = pd.concat([read_split_file(f) for f in files if f.parent.name == "fold0"])
    assert sorted(listed["image_id"]) == sorted(a["image_id"])
    assert set(listed["image_id"]).isdisjoint(m["image_id"][:5])


def test_split_files(tmp_path: Path) -> None:
    a = assign_splits(_manifest(50), **{**HOLDOUT, "folds": 3, "val_size": 0.0})
    files = write_split_files(a, tmp_path)
    names = sorted(str(f.relative_to(tmp_path)) for f in files)
    expected = sorted(["assignments.csv"] + [f"fold{k}/{s}.csv" for k in range(3) for s in ("train", "val", "test")])
    assert names == expected
    val = read_split_file(tmp_path / "fold0" / "val.csv")
    assert val.empty and list(val.columns) == ["image_id", "label", "patient_id", "path", "source", "group"]
    test = read_split_file(tmp_path / "fold2" / "test.csv")
    assert test["patient_id"].str.len().eq(4).all()  # "0007" stays a string
    assert "fold0: val is empty" in split_summary(a, CLASSES)["warnings"]


def test_extra_groups_merge_two_patients() -> None:
    m = _manifest(200)
    base = assign_splits(m, **HOLDOUT)
    by_patient = base.groupby("patient_id")["fold0"].first()
    # Two patients in different splits, linked by a near-duplicate cluster.
    p_test = by_patient[by_patient == "test"].index[0]
    p_train = by_patient[by_patient == "train"].index[0]
    img = {p: m.loc[m["patient_id"] == p, "image_id"].iloc[0] for p in (p_test, p_train)}
    merged = assign_splits(m, **HOLDOUT, extra_groups={img[p_test]: "dup1", img[p_train]: "dup1"})
    check_no_leakage(merged)
    two = merged[merged["patient_id"].isin([p_test, p_train])]
    assert two["group"].nunique() == 1 and two["fold0"].nunique() == 1
    assert two["group"].iloc[0] == min(f"src:{p_test}", f"src:{p_train}")
    # Everyone else keeps their split.
    rest = ~merged["patient_id"].isin([p_test, p_train])
    assert (merged.loc[rest, "fold0"].to_numpy() == base.loc[rest, "fold0"].to_numpy()).all()
    with pytest.raises(ValueError, match="not ok images"):
        assign_splits(m, **HOLDOUT, extra_groups={"nope": "dup1"})


def test_mixed_labels_and_missing_patient_ids() -> None:
    m = _manifest(20)
    m.loc[m["patient_id"] == "0000", "label"] = ["COVID-19", "Normal", "Normal", "COVID-19"][
        : int((m["patient_id"] == "0000").sum())
    ]
    m.loc[m.index[-3:], "patient_id"] = ""
    a = assign_splits(m, **HOLDOUT)
    assert a.loc[a["patient_id"] == "0000", "fold0"].nunique() == 1
    assert a["group"].iloc[-1].startswith("src:image:")
    assert a["group"].iloc[-3:].nunique() == 3  # each unknown-patient image on its own
    summary = split_summary(a, CLASSES)
    assert summary["warnings"][0].startswith("3 images have no patient id")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"test_size": 0.0}, "test_size"),
        ({"val_size": 0.85}, "no training"),
        ({"folds": 2, "val_size": 0.5}, "no training"),
        ({"folds": 0}, "folds"),
        ({"classes": ["COVID-19"]}, "outside classes"),
    ],
)
def test_bad_settings_fail(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assign_splits(_manifest(10), **{**HOLDOUT, **changes})


def test_bad_manifest_fails() -> None:
    m = _manifest(10)
    with pytest.raises(ValueError, match="duplicate image ids"):
        assign_splits(pd.concat([m, m.iloc[[0]]]), **HOLDOUT)
    with pytest.raises(ValueError, match="no image with status 'ok'"):
        assign_splits(m.assign(status="quarantined"), **HOLDOUT)
    with pytest.raises(ValueError, match="lacks columns"):
        assign_splits(m.drop(columns="patient_id"), **HOLDOUT)
