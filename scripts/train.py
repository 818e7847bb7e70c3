"""Snakemake `script:` rules train and train_border_only: one experiment on one fold (resumes after a kill).

Nested-CV experiments get their outer fold's choice.json as input `choice`: the
chosen grid point's settings replace the experiment's before training. The
border-only control passes `params.mask` ({fraction, fill}); the full model has none.
A `weights: imagenet` experiment gets the fetched base file as input `weights`.
"""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.nested import train_main  # noqa: E402
from cxrflow.train import TrainingSettings  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], train_main, sm.input.get("choice"), TrainingSettings.from_params(sm.params), sm.input.train,
         sm.input.val, sm.output.model, sm.output.history, sm.log[0], workers=sm.threads,
         weights_file=sm.input.get("weights"), training_path=sm.output.training)  # fmt: skip
