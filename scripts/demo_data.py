"""Rule demo_data: write the embedded synthetic dataset (cxrflow.synth)."""

from pathlib import Path

from cxrflow import synth
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
run_rule(sm.log[0], synth.write_demo, sm.params.demo, Path(sm.params.demo["path"]))
