"""Rule audit_data: leakage between splits and whether the source gives the label away.

Two things that make a test score meaningless without any bug in the model:
the same patient or radiograph on both sides of a split, and collections that
coincide with labels while being recognisable from the pixels (the model then
learns the collection). Both are measured by cxrflow.audit.data_audit.
"""

import json
from pathlib import Path
from typing import Any

import pandas as pd

from cxrflow import audit, copies_figure, manifest
from cxrflow.data import open_log


def main(sm: Any) -> None:
    log = open_log(sm.log[0])
    try:
        table = manifest.read_manifest(sm.input.manifest)
        assignments = pd.read_csv(sm.input.assignments, dtype=str, keep_default_na=False)
        pairs = pd.read_csv(sm.input.duplicates, dtype={"image_id_a": str, "image_id_b": str})
        result = audit.data_audit(table, assignments, pairs, sm.params.thumbnail_size, sm.params.source)
        Path(sm.output[0]).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
        leakage, source = result["leakage"], result["source_predictability"]
        log.info("leakage ok=%s (total shared %d); %s", leakage["ok"], leakage["total_shared"], source["sentence"])
        raw = table["resolved_path"].where(table["resolved_path"].astype(str) != "", table["raw_path"])
        copies_figure.shared_figure(pairs, dict(zip(table["image_id"].astype(str), raw)), sm.output.shared)
        for row in copies_figure.shared_by_source(pairs).itertuples(index=False):
            log.info("shared %s/%s: %d pairs (%d exact)", row.source_a, row.source_b, row.pairs, row.exact)
    except Exception:
        log.exception("data audit failed")
        raise


main(snakemake)  # noqa: F821 (injected by Snakemake)
