"""Snakemake `script:` rules train and train_border_only: one experiment on one fold (resumes after a kill).

Nested-CV experiments get their outer fold's choice.json as input `choice`: the
chosen grid point's settings replace the experiment's before training. The
border-only control passes `params.mask` ({fraction, fill}); the full model has none.
A `weights: imagenet` experiment gets the fetched base file as input `weights`.
The border-only control, whose rule also names the test split and the evaluation's
outputs, is evaluated in the same process (Keras started once).
"""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.experiment["backend"], snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.nested import train_main  # noqa: E402
from cxrflow.train import TrainingSettings  # noqa: E402
from cxrflow.evaluate import EvaluationSettings, evaluate_main  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], train_main, sm.input.get("choice"), TrainingSettings.from_params(sm.params), sm.input.train,
         sm.input.val, sm.output.model, sm.output.history, sm.log[0], workers=sm.threads,
         weights_file=sm.input.get("weights"), training_path=sm.output.training)  # fmt: skip
if "predictions" in sm.output.keys():
    run_rule(sm.log[0], evaluate_main, sm.output.model, {n: sm.input[n] for n in ("train", "val", "test")},
             dict(sm.output.items()), EvaluationSettings.from_params(sm.params), dict(sm.wildcards.items()),
             sm.log[0], history_csv=sm.output.history)  # fmt: skip
