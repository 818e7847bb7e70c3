"""The per-model record: which parts a model has, the record read from real part files, and the
trust summary's columns computed from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from cxrflow.config import with_defaults
from cxrflow.layout import experiment_plans, record_path
from cxrflow.record import (
    RECORD_PARTS,
    TRUST_COLUMNS,
    build_record,
    part_paths,
    shortcut_reasons,
    trust_columns,
    trust_summary_main,
)
from workflow_helpers import REPO

POSITIVE = "COVID-19"


def model_parts(root: Path, *, f1: float = 0.8, thumbnail: float = 0.6, shared: int = 0,
                shortcut: str | None = "No shortcut.", external: float | None = None) -> dict[str, str]:  # fmt: skip
    """The part files of one model, written as the rules write them (only the keys the record reads)."""
    root.mkdir(parents=True, exist_ok=True)
    ci = {"per_class": {POSITIVE: {"f1": {"estimate": f1, "low": f1 - 0.2, "high": min(f1 + 0.1, 1.0)}}}}
    leakage = {"folds": {"fold0": {"shared_patients": {"train/val": shared, "train/test": 0, "val/test": 0},
                                   "split_duplicate_pairs": 1}}}  # fmt: skip
    files = {
        "metrics": {"metrics": {"per_class": {POSITIVE: {"f1-score": f1}}}, "ci": ci},
        "baselines": {
            "model": {"f1": {POSITIVE: f1}},
            "thumbnail": {"f1": {POSITIVE: thumbnail}, "margin_f1": f1 - thumbnail},
            "border_ring": {"f1": {POSITIVE: 0.5}, "margin_f1": f1 - 0.5},
        },  # fmt: skip
        "data_audit": {"leakage": leakage, "source_predictability": {"flag": True}},
    }
    if shortcut is not None:
        audit = {"border_only": {"f1": {POSITIVE: 0.4}, "macro_f1": {"estimate": 0.45}},
                 "full": {"macro_f1": {"estimate": 0.7}}, "chance": {"macro_f1": 0.5}, "verdict": "no shortcut",
                 "flag": False, "sentence": shortcut}  # fmt: skip
        files["shortcut"] = audit
        files["experiment_shortcut"] = {**audit, "flagged_folds": 0, "folds": 1}
    if external is not None:
        files["external"] = {
            "metrics": {"per_class": {POSITIVE: {"f1-score": external}}},
            "test_sources": ["b"],
            "ci": {"per_class": {POSITIVE: {"f1": {"low": external - 0.1, "high": external}}}},
        }
        files["split_audit"] = {"leakage": leakage,
                                "external": {"duplicate_pairs_per_fold": {"fold0": {"train_val": 2}}}}  # fmt: skip
    paths = {}
    for name, content in files.items():
        paths[name] = str(root / f"{name}.json")
        Path(paths[name]).write_text(json.dumps(content))
    return paths


def test_parts_follow_the_experiment_and_the_audit_settings() -> None:
    config = with_defaults(
        {
            "sources": {"a": {"format": "folders", "path": "a"}, "b": {"format": "folders", "path": "b"}},
            "experiments": {"plain": {}, "held_out": {"test_sources": ["b"]}},
        }
    )
    plans = experiment_plans(config)
    audit = config["audit"]
    plain, held_out = part_paths(plans["plain"], 0, audit), part_paths(plans["held_out"], 2, audit)
    every_model = {"metrics", "baselines", "data_audit", "calibration", "reliability", "operating_point", "subgroups",
                   "subgroups_plot", "confounders", "model_card"}  # fmt: skip
    assert set(plain) == every_model | {"shortcut", "experiment_shortcut", "gradcam"}
    assert plain["confounders"] == "results/audit/confounders.json"
    assert plain["metrics"] == "results/experiments/plain/fold0/metrics.json"
    assert plain["experiment_shortcut"] == "results/experiments/plain/shortcut_audit.json"
    assert plain["data_audit"] == "results/audit/data_audit.json"
    assert set(held_out) == set(plain) | {"split_audit", "external", "external_shortcut"}
    assert held_out["split_audit"] == "results/experiments/held_out/splits/audit.json"
    assert held_out["external_shortcut"] == "results/experiments/held_out/fold2/external/shortcut_audit.json"
    off = {**audit, "border_only": {**audit["border_only"], "enabled": False},
           "gradcam": {**audit["gradcam"], "enabled": False}}  # fmt: skip
    assert set(part_paths(plans["held_out"], 0, off)) == every_model | {"split_audit", "external"}
    assert record_path("plain", 0) == "results/experiments/plain/fold0/record.json"


def test_every_part_is_an_output_of_a_rule() -> None:
    """A part nobody writes would leave model_record without a producer; the registry and rules agree."""
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for name, part in RECORD_PARTS.items():
        prefix = {"fold": "results/experiments/{experiment}/fold{fold}/",
                  "experiment": "results/experiments/{experiment}/", "results": "results/"}[part.level]  # fmt: skip
        assert re.search(re.escape(f'"{prefix}{part.file}"'), rules), (name, prefix + part.file)


def test_record_holds_every_part_and_gives_the_trust_columns(tmp_path: Path) -> None:
    paths = model_parts(tmp_path / "m", f1=0.8, thumbnail=0.6, shared=1, external=0.5)
    (tmp_path / "gradcam.png").write_bytes(b"\x89PNG fake")
    record = build_record("held_out", 0, {**paths, "gradcam": str(tmp_path / "gradcam.png")})
    assert list(record["parts"]) == list(RECORD_PARTS)
    assert record["parts"]["metrics"] == json.loads(Path(paths["metrics"]).read_text())
    assert record["parts"]["external_shortcut"] is None  # this model has none
    assert len(record["parts"]["gradcam"]["sha256"]) == 64
    row = trust_columns(record, POSITIVE)
    assert tuple(row) == TRUST_COLUMNS
    assert row["thumbnail_margin"] == pytest.approx(0.2) and row["model_f1"] == 0.8
    assert row["patients_shared"] == 1 and row["duplicates_across_splits"] == 1  # from the split's own audit
    assert (row["external_f1"], row["duplicates_internal_external"], row["test_sources"]) == (0.5, 2, "b")
    assert row["folds_flagged"] == "0/1" and row["source_flag"] is True
    assert shortcut_reasons([record]) == ["No shortcut."]
    with pytest.raises(ValueError, match="not record parts"):
        build_record("x", 0, {"calibration_curve": paths["metrics"]})


def test_trust_summary_written_from_records(tmp_path: Path) -> None:
    records = []
    for name, f1 in (("a", 0.9), ("b", 0.3)):
        paths = model_parts(tmp_path / name, f1=f1, shortcut=None)
        records.append(tmp_path / f"{name}.json")
        records[-1].write_text(json.dumps(build_record(name, 0, paths)))
    out = tmp_path / "trust_summary.csv"
    trust_summary_main(str(out), [str(p) for p in records], POSITIVE)
    table = pd.read_csv(out)
    assert list(table.columns) == list(TRUST_COLUMNS) and list(table["experiment"]) == ["a", "b"]
    assert table["model_f1"].tolist() == [0.9, 0.3]
    assert table["thumbnail_margin"].tolist() == pytest.approx([0.3, -0.3])
    assert table["shortcut_verdict"].tolist() == ["not run", "not run"]
    assert table["duplicates_internal_external"].isna().all()
