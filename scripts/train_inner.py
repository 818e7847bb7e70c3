"""Snakemake `script:` rule: train one grid point on one inner fold and score it on the inner validation part."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.nested import train_and_score_main  # noqa: E402

sm = snakemake  # noqa: F821
train_and_score_main(
    experiment=sm.params.experiment, params=sm.params.grid_point, point=int(sm.wildcards.point),
    inner=int(sm.wildcards.inner), classes=list(sm.params.classes), train_csv=sm.input.train,
    val_csv=sm.input.val, score_path=sm.output.score, predictions_path=sm.output.predictions,
    history_path=sm.output.history, checkpoint_dir=sm.params.checkpoint_dir,
    scratch_model=sm.params.scratch_model, log_path=sm.log[0], workers=sm.threads,
)
