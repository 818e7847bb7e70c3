"""Rule nested_table: per outer fold the chosen settings and the outer test scores, then mean and sd."""

import json
from pathlib import Path

from cxrflow.data import open_log
from cxrflow.nested import nested_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
choices = [json.loads(Path(p).read_text()) for p in sm.input.choices]
metrics = [json.loads(Path(p).read_text()) for p in sm.input.metrics]
table = nested_table(choices, metrics, list(sm.params.classes))
table.to_csv(sm.output[0], index=False, float_format="%.6g")  # %.6g: a learning rate of 1e-5 stays readable
log.info("nested CV table of %d outer folds written to %s", len(choices), sm.output[0])
