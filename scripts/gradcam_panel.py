"""Snakemake `script:` rule gradcam: where does the model look? A panel of Grad-CAM heat maps over
a seeded sample of correctly and wrongly classified test images per class (cxrflow.gradcam.panel_main)."""

import os

# Keras reads the backend once, at its first import: choose it before anything imports keras.
os.environ["KERAS_BACKEND"] = snakemake.params.experiment["backend"]  # noqa: F821 (injected by Snakemake)

from cxrflow.console import quiet_cuda_probe  # noqa: E402 (imports no keras)

quiet_cuda_probe()  # before TensorFlow: no cuInit noise on a machine without a GPU

from cxrflow.gradcam import panel_main  # noqa: E402
from cxrflow.rule_log import run_rule  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], panel_main, sm.input.model, sm.input.test, sm.input.predictions, sm.output[0],
         list(sm.params.classes), sm.params.experiment, sm.params.settings, sm.log[0])  # fmt: skip
