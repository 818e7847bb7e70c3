"""Snakemake `script:` rule data_flow: the flow diagram with its JSON, and the partition table (cxrflow.flow)."""

from cxrflow.rule_log import run_rule
from cxrflow.methods_main import flow_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], flow_main, dict(sm.input.items()), dict(sm.output.items()), list(sm.params.classes),
         dict(sm.params.external), sm.input.skipped)  # fmt: skip
