"""One evaluation record per model (experiment and fold): every part measured on it, in one file.

``RECORD_PARTS`` is the one registry of what is known about a trained model: its metrics,
its margins over trivial baselines, the shortcut audit, the external test, ... Rule
``model_record`` gathers the parts of one model into ``record.json`` beside it; the trust
summary, the Verdict page and the report read the records, never the parts one by one.

A new per-model result (a JSON or a figure, made by a rule of its own) is one entry in
``RECORD_PARTS``; if it adds columns to the trust summary, those go in ``TRUST_COLUMNS``
and ``trust_columns``, both below.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .layout import CONFOUNDERS, DATA_AUDIT, ExperimentPlan, experiment_dir, fold_dir

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One file known about a model.

    ``file`` is relative to the model's fold directory (``results/experiments/<e>/fold<k>/``),
    or to the experiment's directory or ``results/`` itself as ``level`` says. ``when`` names
    the condition (``conditions``) under which the model has the part; None: every model has
    it. A ``json`` part is copied into the record whole; a ``file`` part (a figure) is recorded
    by path and SHA-256, so the record still depends on it and says which one was read.
    """

    file: str
    level: Literal["fold", "experiment", "results"] = "fold"
    when: str | None = None
    kind: Literal["json", "file"] = "json"


RECORD_PARTS: dict[str, Part] = {
    "metrics": Part("metrics.json"),
    "baselines": Part("baselines.json"),
    "data_audit": Part(DATA_AUDIT.removeprefix("results/"), level="results"),
    # the split's leakage audit when the experiment splits on its own; else data_audit covers it
    "split_audit": Part("splits/audit.json", level="experiment", when="own_split"),
    "external": Part("external/metrics.json", when="external"),
    "shortcut": Part("shortcut_audit.json", when="border_only"),
    "experiment_shortcut": Part("shortcut_audit.json", level="experiment", when="border_only"),
    "external_shortcut": Part("external/shortcut_audit.json", when="external_border_only"),
    "gradcam": Part("gradcam.png", when="gradcam", kind="file"),
    # what leaves the pipeline with the model: input spec, training data, sha256 of model.keras
    "model_card": Part("model_card.json"),
    # calibration, the frozen operating point and subgroups: each file holds the internal test
    # split ("test") and every held-out source ("external <source>") under its "sets"
    "calibration": Part("calibration.json"),
    "reliability": Part("reliability.png", kind="file"),
    "operating_point": Part("operating_point.json"),
    "subgroups": Part("subgroups.json"),
    "subgroups_plot": Part("subgroups.png", kind="file"),
    "confounders": Part(CONFOUNDERS.removeprefix("results/"), level="results"),
}


def conditions(plan: ExperimentPlan, audit: Mapping[str, Any]) -> dict[str, bool]:
    """Which optional parts a model of ``plan`` has; ``audit`` is the configuration's ``audit``."""
    border_only = bool(audit["border_only"]["enabled"])
    return {
        "own_split": plan.own_split,
        "external": plan.external,
        "border_only": border_only,
        "external_border_only": plan.external and border_only,
        "gradcam": bool(audit["gradcam"]["enabled"]),
    }


def part_paths(plan: ExperimentPlan, fold: int, audit: Mapping[str, Any]) -> dict[str, str]:
    """Name -> path of every part the model (``plan``, ``fold``) has: the inputs of its record."""
    have = conditions(plan, audit)
    unknown = {p.when for p in RECORD_PARTS.values() if p.when is not None} - set(have)
    if unknown:
        raise ValueError(f"record parts name unknown conditions: {sorted(unknown)}")
    roots = {"fold": fold_dir(plan.name, fold), "experiment": experiment_dir(plan.name), "results": "results"}
    return {name: f"{roots[part.level]}/{part.file}" for name, part in RECORD_PARTS.items()
            if part.when is None or have[part.when]}  # fmt: skip


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_record(experiment: str, fold: int, paths: Mapping[str, str]) -> dict[str, Any]:
    """The record of one model: every part of ``RECORD_PARTS`` by name, None where the model has none."""
    unknown = set(paths) - set(RECORD_PARTS)
    if unknown:
        raise ValueError(f"not record parts: {sorted(unknown)} (add them to RECORD_PARTS)")
    parts: dict[str, Any] = {}
    for name, part in RECORD_PARTS.items():
        path = paths.get(name)
        if path is None:
            parts[name] = None
        elif part.kind == "json":
            parts[name] = json.loads(Path(path).read_text())
        else:
            parts[name] = {"path": str(path), "sha256": _sha256(path)}
    return {"experiment": experiment, "fold": int(fold), "files": dict(paths), "parts": parts}


