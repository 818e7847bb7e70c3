"""Rule experiment_fold_split: one fold's train/val/test files of an experiment's own split (cxrflow.split)."""

from cxrflow.rule_log import run_rule
from cxrflow.split import fold_split_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], fold_split_main, sm.input.assignments, int(sm.wildcards.fold), dict(sm.output.items()))
