"""Rule external_table: internal vs external test scores per fold, side by side (cxrflow.external)."""

from cxrflow.external import side_by_side_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], side_by_side_main, list(sm.input.internal), list(sm.input.external), list(sm.params.classes),
         sm.output[0])  # fmt: skip
