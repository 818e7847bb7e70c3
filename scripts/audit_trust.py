"""Rule trust_summary: one row per experiment and fold with every reason to doubt its score.

The table opens the HTML report, so a reviewer sees leakage, uncertainty and how
much the model beats trivial baselines before looking at any single metric.
"""


import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow.data import open_log

COLUMNS = ("experiment", "fold", "class", "patients_shared", "duplicates_across_splits", "model_f1", "model_f1_low",
           "model_f1_high", "ci_width", "thumbnail_f1", "thumbnail_margin", "border_ring_f1", "border_ring_margin",
           "source_flag", "test_sources", "external_f1", "external_f1_low", "external_f1_high",
           "duplicates_internal_external")  # fmt: skip


def external_columns(fold: int, split_audit: Mapping[str, Any], external: Mapping[str, Any] | None,
                     positive: str) -> dict[str, Any]:
    """External test F1 of the positive class with its CI, and near-duplicate pairs between the fold's
    training data (train + val) and the external set; empty without test_sources."""
    if external is None:
        return {"test_sources": None, "external_f1": None, "external_f1_low": None, "external_f1_high": None,
                "duplicates_internal_external": None}
    ci = external["ci"]["per_class"][positive]["f1"]
    dups = split_audit["external"]["duplicate_pairs_per_fold"][f"fold{fold}"]["train_val"]
    return {"test_sources": " ".join(external.get("test_sources") or []),
            "external_f1": external["metrics"]["per_class"][positive]["f1-score"],
            "external_f1_low": ci["low"], "external_f1_high": ci["high"], "duplicates_internal_external": dups}


def trust_row(experiment: str, fold: int, fold_metrics: Mapping[str, Any], fold_baselines: Mapping[str, Any],
              data_audit: Mapping[str, Any], positive: str, split_audit: Mapping[str, Any] | None = None,
              external: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary row of one model; margins are model F1 - baseline F1 of the positive class.

    ``split_audit`` is the JSON whose ``leakage`` covers the model's split (the data
    audit for the shared split, the experiment's splits/audit.json for its own).
    """
    split_audit = data_audit if split_audit is None else split_audit
    leak = split_audit["leakage"]["folds"][f"fold{fold}"]
    if "ci" not in fold_metrics:
        raise ValueError(f"{experiment} fold {fold}: metrics.json has no 'ci' (re-run evaluate)")
    ci = fold_metrics["ci"]["per_class"][positive]["f1"]
    low, high = ci["low"], ci["high"]
    return {
        "experiment": experiment,
        "fold": fold,
        "class": positive,
        "patients_shared": sum(leak["shared_patients"].values()),
        "duplicates_across_splits": leak.get("split_duplicate_pairs", 0),
        "model_f1": fold_baselines["model"]["f1"][positive],
        "model_f1_low": low,
        "model_f1_high": high,
        "ci_width": None if low is None or high is None else high - low,
        "thumbnail_f1": fold_baselines["thumbnail"]["f1"][positive],
        "thumbnail_margin": fold_baselines["thumbnail"]["margin_f1"],
        "border_ring_f1": fold_baselines["border_ring"]["f1"][positive],
        "border_ring_margin": fold_baselines["border_ring"]["margin_f1"],
        "source_flag": data_audit["source_predictability"]["flag"],
        **external_columns(fold, split_audit, external, positive),
    }


def _read(path: str | None) -> Any:
    return None if path is None else json.loads(Path(path).read_text())


def trust_table(rows: Sequence[tuple[str, int]], metrics_paths: Sequence[str], baseline_paths: Sequence[str],
                audit_path: str, positive: str, split_audit_paths: Sequence[str | None] | None = None,
                external_paths: Sequence[str | None] | None = None) -> pd.DataFrame:
    split_audit_paths = split_audit_paths or [None] * len(rows)
    external_paths = external_paths or [None] * len(rows)
    if not len(rows) == len(metrics_paths) == len(baseline_paths) == len(split_audit_paths) == len(external_paths):
        raise ValueError(f"{len(rows)} models but {len(metrics_paths)} metrics, {len(baseline_paths)} baselines, "
                         f"{len(split_audit_paths)} split audits and {len(external_paths)} external entries")
    data_audit = json.loads(Path(audit_path).read_text())
    records = [
        trust_row(e, int(k), _read(m), _read(b), data_audit, positive, _read(s), _read(x))
        for (e, k), m, b, s, x in zip(rows, metrics_paths, baseline_paths, split_audit_paths, external_paths)
    ]
    table = pd.DataFrame(records, columns=list(COLUMNS))
    table["duplicates_internal_external"] = table["duplicates_internal_external"].astype("Int64")  # a count
    return table


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        table = trust_table(sm.params.rows, list(sm.input.metrics), list(sm.input.baselines), sm.input.data_audit,
                            sm.params.positive, list(sm.params.split_audits), list(sm.params.external))
        table.to_csv(sm.output[0], index=False, float_format="%.4f")
        log.info("trust summary of %d model(s) written to %s", len(table), sm.output[0])
    except Exception:
        log.exception("trust summary failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
