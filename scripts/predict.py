"""Snakemake `script:` rule predict: a trained model on a configured source's images (cxrflow.predict)."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.methods_main import predict_main  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], predict_main, sm.input.model, sm.input.card, sm.input.manifest, sm.wildcards.source,
         list(sm.params.classes), sm.params.experiment, sm.output[0])  # fmt: skip
