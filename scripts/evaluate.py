"""Snakemake `script:` rules evaluate and evaluate_border_only: predict the test split, write predictions,
report, metrics.json and plots (the border-only control passes `params.mask`)."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.metrics import evaluate_main  # noqa: E402

sm = snakemake  # noqa: F821
wildcards = dict(sm.wildcards.items())
evaluate_main(
    model_path=sm.input.model, train_csv=sm.input.train, val_csv=sm.input.val, test_csv=sm.input.test,
    history_csv=sm.input.history,
    predictions_path=sm.output.predictions, report_path=sm.output.report, metrics_path=sm.output.metrics,
    history_png=sm.output.history_plot, confusion_png=sm.output.confusion, roc_png=sm.output.roc,
    classes=list(sm.params.classes), experiment=sm.params.experiment,
    experiment_name=wildcards.get("experiment", ""), fold=wildcards.get("fold", ""),
    log_path=sm.log[0], bootstrap=sm.params.bootstrap, mask=sm.params.get("mask"),
)
