"""Rule subgroups: every test figure per source, sex, age band and view, with n and intervals."""

from cxrflow.evaluation_main import subgroups_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], subgroups_main, sm.input.predictions, sm.input.get("external"), sm.input.covariates,
         sm.input.operating_point, dict(sm.output.items()), list(sm.params.classes), sm.params.settings,
         sm.params.bootstrap, sm.log[0])  # fmt: skip
