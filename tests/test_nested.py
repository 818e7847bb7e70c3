"""Nested cross-validation library: grid order, patient-grouped inner folds, selection, the report table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import ParameterGrid

from cxrflow.nested import (
    apply_choice,
    grid_points,
    inner_score,
    inner_split,
    nested_summary,
    nested_table,
    select,
    write_inner_split,
)

CLASSES = ["COVID-19", "Normal", "Pneumonia"]


def outer_train(n_patients: int = 30) -> tuple[pd.DataFrame, dict[str, str]]:
    rows = []
    for p in range(n_patients):
        for i in range(1 + p % 3):
            rows.append({"image_id": f"s-{p}-{i}", "label": CLASSES[p % 3], "patient_id": str(p),
                         "path": f"out/{p}-{i}.png", "source": "s"})  # fmt: skip
    table = pd.DataFrame(rows)
    groups = {i: f"s:{p}" for i, p in zip(table["image_id"], table["patient_id"])}
    groups.update({"s-0-0": "s:1", "s-1-0": "s:1"})  # a near-duplicate cluster joins patients 0 and 1
    return table, groups


def test_grid_points_in_parameter_grid_order() -> None:
    grid = {"learning_rate": [1e-3, 1e-4], "dropout": [0.3, 0.5]}
    points = grid_points(grid)
    assert points == list(ParameterGrid(grid)) and len(points) == 4
    assert points[0] == {"dropout": 0.3, "learning_rate": 1e-3}  # keys sorted, last key fastest
    assert grid_points({}) == []


def test_inner_folds_partition_by_group_and_stratify() -> None:
    table, groups = outer_train()
    vals = []
    for inner in range(3):
        train, val = inner_split(table, groups, 3, inner, seed=42)
        assert len(train) + len(val) == len(table)
        assert not set(train["image_id"]) & set(val["image_id"])
        assert not {groups[i] for i in train["image_id"]} & {groups[i] for i in val["image_id"]}
        assert set(val["label"]) == set(CLASSES)  # exact stratification: every class in every part
        vals.append(set(val["image_id"]))
    assert set().union(*vals) == set(table["image_id"]) and sum(map(len, vals)) == len(table)
    again, _ = inner_split(table, groups, 3, 0, seed=42)
    assert again.equals(inner_split(table, groups, 3, 0, seed=42)[0])  # deterministic


def test_inner_split_errors_and_files(tmp_path) -> None:
    table, groups = outer_train(4)
    with pytest.raises(ValueError, match="fewer than inner_folds"):
        inner_split(table, groups, 5, 0, seed=0)
    with pytest.raises(ValueError, match="without a split group"):
        inner_split(table, {}, 2, 0, seed=0)
    table, groups = outer_train()
    table.to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"image_id": list(groups), "group": list(groups.values())}).to_csv(tmp_path / "a.csv", index=False)
    n_train, n_val = write_inner_split(
        tmp_path / "train.csv", tmp_path / "a.csv", 2, 1, 42, tmp_path / "t.csv", tmp_path / "v.csv"
    )
    assert n_train + n_val == len(table) and len(pd.read_csv(tmp_path / "v.csv")) == n_val


def test_inner_score_uses_the_classes_present() -> None:
    pred = pd.DataFrame(
        {
            "true_label": ["COVID-19", "COVID-19", "Normal", "Normal"],
            "predicted_label": ["COVID-19", "Normal", "Normal", "Normal"],
        }
    )
    score = inner_score(pred, CLASSES)
    assert score["classes_scored"] == ["COVID-19", "Normal"]
    assert score["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2) and score["accuracy"] == 0.75


def test_select_best_mean_ties_to_first_and_apply() -> None:
    points = grid_points({"learning_rate": [1e-3, 1e-4, 1e-5]})
    scores = [
        {"point": p, "inner": j, "macro_f1": f}
        for p, fs in enumerate([[0.5, 0.7], [0.8, 0.4], [0.2, 0.3]])
        for j, f in enumerate(fs)
    ]
    choice = select(points, scores)
    assert choice["chosen"]["index"] == 0 and choice["chosen"]["mean"] == pytest.approx(0.6)  # tie 0.6 vs 0.6
    assert [p["mean"] for p in choice["points"]] == pytest.approx([0.6, 0.6, 0.25])
    assert choice["inner_folds"] == 2
    scores[0]["macro_f1"] = 0.1
    assert select(points, scores)["chosen"]["index"] == 1
    experiment = {"learning_rate": 0.1, "dropout": 0.5}
    assert apply_choice(experiment, select(points, scores)) == {"learning_rate": 1e-4, "dropout": 0.5}
    with pytest.raises(ValueError, match="no score for inner folds"):
        select(points, scores[:-1])
    with pytest.raises(ValueError, match="not experiment settings"):
        apply_choice(experiment, {"chosen": {"params": {"momentum": 0.9}}})


def test_nested_table_and_summary() -> None:
    choices = [
        {"chosen": {"index": i, "params": {"learning_rate": lr}, "mean": 0.5, "sd": 0.1}, "points": []}
        for i, lr in enumerate([1e-3, 1e-4])
    ]
    folds = [
        {"metrics": {"macro avg": {"f1-score": f}, "accuracy": a, "per_class": {c: {"f1-score": f} for c in CLASSES}}}
        for f, a in ((0.6, 0.7), (0.8, 0.9))
    ]
    table = nested_table(choices, folds, CLASSES)
    assert list(table["fold"]) == ["0", "1", "mean", "sd"]
    assert list(table["learning_rate"][:2]) == [1e-3, 1e-4] and list(table["grid_point"][:2]) == [0, 1]
    assert table.loc[2, "outer_macro_f1"] == pytest.approx(0.7)
    assert table.loc[3, "outer_macro_f1"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    summary = nested_summary(choices, folds, CLASSES)
    assert summary["outer_macro_f1"]["values"] == [0.6, 0.8] and summary["outer_folds"] == 2
    assert [c["params"] for c in summary["choices"]] == [{"learning_rate": 1e-3}, {"learning_rate": 1e-4}]
