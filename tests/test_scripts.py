"""Rule scripts are written one way: open the log, call one library function, log its failure.

The logic behind them lives in the package, where these tests reach it without Snakemake.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.config import with_defaults
from cxrflow.copy_groups import PAIR_COLUMNS, find_duplicates
from cxrflow.rule_log import run_rule
from workflow_helpers import REPO

# Not rule scripts: a command-line tool.
NOT_RULES = {"config_docs.py"}
RULE_SCRIPTS = sorted(p for p in (REPO / "scripts").glob("*.py") if p.name not in NOT_RULES)


@pytest.mark.parametrize("path", RULE_SCRIPTS, ids=lambda p: p.name)
def test_rule_script_is_one_run_rule_call(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    logic = [type(node).__name__ for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While, ast.Try, ast.With))]  # fmt: skip
    assert not logic, f"{path.name} holds logic ({logic}): move it into the package"
    calls = [node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert "run_rule" in calls, f"{path.name} does not go through cxrflow.rule_log.run_rule"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert "logging" not in imported, f"{path.name} sets up logging itself"


def test_run_rule_writes_the_traceback_into_the_log(tmp_path: Path) -> None:
    log = tmp_path / "job.log"

    def work(x: int) -> int:
        logging.getLogger("cxrflow.some_module").info("working on %d", x)
        return x + 1

    def broken() -> None:
        raise ValueError("bad input 42")

    assert run_rule(log, work, 1) == 2
    with pytest.raises(ValueError, match="bad input 42"):
        run_rule(log, broken)
    text = log.read_text()
    assert "working on 1" in text  # the package's module loggers reach the rule's log
    assert "broken failed" in text and "Traceback" in text and "ValueError: bad input 42" in text
    assert text.count("working on 1") == 1  # the log is attached once, not once per call


def test_find_duplicates_pairs_copies_and_groups_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (64, 64), dtype=np.uint8), (9, 9), 0)
    other = cv2.GaussianBlur(rng.integers(0, 255, (64, 64), dtype=np.uint8), (9, 9), 0)
    images = {"a": base, "b": cv2.resize(cv2.resize(base, (48, 48)), (64, 64)), "c": other, "q": other}
    rows = []
    for image_id, image in images.items():
        cv2.imwrite(str(tmp_path / f"{image_id}.png"), image)
        rows.append({"image_id": image_id, "source": "s1" if image_id == "a" else "s2", "patient_id": image_id,
                     "label": "COVID-19" if image_id == "a" else "Normal",
                     "output_path": str(tmp_path / f"{image_id}.png"),
                     "status": "quarantined" if image_id == "q" else "ok"})  # fmt: skip
    settings = with_defaults({"sources": {"x": {"format": "folders", "path": "."}}})["audit"]["duplicates"]
    table = pd.DataFrame(rows).assign(raw_path=lambda t: t["output_path"], resolved_path="")
    pairs, groups = find_duplicates(table, settings)
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert pairs[["image_id_a", "image_id_b"]].values.tolist() == [["a", "b"]]  # the quarantined copy is no image
    assert pairs.iloc[0][["source_a", "source_b", "label_a", "label_b"]].tolist() == ["s1", "s2", "COVID-19", "Normal"]
    assert groups["a"] == groups["b"] and "c" not in groups


def test_fold_split_main_writes_what_the_shared_split_writes(tmp_path: Path) -> None:
    from cxrflow.split import assign_splits, fold_split_main, read_split_file, write_split_files

    rows = [{"image_id": f"i{k}", "source": "s", "label": ["COVID-19", "Normal"][k % 2], "patient_id": f"p{k // 2}",
             "output_path": f"out/i{k}.png", "status": "ok", "reason": ""} for k in range(40)]  # fmt: skip
    assignments = assign_splits(pd.DataFrame(rows), seed=1, test_size=0.2, val_size=0.1, folds=2,
                                classes=["COVID-19", "Normal"])  # fmt: skip
    write_split_files(assignments, tmp_path / "shared")
    outputs = {name: str(tmp_path / "own" / f"{name}.csv") for name in ("train", "val", "test")}
    (tmp_path / "own").mkdir()
    counts = fold_split_main(str(tmp_path / "shared" / "assignments.csv"), 1, outputs)
    assert sum(counts.values()) == 40
    for name, path in outputs.items():
        shared = read_split_file(tmp_path / "shared" / "fold1" / f"{name}.csv")
        pd.testing.assert_frame_equal(read_split_file(Path(path)), shared)


def test_select_main_writes_the_choice(tmp_path: Path) -> None:
    import json

    from cxrflow.nested import select_main

    points = [{"learning_rate": 0.01}, {"learning_rate": 0.001}]
    paths = []
    for inner in range(2):
        for point, f1 in enumerate((0.5, 0.7)):
            paths.append(tmp_path / f"s{inner}{point}.json")
            score = {"point": point, "inner": inner, "params": points[point], "macro_f1": f1}
            paths[-1].write_text(json.dumps(score))
    choice = select_main(points, [str(p) for p in paths], 3, str(tmp_path / "choice.json"))
    assert json.loads((tmp_path / "choice.json").read_text()) == choice
    assert choice["outer_fold"] == 3 and choice["chosen"]["params"] == points[1]
