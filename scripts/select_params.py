"""Rule select_params: the grid point with the best mean inner score for one outer fold (cxrflow.nested)."""

from cxrflow.rule_log import run_rule
from cxrflow.nested import select_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], select_main, list(sm.params.points), list(sm.input), int(sm.wildcards.fold), sm.output.choice)
