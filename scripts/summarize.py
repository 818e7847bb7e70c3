"""Snakemake `script:` rule: one experiment over its folds: metrics.json (spread and CIs), summary.txt, summary.png.

External test results and nested-CV choices are folded in where the experiment has them (cxrflow.experiment_summary).
"""

from cxrflow.rule_log import run_rule
from cxrflow.experiment_summary import summarize_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], summarize_main, dict(sm.input.items()), dict(sm.output.items()), list(sm.params.classes),
         sm.params.bootstrap)  # fmt: skip
