"""Snakemake `script:` rule: one experiment over its folds: metrics.json (spread and CIs), summary.txt, summary.png.

External test results and nested-CV choices are folded in where the experiment has them.
"""

import json
from pathlib import Path

import pandas as pd

from cxrflow.data import open_log
from cxrflow.metrics import read_predictions
from cxrflow.nested import nested_summary
from cxrflow.summary import experiment_summary, summary_plot, summary_text

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = open_log(sm.log[0])
try:
    classes = list(sm.params.classes)
    folds = [json.loads(Path(p).read_text()) for p in sm.input.metrics]
    predictions = [read_predictions(p) for p in sm.input.predictions]
    external = [json.loads(Path(p).read_text()) for p in sm.input.get("external", [])]
    comparison = pd.read_csv(sm.input.comparison, dtype={"fold": str}) if "comparison" in sm.input.keys() else None
    choices = [json.loads(Path(p).read_text()) for p in sm.input.get("choices", [])]
    nested = nested_summary(choices, folds, classes) if choices else None
    summary = experiment_summary(folds, predictions, classes, sm.params.bootstrap, external, comparison, nested)
    Path(sm.output.metrics).write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    Path(sm.output.text).write_text(summary_text(summary, classes))
    summary_plot(summary, classes, sm.output.plot)
    log.info("summarized %d fold(s) of %s", len(folds), summary.get("experiment"))
except Exception:
    log.exception("summary failed")
    raise
