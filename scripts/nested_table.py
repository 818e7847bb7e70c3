"""Rule nested_table: per outer fold the chosen settings and the outer test scores, then mean and sd."""

from cxrflow.rule_log import run_rule
from cxrflow.nested import nested_table_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], nested_table_main, list(sm.input.choices), list(sm.input.metrics), list(sm.params.classes),
         sm.output[0])  # fmt: skip
