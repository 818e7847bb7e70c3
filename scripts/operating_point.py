"""Rule operating_point: the threshold chosen on the validation predictions, frozen and applied to every test set."""

from cxrflow.evaluation_main import operating_point_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], operating_point_main, sm.input.val, sm.input.predictions, sm.input.get("external"),
         sm.input.covariates, sm.output[0], list(sm.params.classes), sm.params.settings, sm.params.bootstrap,
         sm.log[0])  # fmt: skip
