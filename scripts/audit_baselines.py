"""Rule baselines: logistic regressions on thumbnails and on the border ring alone, beside the model.

The margin model - baseline says how much the deep model adds over what a linear
model reads off a 28x28 picture (or off the border alone): cxrflow.baselines.
"""

from cxrflow.baselines import baselines_main
from cxrflow.joblog import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], baselines_main, sm.input.train, sm.input.test, sm.input.metrics, sm.output[0],
         list(sm.params.classes), sm.params.settings, sm.input.predictions, sm.params.bootstrap)  # fmt: skip
