"""Rule demo_data: write the embedded synthetic dataset (thin wrapper)."""

import logging
from pathlib import Path

from cxrflow import synth

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
demo = snakemake.params.demo  # noqa: F821
synth.write_demo(demo, Path(demo["path"]))
logging.info("wrote %d demo files under %s", len(snakemake.output), demo["path"])  # noqa: F821
