"""Rule predict_val: a fold's model on its validation split (val_predictions.csv), through the same
prediction code as the test split, so the operating point can be chosen without the test set."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()

from cxrflow.evaluation_main import predict_main  # noqa: E402
from cxrflow.rule_log import run_rule  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], predict_main, sm.input.model, sm.input.val, sm.output[0], list(sm.params.classes),
         sm.params.experiment, sm.log[0])  # fmt: skip
