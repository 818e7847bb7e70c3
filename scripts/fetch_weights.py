"""Snakemake `script:` rule fetch_weights: one ImageNet base file, downloaded on the submitting host."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.backend  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.model import fetch_imagenet  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], fetch_imagenet, sm.wildcards.arch, sm.output[0])
