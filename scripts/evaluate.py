"""Snakemake `script:` rules evaluate, evaluate_external and their border-only twins: one fold's model on
its test split (or on the held-out sources, input `external`): predictions, report, metrics.json and plots."""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.experiment["backend"], snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.evaluate import EvaluationSettings, evaluate_main  # noqa: E402

sm = snakemake  # noqa: F821
splits = {name: sm.input[name] for name in ("train", "val", "test", "external") if name in sm.input.keys()}
run_rule(sm.log[0], evaluate_main, sm.input.model, splits, dict(sm.output.items()),
         EvaluationSettings.from_params(sm.params), dict(sm.wildcards.items()), sm.log[0],
         history_csv=sm.input.get("history"))  # fmt: skip
