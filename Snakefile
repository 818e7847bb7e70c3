# Chest X-ray COVID-19 classification experiments: raw collections -> cropped
# 224x224 images -> leakage-free splits -> Keras models -> F1 reports.
# Settings: config.yaml, validated and defaulted by the package's schema
# (scripts/cxrflow/config.schema.yaml, shipped with the package).


import sys
import time
from pathlib import Path

import yaml
from snakemake.logging import logger as snakemake_logger
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from cxrflow import config as cxr_config  # noqa: E402
from cxrflow import console as cxr_console  # noqa: E402
from cxrflow import crop_jobs as cxr_jobs  # noqa: E402

# Jobs with hundreds of files (demo_data, manifest) print a few paths and a count.
cxr_console.install_short_path_lists(snakemake_logger)


configfile: "config.yaml"


# The demo only when the user names no sources (scripts/cxrflow/config.py).
DEMO_ACTIVE = cxr_config.apply_demo(
    config,
    yaml.safe_load((Path(workflow.basedir) / "workflow" / "demo.yaml").read_text()),
)


validate(config, str(cxr_config.SCHEMA))
cxr_config.check_source_mix(config)
# An experiment with `seeds` becomes one experiment per seed (config.expand_seeds).
SEED_GROUPS = cxr_config.expand_seeds(config)
cxr_config.check_experiments(config)
RUN_START = time.time()


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/evaluation_common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/nested.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/record.smk"
include: "workflow/rules/shortcut.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/methods_inputs.smk"
include: "workflow/rules/methods.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
        seed_summaries(),
    localrule: True


onstart:
    check_slurm_run()
    keep_previous_provenance()


onsuccess:
    line = cxr_jobs.preprocess_line(
        "results/preprocessed/summary.json",
        "results/preprocessed/quarantine.csv",
        "results/preprocessed/records",
        RUN_START,
    )
    if line:
        print(line, file=sys.stderr)