def write_record(output: str, experiment: str, fold: int, paths: Mapping[str, str]) -> dict[str, Any]:
    """Rule model_record: :func:`build_record` written to ``record.json``."""
    record = build_record(experiment, fold, paths)
    Path(output).write_text(json.dumps(record, indent=2) + "\n")  # the parts were JSON already
    LOG.info("record of %s fold %s: %s", experiment, fold, ", ".join(sorted(paths)))
    return record


def read_record(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# --- The trust summary's columns ------------------------------------------------------------------------

TRUST_COLUMNS = ("experiment", "fold", "class", "patients_shared", "duplicates_across_splits", "model_f1",
                 "model_f1_low", "model_f1_high", "ci_width", "thumbnail_f1", "thumbnail_margin", "border_ring_f1",
                 "border_ring_margin", "source_flag", "test_sources", "external_f1", "external_f1_low",
                 "external_f1_high", "duplicates_internal_external", "border_only_f1", "full_macro_f1",
                 "border_only_macro_f1", "chance_macro_f1", "shortcut_verdict", "shortcut_flag",
                 "experiment_shortcut_verdict", "experiment_shortcut_flag", "folds_flagged",
                 "external_border_only_f1", "external_shortcut_verdict", "external_shortcut_flag",
                 "brier", "brier_low", "brier_high", "calibration_intercept", "calibration_intercept_low",
                 "calibration_intercept_high", "calibration_slope", "calibration_slope_low", "calibration_slope_high",
                 "threshold", "threshold_rule", "threshold_fallback", "sensitivity_at_threshold",
                 "sensitivity_at_threshold_low", "sensitivity_at_threshold_high", "specificity_at_threshold",
                 "specificity_at_threshold_low", "specificity_at_threshold_high", "ppv_at_threshold",
                 "ppv_at_threshold_low", "ppv_at_threshold_high", "npv_at_threshold", "npv_at_threshold_low",
                 "npv_at_threshold_high", "f1_at_threshold", "f1_at_threshold_low", "f1_at_threshold_high",
                 "subgroups_small", "worst_subgroup_f1", "worst_subgroup", "confounder_flag")  # fmt: skip
# The internal test split's name in calibration.json, operating_point.json and subgroups.json.
TEST_SET = "test"
AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "npv", "f1")


def external_columns(fold: int, split_audit: Mapping[str, Any], external: Mapping[str, Any] | None,
                     positive: str) -> dict[str, Any]:  # fmt: skip
    """External test F1 of the positive class with its CI, and near-duplicate pairs between the fold's
    training data (train + val) and the external set; empty without test_sources."""
    if external is None:
        return {"test_sources": None, "external_f1": None, "external_f1_low": None, "external_f1_high": None,
                "duplicates_internal_external": None}  # fmt: skip
    ci = external["ci"]["per_class"][positive]["f1"]
    dups = split_audit["external"]["duplicate_pairs_per_fold"][f"fold{fold}"]["train_val"]
    return {"test_sources": " ".join(external.get("test_sources") or []),
            "external_f1": external["metrics"]["per_class"][positive]["f1-score"],
            "external_f1_low": ci["low"], "external_f1_high": ci["high"], "duplicates_internal_external": dups}  # fmt: skip


