"""External validation library: held-out sources, the internal split, cross-source duplicates, side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxrflow.external import (
    check_disjoint,
    cross_duplicates,
    external_report,
    external_table,
    internal_split,
    side_by_side,
)
from cxrflow.evaluate import predictions_table
from cxrflow.metrics import compute_metrics, confidence_intervals
from cxrflow.split import assign_splits

CLASSES = ["COVID-19", "Normal", "Pneumonia"]
SETTINGS = dict(seed=42, test_size=0.2, val_size=0.1, classes=CLASSES)


def manifest(n_per_source: int = 40) -> pd.DataFrame:
    """Two internal sources and one to hold out; patient ids repeat across sources on purpose."""
    rows = []
    for source in ("a", "b", "c"):
        for p in range(n_per_source):
            for i in range(1 + p % 2):
                image_id = f"{source}-{p}-{i}"
                rows.append({"image_id": image_id, "source": source, "label": CLASSES[p % 3],
                             "patient_id": str(p), "output_path": f"out/{image_id}.png", "status": "ok",
                             "reason": ""})  # fmt: skip
    rows.append({"image_id": "c-bad", "source": "c", "label": "Normal", "patient_id": "99", "output_path": "",
                 "status": "quarantined", "reason": "missing file"})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("folds", [1, 3])
def test_internal_split_holds_sources_out_and_agrees_with_shared_split(folds: int) -> None:
    table = manifest()
    internal = internal_split(table, ["c"], folds=folds, **SETTINGS)
    assert set(internal["source"]) == {"a", "b"}
    internal_only = table[table["source"] != "c"]
    shared = assign_splits(internal_only, folds=folds, **SETTINGS).set_index("image_id")
    cols = [f"fold{k}" for k in range(folds)]
    # the internal split is the stratified split of the internal sources alone
    pd.testing.assert_frame_equal(internal.set_index("image_id")[cols], shared.loc[internal["image_id"], cols])


def test_external_table_is_every_ok_image_of_the_test_sources() -> None:
    table = manifest()
    ext = external_table(table, ["c"])
    assert list(ext.columns) == ["image_id", "label", "patient_id", "path", "source", "group"]
    assert set(ext["image_id"]) == set(table.loc[(table["source"] == "c") & (table["status"] == "ok"), "image_id"])
    with pytest.raises(ValueError, match="no ok image"):
        external_table(table, ["c", "nowhere"])
    with pytest.raises(ValueError, match="nothing to train on"):
        internal_split(table, ["a", "b", "c"], folds=1, **SETTINGS)


def test_same_patient_id_in_two_sources_is_not_shared_but_an_image_is() -> None:
    table = manifest()
    internal = internal_split(table, ["c"], folds=1, **SETTINGS)
    ext = external_table(table, ["c"])
    check_disjoint(internal, ext)  # patient "0" of a and of c are different patients
    with pytest.raises(ValueError, match="images both internal and external"):
        check_disjoint(internal, pd.concat([ext, internal[ext.columns].head(1)]))


def test_cross_source_duplicates_counted_per_fold_and_split() -> None:
    table = manifest()
    internal = internal_split(table, ["c"], folds=2, **SETTINGS)
    ext = external_table(table, ["c"])
    pairs = pd.DataFrame(
        {
            "image_id_a": ["a-0-0", "c-1-0", "a-2-0", "c-3-0"],
            "image_id_b": ["c-0-0", "b-1-0", "b-2-0", "c-4-0"],
            "distance": [0, 2, 1, 3],
        }
    )
    cross = cross_duplicates(pairs, internal, ext)
    assert sorted(zip(cross["internal_id"], cross["external_id"])) == [("a-0-0", "c-0-0"), ("b-1-0", "c-1-0")]
    report = external_report(internal, ext, pairs, CLASSES)
    assert report["duplicate_pairs"] == 2 and report["sources"] == ["c"]
    assert report["images"] == len(ext) and sum(report["images_per_label"].values()) == len(ext)
    where = internal.set_index("image_id")
    for k in range(2):
        counts = report["duplicate_pairs_per_fold"][f"fold{k}"]
        expected = [where.loc[i, f"fold{k}"] for i in ("a-0-0", "b-1-0")]
        assert counts["train_val"] == sum(s in ("train", "val") for s in expected)
        assert counts["train"] + counts["val"] + counts["test"] == 2


def _fold(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = 30
    true = np.arange(n) % 3
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), true] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = predictions_table(
        pd.DataFrame(
            {
                "image_id": [f"i{i}" for i in range(n)],
                "patient_id": [f"p{i}" for i in range(n)],
                "label": np.asarray(CLASSES)[true],
            }
        ),
        probs,
        CLASSES,
    )
    ci = confidence_intervals(pred, CLASSES, {"n": 1000, "level": 0.95, "seed": 0})
    return {"metrics": compute_metrics(pred, CLASSES), "ci": ci}


def test_side_by_side_rows_and_means() -> None:
    internal, external = [_fold(1), _fold(2)], [_fold(3), _fold(4)]
    table = side_by_side(internal, external, CLASSES)
    per_fold = table[table["fold"] != "mean"]
    assert len(per_fold) == 2 * (len(CLASSES) + 2)
    row = per_fold[(per_fold["fold"] == "1") & (per_fold["class"] == "Normal")].iloc[0]
    assert row["internal"] == pytest.approx(internal[1]["metrics"]["per_class"]["Normal"]["f1-score"])
    assert row["external_low"] == external[1]["ci"]["per_class"]["Normal"]["f1"]["low"]
    assert row["external_minus_internal"] == pytest.approx(row["external"] - row["internal"])
    mean = table[(table["fold"] == "mean") & (table["class"] == "all")].iloc[0]
    accs = [f["metrics"]["accuracy"] for f in external]
    assert mean["external"] == pytest.approx(np.mean(accs)) and mean["external_sd"] == pytest.approx(
        np.std(accs, ddof=1)
    )
    one = side_by_side(internal[:1], external[:1], CLASSES)
    assert set(one["fold"]) == {"0"}
    with pytest.raises(ValueError, match="internal but"):
        side_by_side(internal, external[:1], CLASSES)
