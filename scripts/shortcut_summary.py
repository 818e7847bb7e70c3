"""Snakemake `script:` rule shortcut_summary: one shortcut verdict per experiment, over all its folds.

Pools the folds' test predictions of the model and of its border-only control
(cxrflow.shortcut.experiment_audit) and writes the experiment's shortcut_audit.json
and .txt beside its metrics.json.
"""

from cxrflow.rule_log import run_rule
from cxrflow.shortcut import experiment_audit_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], experiment_audit_main, list(sm.input.full), list(sm.input.border_only), list(sm.input.audits),
         dict(sm.output.items()), list(sm.params.classes), sm.params.settings, sm.params.bootstrap,
         sm.wildcards.experiment)  # fmt: skip
