"""Rule confounders: does age band, sex, view or source alone predict the label on the whole selection?"""

from cxrflow.evaluation_main import confounders_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], confounders_main, sm.input.covariates, sm.input.assignments, sm.output[0], sm.params.settings,
         sm.log[0])  # fmt: skip
