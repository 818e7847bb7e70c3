"""Snakemake `script:` rule fetch_weights: one ImageNet base file, downloaded on the submitting host."""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.backend, snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.model import fetch_imagenet  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], fetch_imagenet, sm.wildcards.arch, sm.output[0])