def shortcut_columns(shortcut: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The border-only control beside the model (``shortcut_audit.json``); ``not run`` when it is disabled."""
    if shortcut is None:
        return {"border_only_f1": None, "full_macro_f1": None, "border_only_macro_f1": None,
                "chance_macro_f1": None, "shortcut_verdict": "not run", "shortcut_flag": None}  # fmt: skip
    return {
        "border_only_f1": shortcut["border_only"]["f1"][positive],
        "full_macro_f1": shortcut["full"]["macro_f1"]["estimate"],
        "border_only_macro_f1": shortcut["border_only"]["macro_f1"]["estimate"],
        "chance_macro_f1": shortcut["chance"]["macro_f1"],
        "shortcut_verdict": shortcut["verdict"],
        "shortcut_flag": shortcut["flag"],
    }


def experiment_shortcut_columns(audit: Mapping[str, Any] | None) -> dict[str, Any]:
    """The experiment's verdict over all its folds pooled (the same in each of its rows), and how many of
    its folds flagged on their own, e.g. "1/5"; ``not run`` when the control is disabled."""
    if audit is None:
        return {"experiment_shortcut_verdict": "not run", "experiment_shortcut_flag": None, "folds_flagged": None}
    return {"experiment_shortcut_verdict": audit["verdict"], "experiment_shortcut_flag": audit["flag"],
            "folds_flagged": f"{audit['flagged_folds']}/{audit['folds']}"}  # fmt: skip


def external_shortcut_columns(audit: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The border-only control on the external test set beside ``external_f1``; empty without one."""
    if audit is None:
        return {"external_border_only_f1": None, "external_shortcut_verdict": None, "external_shortcut_flag": None}
    return {"external_border_only_f1": audit["border_only"]["f1"][positive],
            "external_shortcut_verdict": audit["verdict"], "external_shortcut_flag": audit["flag"]}  # fmt: skip


def _with_interval(name: str, interval: Mapping[str, Any] | None) -> dict[str, Any]:
    interval = interval or {}
    return {name: interval.get("estimate"), f"{name}_low": interval.get("low"), f"{name}_high": interval.get("high")}


def calibration_columns(calibration: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """Brier score, calibration intercept and slope of the positive class on the internal test split."""
    figures = ((calibration or {}).get("sets", {}).get(TEST_SET) or {}).get(positive) or {}
    return {**_with_interval("brier", figures.get("brier")),
            **_with_interval("calibration_intercept", figures.get("intercept")),
            **_with_interval("calibration_slope", figures.get("slope"))}  # fmt: skip


def threshold_columns(operating_point: Mapping[str, Any] | None, positive: str) -> dict[str, Any]:
    """The positive class's threshold frozen on validation (value, rule, why a fall-back) and the figures it
    gives on the internal test split."""
    part = ((operating_point or {}).get("classes") or {}).get(positive) or {}
    chosen = part.get("threshold") or {}
    at = ((part.get("sets") or {}).get(TEST_SET) or {}).get("at_threshold") or {}
    out = {"threshold": chosen.get("threshold"), "threshold_rule": chosen.get("rule"),
           "threshold_fallback": chosen.get("fallback")}  # fmt: skip
    for metric in AT_THRESHOLD:
        out.update(_with_interval(f"{metric}_at_threshold", at.get(metric)))
    return out


def subgroup_columns(subgroups: Mapping[str, Any] | None) -> dict[str, Any]:
    """How many subgroups are under evaluation.min_subgroup, and the lowest F1 among the others with its group
    ("<set> <covariate>=<group>"; every set, the held-out sources included)."""
    if subgroups is None:
        return {"subgroups_small": None, "worst_subgroup_f1": None, "worst_subgroup": None}
    rows = subgroups["table"]
    judged = [r for r in rows if not r["small"] and r["f1"] is not None]
    worst = min(judged, key=lambda r: r["f1"], default=None)
    return {
        "subgroups_small": sum(bool(r["small"]) for r in rows),
        "worst_subgroup_f1": None if worst is None else worst["f1"],
        "worst_subgroup": None if worst is None else f"{worst['set']} {worst['covariate']}={worst['group']}",
    }


def trust_columns(record: Mapping[str, Any], positive: str) -> dict[str, Any]:
    """The trust summary's row of one model, from its record; margins are model F1 - baseline F1 of
    the positive class. The one place a part becomes columns."""
    experiment, fold, parts = record["experiment"], int(record["fold"]), record["parts"]
    data_audit = parts["data_audit"]
    split_audit = parts["split_audit"] or data_audit  # the shared split's leakage is in the data audit
    leak = split_audit["leakage"]["folds"][f"fold{fold}"]
    metrics, baselines = parts["metrics"], parts["baselines"]
    if "ci" not in metrics:
        raise ValueError(f"{experiment} fold {fold}: metrics.json has no 'ci' (re-run evaluate)")
    ci = metrics["ci"]["per_class"][positive]["f1"]
    low, high = ci["low"], ci["high"]
    return {
        "experiment": experiment,
        "fold": fold,
        "class": positive,
        "patients_shared": sum(leak["shared_patients"].values()),
        "duplicates_across_splits": leak.get("split_duplicate_pairs", 0),
        "model_f1": baselines["model"]["f1"][positive],
        "model_f1_low": low,
        "model_f1_high": high,
        "ci_width": None if low is None or high is None else high - low,
        "thumbnail_f1": baselines["thumbnail"]["f1"][positive],
        "thumbnail_margin": baselines["thumbnail"]["margin_f1"],
        "border_ring_f1": baselines["border_ring"]["f1"][positive],
        "border_ring_margin": baselines["border_ring"]["margin_f1"],
        "source_flag": data_audit["source_predictability"]["flag"],
        **external_columns(fold, split_audit, parts["external"], positive),
        **shortcut_columns(parts["shortcut"], positive),
        **experiment_shortcut_columns(parts["experiment_shortcut"]),
        **external_shortcut_columns(parts["external_shortcut"], positive),
        **calibration_columns(parts.get("calibration"), positive),
        **threshold_columns(parts.get("operating_point"), positive),
        **subgroup_columns(parts.get("subgroups")),
        "confounder_flag": None if parts.get("confounders") is None else parts["confounders"]["flag"],
    }


def trust_table(records: Sequence[Mapping[str, Any]], positive: str) -> pd.DataFrame:
    """``trust_summary.csv``: ``trust_columns`` of every record, in the records' order."""
    rows = [trust_columns(record, positive) for record in records]
    for row in rows:
        if tuple(row) != TRUST_COLUMNS:
            raise ValueError(f"trust_columns gave {list(row)}, TRUST_COLUMNS says {list(TRUST_COLUMNS)}")
    table = pd.DataFrame(rows, columns=list(TRUST_COLUMNS))
    table["duplicates_internal_external"] = table["duplicates_internal_external"].astype("Int64")  # a count
    return table


def shortcut_reasons(records: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Each model's shortcut-audit sentence (the Verdict page's "why"), None where the control did not run."""
    return [None if record["parts"]["shortcut"] is None else record["parts"]["shortcut"]["sentence"]
            for record in records]  # fmt: skip


def evaluation_notes(records: Sequence[Mapping[str, Any]], positive: str) -> list[dict[str, Any]]:
    """Per record, what the Verdict page says beside the trust columns: how the threshold was chosen and the
    sets it was applied to unchanged, and the subgroup table's file."""
    notes = []
    for record in records:
        op = ((record["parts"].get("operating_point") or {}).get("classes") or {}).get(positive) or {}
        notes.append({"threshold_description": (op.get("threshold") or {}).get("description"),
                      "applied_to": list(op.get("sets") or {}),
                      "subgroups_table": record["files"].get("subgroups", "").removesuffix(".json") + ".csv"
                      if record["files"].get("subgroups") else None})  # fmt: skip
    return notes


def trust_summary_main(output: str, record_paths: Sequence[str], positive: str) -> pd.DataFrame:
    """Rule trust_summary: :func:`trust_table` of the models' records written to trust_summary.csv."""
    table = trust_table([read_record(p) for p in record_paths], positive)
    table.to_csv(output, index=False, float_format="%.4f")
    LOG.info("trust summary of %d model(s) written to %s", len(table), output)
    return table
