"""Rules download_ieee8023 / download_rsna: fetch a public collection (thin wrapper)."""

import logging
from pathlib import Path

from cxrflow import download

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
dest = Path(snakemake.output[0])  # noqa: F821
params = snakemake.params  # noqa: F821
if snakemake.rule == "download_ieee8023":  # noqa: F821
    download.fetch_ieee8023(dest, params.url, params.ref)
else:
    download.fetch_rsna(dest, params.competition, cli=params.cli)
logging.info("downloaded into %s", dest)
