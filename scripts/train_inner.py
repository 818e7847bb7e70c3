"""Snakemake `script:` rule: train one grid point on one inner fold and score it on the inner validation part."""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.experiment["backend"], snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.nested import train_and_score_main  # noqa: E402
from cxrflow.train import TrainingSettings  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], train_and_score_main, TrainingSettings.from_params(sm.params), sm.params.grid_point,
         {"train": sm.input.train, "val": sm.input.val}, dict(sm.output.items()), dict(sm.wildcards.items()),
         sm.params.scratch_model, sm.log[0], workers=sm.threads, weights_file=sm.input.get("weights"))  # fmt: skip
