"""Rule make_splits: patient-grouped, stratified, stable splits (thin wrapper)."""

import json
import logging
from pathlib import Path

from cxrflow import manifest, split

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
cfg = snakemake.params.split  # noqa: F821
classes = snakemake.params.classes  # noqa: F821
table = manifest.read_manifest(snakemake.input.manifest)  # noqa: F821
assignments = split.assign_splits(
    table,
    seed=cfg["seed"],
    test_size=cfg["test_size"],
    val_size=cfg["val_size"],
    folds=cfg["folds"],
    classes=classes,
)
split.check_no_leakage(assignments)
split.write_split_files(assignments, Path(snakemake.params.out_dir))  # noqa: F821
summary = split.split_summary(assignments, classes)
Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2) + "\n")  # noqa: F821
for warning in summary.get("warnings", []):
    logging.warning(warning)
