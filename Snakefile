# Chest X-ray COVID-19 classification experiments: raw collections -> cropped
# 224x224 images -> leakage-free splits -> Keras models -> F1 reports.
# Settings: config.yaml, validated and defaulted by workflow/schemas/.


from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


# Run by the submitting Snakemake, never as cluster jobs: downloads need the
# login node's network, and the rest are seconds of bookkeeping that would
# otherwise wait in a cluster queue.
localrules:
    all,
    preprocess,
    split,
    select_source,
    manifest,
    summarize,
    trust_summary,
    download_ieee8023,
    download_rsna,
    experiment_split,
    experiment_fold_split,
    inner_split,
    select_params,
    external_table,
    nested_table,
    shortcut_audit,
    shortcut_summary,
    shortcut_audit_external,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/nested.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/shortcut.smk"


rule all:
    default_target: True
    input:
        rules.preprocess.input,
        rules.split.input,
        experiment_summaries(),
        "results/audit/data_audit.json",
        "results/trust_summary.csv",
        shortcut_files(),
        sorted(set(experiment_shortcut_rows())),
        [path for path in external_shortcut_rows() if path],
        gradcam_files(),
