"""Snakemake `script:` rule: one fold's model on the external test set (the held-out test_sources).

Also rule evaluate_border_only_external: the border-only control on it (`params.mask`)."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.external import evaluate_external_main  # noqa: E402

sm = snakemake  # noqa: F821
evaluate_external_main(
    model_path=sm.input.model, external_csv=sm.input.external, train_csv=sm.input.train, val_csv=sm.input.val,
    predictions_path=sm.output.predictions, report_path=sm.output.report, metrics_path=sm.output.metrics,
    confusion_png=sm.output.confusion, roc_png=sm.output.roc, classes=list(sm.params.classes),
    experiment=sm.params.experiment, experiment_name=sm.wildcards.experiment, fold=sm.wildcards.fold,
    log_path=sm.log[0], bootstrap=sm.params.bootstrap, mask=sm.params.get("mask"),
)
