"""Snakemake `script:` rule: one experiment's metrics over its folds (mean ± sd, per-fold values)."""

from cxrflow.metrics import summarize_main

sm = snakemake  # noqa: F821 (injected by Snakemake)
summarize_main(metrics_paths=list(sm.input.metrics), output_path=sm.output.metrics, log_path=sm.log[0])
