"""Rule select_params: the grid point with the best mean inner score for one outer fold (thin wrapper)."""

import json
from pathlib import Path

from cxrflow.data import open_log
from cxrflow.nested import select

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
scores = [json.loads(Path(p).read_text()) for p in sm.input]
choice = {"outer_fold": int(sm.wildcards.fold), **select(list(sm.params.points), scores)}
Path(sm.output.choice).write_text(json.dumps(choice, indent=2, allow_nan=False) + "\n")
log.info("outer fold %s: chose grid point %d %s (mean inner score %.4f)", sm.wildcards.fold,
         choice["chosen"]["index"], choice["chosen"]["params"], choice["chosen"]["mean"])
