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
           "source_flag")  # fmt: skip


def trust_row(experiment: str, fold: int, fold_metrics: Mapping[str, Any], fold_baselines: Mapping[str, Any],
              data_audit: Mapping[str, Any], positive: str) -> dict[str, Any]:
    """The summary row of one model; margins are model F1 - baseline F1 of the positive class."""
    leak = data_audit["leakage"]["folds"][f"fold{fold}"]
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
    }


def trust_table(rows: Sequence[tuple[str, int]], metrics_paths: Sequence[str], baseline_paths: Sequence[str],
                audit_path: str, positive: str) -> pd.DataFrame:
    if not len(rows) == len(metrics_paths) == len(baseline_paths):
        raise ValueError(f"{len(rows)} models but {len(metrics_paths)} metrics and {len(baseline_paths)} baselines")
    data_audit = json.loads(Path(audit_path).read_text())
    records = [
        trust_row(e, int(k), json.loads(Path(m).read_text()), json.loads(Path(b).read_text()), data_audit, positive)
        for (e, k), m, b in zip(rows, metrics_paths, baseline_paths)
    ]
    return pd.DataFrame(records, columns=list(COLUMNS))


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        table = trust_table(sm.params.rows, list(sm.input.metrics), list(sm.input.baselines), sm.input.data_audit,
                            sm.params.positive)
        table.to_csv(sm.output[0], index=False, float_format="%.4f")
        log.info("trust summary of %d model(s) written to %s", len(table), sm.output[0])
    except Exception:
        log.exception("trust summary failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
