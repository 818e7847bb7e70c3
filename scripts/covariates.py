"""Rule covariates: normalised age, sex, view and age band of every ok image (DICOM headers fill
what the metadata lacks)."""

from cxrflow.evaluation_main import covariates_main
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], covariates_main, sm.input.manifest, sm.output[0], sm.params.age_edges, sm.log[0])
