"""Snakemake `script:` rule model_card: model_card.json beside the model (cxrflow.model_card)."""

from cxrflow.rule_log import run_rule
from cxrflow.methods_main import card_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
files = dict(sm.input.items())
run_rule(sm.log[0], card_main, sm.wildcards.experiment, sm.wildcards.fold, sm.params.experiment,
         list(sm.params.classes), sm.params.preprocess, files, dict(sm.output.items()))  # fmt: skip
