"""Rules download_ieee8023 / download_rsna: fetch a public collection (cxrflow.download)."""

from pathlib import Path

from cxrflow import download
from cxrflow.rule_log import run_rule

sm = snakemake  # noqa: F821 (injected by Snakemake)
if sm.rule == "download_ieee8023":
    run_rule(sm.log[0], download.fetch_ieee8023, Path(sm.output[0]), sm.params.url, sm.params.ref)
else:
    run_rule(sm.log[0], download.fetch_rsna, Path(sm.output[0]), sm.params.competition, cli=sm.params.cli)
