"""Rule inner_split: one inner fold of an outer training split, grouped by patient (cxrflow.nested)."""

from cxrflow.rule_log import run_rule
from cxrflow.nested import write_inner_split

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], write_inner_split, sm.input.train, sm.input.assignments, sm.params.inner_folds,
         int(sm.wildcards.inner), sm.params.seed, sm.output.train, sm.output.val)  # fmt: skip
