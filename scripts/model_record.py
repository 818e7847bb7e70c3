"""Rule model_record: every part known about one model gathered into its record.json (cxrflow.record)."""

from cxrflow.joblog import run_rule
from cxrflow.record import write_record

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], write_record, sm.output[0], sm.wildcards.experiment, int(sm.wildcards.fold), dict(sm.input.items()))
