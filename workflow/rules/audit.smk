# Can the numbers be trusted? A data audit (leakage, near-duplicates across
# splits, can the source be read off the pixels) and one summary table that
# opens the HTML report, read from every model's record (record.smk). Near-duplicates are found by make_splits (split.smk),
# the CIs by evaluate, the trivial baselines by baselines (model.smk) and the
# border-only control by shortcut_audit (shortcut.smk).

from cxrflow import layout as cxr_layout


rule audit_data:
    input:
        manifest="results/preprocessed/manifest.csv",
        assignments="results/splits/assignments.csv",
        duplicates="results/audit/duplicates.csv",
    output:
        "results/audit/data_audit.json",
        shared=report(
            "results/audit/shared_images.png",
            caption="../report/shared_images.rst",
            category=cxr_layout.DATA_CATEGORY,
            subcategory="Data audit",
        ),
    log:
        "results/logs/audit_data.log",
    benchmark:
        "results/benchmarks/audit_data.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        source=config["audit"]["source_predictability"],
        thumbnail_size=config["audit"]["baselines"]["thumbnail_size"],
    script:
        "../../scripts/audit_data.py"


rule trust_summary:
    input:
        records=model_records(),
    output:
        cxr_layout.TRUST_SUMMARY,
    log:
        "results/logs/trust_summary.log",
    benchmark:
        "results/benchmarks/trust_summary.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        positive=config["classes"][0],
    script:
        "../../scripts/audit_trust.py"
