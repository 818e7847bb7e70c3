"""Rule external_table: internal vs external test scores per fold, side by side (thin wrapper)."""

import json
from pathlib import Path

from cxrflow.data import open_log
from cxrflow.external import side_by_side

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
internal = [json.loads(Path(p).read_text()) for p in sm.input.internal]
external = [json.loads(Path(p).read_text()) for p in sm.input.external]
table = side_by_side(internal, external, list(sm.params.classes))
table.to_csv(sm.output[0], index=False, float_format="%.4f")
log.info("internal vs external over %d fold(s) written to %s", len(internal), sm.output[0])
