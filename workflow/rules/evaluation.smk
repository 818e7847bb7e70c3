# Figures beside F1 (docs/trust.md): covariates of every image, confounders of the whole
# selection, and per model its calibration, an operating point chosen on the validation
# split, and its subgroups; an experiment with `seeds` gathers its seed runs. Each model's
# figures are JSON files beside its metrics.json. Logic: scripts/cxrflow/evaluation_main.py.

from cxrflow import layout as cxr_layout


rule covariates:
    input:
        manifest="results/preprocessed/manifest.csv",
    output:
        "results/preprocessed/covariates.csv",
    log:
        "results/logs/covariates.log",
    benchmark:
        "results/benchmarks/covariates.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        age_edges=config["evaluation"]["age_edges"],
    script:
        "../../scripts/covariates.py"


rule confounders:
    input:
        covariates="results/preprocessed/covariates.csv",
        assignments="results/splits/assignments.csv",
    output:
        "results/audit/confounders.json",
    log:
        "results/logs/confounders.log",
    benchmark:
        "results/benchmarks/confounders.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        settings=config["evaluation"]["confounders"],
    script:
        "../../scripts/confounders.py"


rule calibration:
    input:
        unpack(external_predictions),
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
        covariates="results/preprocessed/covariates.csv",
    output:
        json="results/experiments/{experiment}/fold{fold}/calibration.json",
        plot=report(
            "results/experiments/{experiment}/fold{fold}/reliability.png",
            caption="../report/reliability.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "reliability diagram",
            },
        ),
    log:
        "results/logs/calibration/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/calibration/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        bins=config["evaluation"]["calibration_bins"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/calibration.py"


rule operating_point:
    input:
        unpack(external_predictions),
        val="results/experiments/{experiment}/fold{fold}/val_predictions.csv",
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
        covariates="results/preprocessed/covariates.csv",
    output:
        "results/experiments/{experiment}/fold{fold}/operating_point.json",
    log:
        "results/logs/operating_point/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/operating_point/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        settings=config["evaluation"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/operating_point.py"


rule subgroups:
    input:
        unpack(external_predictions),
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
        covariates="results/preprocessed/covariates.csv",
        operating_point="results/experiments/{experiment}/fold{fold}/operating_point.json",
    output:
        json="results/experiments/{experiment}/fold{fold}/subgroups.json",
        csv="results/experiments/{experiment}/fold{fold}/subgroups.csv",
        plot=report(
            "results/experiments/{experiment}/fold{fold}/subgroups.png",
            caption="../report/subgroups.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "subgroups",
            },
        ),
    log:
        "results/logs/subgroups/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/subgroups/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        settings=config["evaluation"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/subgroups.py"


rule seed_summary:
    input:
        metrics=seed_metrics,
    output:
        json="results/experiments/{experiment}/seeds.json",
        plot=report(
            "results/experiments/{experiment}/seeds.png",
            caption="../report/seeds.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "all",
                "figure": "F1 per seed",
            },
        ),
    log:
        "results/logs/seed_summary/{experiment}.log",
    benchmark:
        "results/benchmarks/seed_summary/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        runs=seed_runs,
        positive=config["classes"][0],
    script:
        "../../scripts/seed_summary.py"
