"""Rule experiment_split: an experiment's own split (internal sources) and its external test set (thin wrapper).

The near-duplicates come from make_splits (results/audit/): the same clusters are
kept whole inside the internal split, and pairs reaching across to the external
set are counted in audit.json.
"""

import json
from pathlib import Path

import pandas as pd

from cxrflow import audit, external, manifest, split
from cxrflow.data import open_log
from cxrflow.manifest import write_csv_atomic

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
try:
    cfg, classes, test_sources = sm.params.split, list(sm.params.classes), list(sm.params.test_sources)
    table = manifest.read_manifest(sm.input.manifest)
    groups = json.loads(Path(sm.input.duplicate_groups).read_text())
    pairs = pd.read_csv(sm.input.duplicates, dtype={"image_id_a": str, "image_id_b": str})
    assignments = external.internal_split(table, test_sources, seed=cfg["seed"], test_size=cfg["test_size"],
                                          val_size=cfg["val_size"], folds=sm.params.folds, classes=classes,
                                          extra_groups=groups)
    split.check_no_leakage(assignments)
    held_out = (external.external_table(table, test_sources) if test_sources
                else pd.DataFrame(columns=list(external.EXTERNAL_COLUMNS)))
    ids = set(assignments["image_id"])
    internal_pairs = pairs[pairs["image_id_a"].isin(ids) & pairs["image_id_b"].isin(ids)]
    result = {
        "test_sources": test_sources,
        "internal_sources": sorted(set(assignments["source"])),
        "folds": int(sm.params.folds),
        "leakage": audit.leakage_report(assignments, internal_pairs),
        "split": split.split_summary(assignments, classes),
        "external": external.external_report(assignments, held_out, pairs, classes) if test_sources else None,
    }
    write_csv_atomic(assignments, Path(sm.output.assignments))
    write_csv_atomic(held_out, Path(sm.output.external))
    Path(sm.output.audit).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    log.info("internal split of %s (%d images, %d folds), external %s: %d images; leakage ok=%s",
             result["internal_sources"], len(assignments), sm.params.folds, test_sources, len(held_out),
             result["leakage"]["ok"])
    for warning in result["split"]["warnings"]:
        log.warning(warning)
except Exception:
    log.exception("experiment split failed")
    raise
