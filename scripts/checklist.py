"""Snakemake `script:` rule checklist: TRIPOD+AI and CLAIM items filled from the run (cxrflow.checklist)."""

from cxrflow.rule_log import run_rule
from cxrflow.methods_main import checklist_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], checklist_main, dict(sm.input.items()), dict(sm.params.cards), list(sm.params.classes),
         dict(sm.output.items()))  # fmt: skip
