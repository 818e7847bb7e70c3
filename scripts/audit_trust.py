"""Rule trust_summary: one row per experiment and fold with every reason to doubt its score.

The table opens the HTML report, so a reviewer sees leakage, uncertainty, how much
the model beats trivial baselines, its external score and whether the border-only
control flags a shortcut before looking at any single metric (cxrflow.audit.trust_table).
"""

from cxrflow.audit import trust_summary_main
from cxrflow.joblog import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], trust_summary_main, sm.output[0], sm.params.rows, list(sm.input.metrics),
         list(sm.input.baselines), sm.input.data_audit, sm.params.positive, list(sm.params.split_audits),
         list(sm.params.external), list(sm.input.get("shortcut", [])) or None,
         list(sm.params.shortcut_experiment) or None, list(sm.params.shortcut_external) or None)  # fmt: skip
