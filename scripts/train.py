"""Snakemake `script:` rules train and train_border_only: one experiment on one fold (resumes after a kill).

Nested-CV experiments get their outer fold's choice.json as input `choice`: the
chosen grid point's settings replace the experiment's before training. The
border-only control passes `params.mask` ({fraction, fill}); the full model has none.
"""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.nested import apply_choice, read_choice  # noqa: E402 (imports no keras)
from cxrflow.train import main  # noqa: E402

experiment = snakemake.params.experiment  # noqa: F821
if "choice" in snakemake.input.keys():  # noqa: F821
    experiment = apply_choice(experiment, read_choice(snakemake.input.choice))  # noqa: F821

main(
    experiment=experiment,
    classes=list(snakemake.params.classes),  # noqa: F821
    train_csv=snakemake.input.train,  # noqa: F821
    val_csv=snakemake.input.val,  # noqa: F821
    model_path=snakemake.output.model,  # noqa: F821
    history_path=snakemake.output.history,  # noqa: F821
    checkpoint_dir=snakemake.params.checkpoint_dir,  # noqa: F821
    log_path=snakemake.log[0],  # noqa: F821
    workers=snakemake.threads,  # noqa: F821 (augmentation threads)
    mask=snakemake.params.get("mask"),  # noqa: F821
)
