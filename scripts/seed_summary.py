"""Rule seed_summary: an experiment repeated over seeds: each seed's F1 with mean, sd and range, and a forest plot."""

from cxrflow.evaluation_main import seeds_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], seeds_main, sm.wildcards.experiment, sm.params.runs, list(sm.input.metrics),
         dict(sm.output.items()), sm.params.positive, sm.log[0])  # fmt: skip
