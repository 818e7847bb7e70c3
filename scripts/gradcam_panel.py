"""Snakemake `script:` rule gradcam: where does the model look? A panel of Grad-CAM heat maps over
a seeded sample of correctly and wrongly classified test images per class (cxrflow.gradcam.panel_main)."""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.experiment["backend"], snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.gradcam import panel_main  # noqa: E402
from cxrflow.rule_log import run_rule  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], panel_main, sm.input.model, sm.input.test, sm.input.predictions, sm.output[0],
         list(sm.params.classes), sm.params.experiment, sm.params.settings, sm.log[0])  # fmt: skip
