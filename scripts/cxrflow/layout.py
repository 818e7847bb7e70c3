"""Where every result lives under ``results/`` and where it shows in the report.

The rules (``workflow/rules/*.smk``), the per-model record (``record``) and the report
views (``report_views``) all place files through these names, so moving a result or
renaming a report category is one edit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RESULTS = "results"
DATA_AUDIT = f"{RESULTS}/audit/data_audit.json"
CONFOUNDERS = f"{RESULTS}/audit/confounders.json"  # does a covariate alone predict the label?
TRUST_SUMMARY = f"{RESULTS}/trust_summary.csv"
SHARED_SPLITS = f"{RESULTS}/splits"
RECORD = "record.json"  # one per model, in its fold directory

# The report's categories, in the order a reader opens them.
VERDICT_CATEGORY = "0. Verdict"
DATA_CATEGORY = "1. Data"
EXPERIMENT_CATEGORY = "2. Experiments"
METHODS_CATEGORY = "4. Methods"


def experiment_dir(experiment: str) -> str:
    """results/experiments/<experiment>: everything of one experiment over its folds."""
    return f"{RESULTS}/experiments/{experiment}"


def fold_dir(experiment: str, fold: int | str) -> str:
    """results/experiments/<experiment>/fold<k>: one trained model and everything measured on it."""
    return f"{experiment_dir(experiment)}/fold{fold}"


def record_path(experiment: str, fold: int | str) -> str:
    """The model's evaluation record (``cxrflow.record``)."""
    return f"{fold_dir(experiment, fold)}/{RECORD}"


@dataclass(frozen=True)
class ExperimentPlan:
    """What the configuration makes of one experiment: its folds and which optional stages it has."""

    name: str
    folds: tuple[int, ...]
    external: bool  # test_sources: an external test set
    nested: bool  # a grid: nested cross-validation picks the settings
    own_split: bool  # held-out sources or a fold count of its own: not the shared split

    @property
    def split_root(self) -> str:
        return f"{experiment_dir(self.name)}/splits" if self.own_split else SHARED_SPLITS


def experiment_plans(config: Mapping[str, Any]) -> dict[str, ExperimentPlan]:
    """Every configured experiment's plan, in the configuration's order (the trust summary's row order)."""
    shared_folds = int(config["split"]["folds"])
    plans = {}
    for name, spec in config["experiments"].items():
        folds = shared_folds if spec["folds"] is None else int(spec["folds"])
        external = bool(spec["test_sources"])
        plans[name] = ExperimentPlan(name, tuple(range(folds)), external, bool(spec["grid"]),
                                     external or folds != shared_folds)  # fmt: skip
    return plans


def table_results(plans: Mapping[str, ExperimentPlan], border_only: bool) -> list[str]:
    """Every table-like result a person reads, relative to results/ (each gets an HTML view in the report)."""
    files = ["trust_summary.csv", "preprocessed/summary.json", "splits/summary.json", "audit/duplicates.csv",
             "audit/data_audit.json"]  # fmt: skip
    for plan in plans.values():
        base = f"experiments/{plan.name}"
        files += [f"{base}/metrics.json", f"{base}/summary.txt"]
        if border_only:
            files.append(f"{base}/shortcut_audit.txt")
        if plan.own_split:
            files.append(f"{base}/splits/audit.json")
        if plan.external:
            files.append(f"{base}/internal_vs_external.csv")
        if plan.nested:
            files.append(f"{base}/nested_cv.csv")
        for k in plan.folds:
            fold = f"{base}/fold{k}"
            files += [f"{fold}/predictions.csv", f"{fold}/classification_report.txt"]
            if border_only:
                files.append(f"{fold}/shortcut_audit.txt")
            if plan.external:
                files += [f"{fold}/external/predictions.csv", f"{fold}/external/classification_report.txt"]
                if border_only:
                    files.append(f"{fold}/external/shortcut_audit.txt")
    return files
