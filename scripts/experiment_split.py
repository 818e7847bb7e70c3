"""Rule experiment_split: an experiment's own split (internal sources) and its external test set.

The near-duplicates come from make_splits (results/audit/): the same clusters are
kept whole inside the internal split, and pairs reaching across to the external
set are counted in audit.json (cxrflow.external.experiment_split_main).
"""

from cxrflow.external import experiment_split_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], experiment_split_main, dict(sm.input.items()), dict(sm.output.items()), sm.params.split,
         int(sm.params.folds), list(sm.params.test_sources), list(sm.params.classes))  # fmt: skip
