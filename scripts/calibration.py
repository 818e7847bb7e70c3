"""Rule calibration: Brier score, calibration intercept and slope, reliability diagram, per test set and class."""

from cxrflow.evaluation_main import calibration_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], calibration_main, sm.input.predictions, sm.input.get("external"), sm.input.covariates,
         dict(sm.output.items()), list(sm.params.classes), sm.params.bins, sm.params.bootstrap, sm.log[0])  # fmt: skip
