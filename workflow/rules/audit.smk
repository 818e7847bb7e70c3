# Can the numbers be trusted? A data audit (leakage, near-duplicates across
# splits, can the source be read off the pixels) and one summary table that
# opens the HTML report. Near-duplicates are found by make_splits (split.smk),
# the CIs by evaluate, the trivial baselines by baselines (model.smk) and the
# border-only control by shortcut_audit (shortcut.smk).


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
            category="1. Data",
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
        # thumbnails remembered between runs (cxrflow.audit.thumbnail_rows); safe to delete
        cache="results/cache/audit",
    script:
        "../../scripts/audit_data.py"


rule trust_summary:
    input:
        metrics=fold_files("metrics.json"),
        baselines=fold_files("baselines.json"),
        shortcut=shortcut_files(),
        shortcut_experiment=experiment_shortcut_files(),
        shortcut_external=external_shortcut_files(),
        data_audit="results/audit/data_audit.json",
        split_audits=sorted(set(split_audits())),
        external=external_metrics_files(),
    output:
        "results/trust_summary.csv",
    log:
        "results/logs/trust_summary.log",
    benchmark:
        "results/benchmarks/trust_summary.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        rows=experiment_folds(),
        # aligned with rows: the split audit covering each model, its external metrics or None
        split_audits=split_audits(),
        external=external_metrics_rows(),
        shortcut_experiment=experiment_shortcut_rows(),
        shortcut_external=external_shortcut_rows(),
        positive=config["classes"][0],
    script:
        "../../scripts/audit_trust.py"
