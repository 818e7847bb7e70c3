"""Rule trust_summary: one row per experiment and fold with every reason to doubt its score.

The table opens the HTML report, so a reviewer sees leakage, uncertainty, how much
the model beats trivial baselines, its external score and whether the border-only
control flags a shortcut before looking at any single metric. Each row is read from
the model's record (cxrflow.record.trust_columns).
"""

from cxrflow.joblog import run_rule
from cxrflow.record import trust_summary_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], trust_summary_main, sm.output[0], list(sm.input.records), sm.params.positive)
