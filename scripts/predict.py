"""Snakemake `script:` rule predict: a trained model on a configured source's images (cxrflow.predict)."""

from cxrflow.keras_job import prepare  # imports no keras

# before anything imports keras: the backend, the job's threads, a quiet CUDA probe
prepare(snakemake.params.experiment["backend"], snakemake.threads)  # noqa: F821 (injected by Snakemake)

from cxrflow.rule_log import run_rule  # noqa: E402
from cxrflow.methods_main import predict_main  # noqa: E402

sm = snakemake  # noqa: F821
run_rule(sm.log[0], predict_main, sm.input.model, sm.input.card, sm.input.manifest, sm.wildcards.source,
         list(sm.params.classes), sm.params.experiment, sm.output[0])  # fmt: skip
