"""Rule experiment_fold_split: one fold's train/val/test files of an experiment's own split (thin wrapper)."""

from pathlib import Path

import pandas as pd

from cxrflow.data import open_log
from cxrflow.manifest import write_csv_atomic
from cxrflow.split import fold_tables

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
tables = fold_tables(pd.read_csv(sm.input.assignments, dtype=str, keep_default_na=False), int(sm.wildcards.fold))
for name, rows in tables.items():
    write_csv_atomic(rows, Path(sm.output[name]))
log.info("fold %s: %s", sm.wildcards.fold, {name: len(rows) for name, rows in tables.items()})
