"""Snakemake `script:` rule provenance: results/provenance.json (cxrflow.provenance).

The run's start time and the previous record come from the Snakemake process (methods.smk),
not from params: a param that changes every run would re-run the rule every run.
"""

import os

from cxrflow.rule_log import run_rule
from cxrflow.methods_main import provenance_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], provenance_main, sm.config, sm.params.workflow_dir, sm.input.constraints,
         dict(sm.output.items()), os.environ.get("CXRFLOW_RUN_START"), sm.params.previous)  # fmt: skip
