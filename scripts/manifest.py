"""Rule manifest: one row per selected image, cropped or quarantined (thin wrapper)."""

import json
import logging
from pathlib import Path

import pandas as pd

from cxrflow import manifest

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
selection = pd.concat(
    [pd.read_csv(p, dtype=str, keep_default_na=False) for p in inp.selections],
    ignore_index=True,
)
table = manifest.build_manifest(selection, [Path(p) for p in inp.records])
manifest.write_manifest(table, Path(out.manifest))
summary = manifest.manifest_summary(table)
Path(out.summary).write_text(json.dumps(summary, indent=2) + "\n")
logging.info("manifest: %s", json.dumps(summary))
