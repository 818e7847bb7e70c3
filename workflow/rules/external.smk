# External validation (experiments with `test_sources`) and experiments with their
# own fold count: a split of the experiment's own (the internal sources only, same
# seed and hash as the shared split), the held-out sources as an external test set
# for every fold's model, and internal vs external scores side by side.

from cxrflow import layout as cxr_layout


rule experiment_split:
    input:
        manifest="results/preprocessed/manifest.csv",
        duplicates="results/audit/duplicates.csv",
        duplicate_groups="results/audit/duplicate_groups.json",
    output:
        assignments="results/experiments/{experiment}/splits/assignments.csv",
        external="results/experiments/{experiment}/splits/external.csv",
        audit="results/experiments/{experiment}/splits/audit.json",
    log:
        "results/logs/experiment_split/{experiment}.log",
    benchmark:
        "results/benchmarks/experiment_split/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        split=config["split"],
        folds=lambda wildcards: len(experiment_fold_ids(wildcards.experiment)),
        test_sources=lambda wildcards: config["experiments"][wildcards.experiment][
            "test_sources"
        ],
        classes=config["classes"],
    script:
        "../../scripts/experiment_split.py"


rule experiment_fold_split:
    input:
        assignments="results/experiments/{experiment}/splits/assignments.csv",
    output:
        train="results/experiments/{experiment}/splits/fold{fold}/train.csv",
        val="results/experiments/{experiment}/splits/fold{fold}/val.csv",
        test="results/experiments/{experiment}/splits/fold{fold}/test.csv",
    log:
        "results/logs/experiment_fold_split/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/experiment_fold_split/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/fold_split.py"


rule evaluate_external:
    input:
        model=rules.train.output.model,
        train=split_input("train"),
        val=split_input("val"),
        external="results/experiments/{experiment}/splits/external.csv",
    output:
        predictions="results/experiments/{experiment}/fold{fold}/external/predictions.csv",
        report="results/experiments/{experiment}/fold{fold}/external/classification_report.txt",
        metrics="results/experiments/{experiment}/fold{fold}/external/metrics.json",
        confusion=report(
            "results/experiments/{experiment}/fold{fold}/external/confusion_matrix.png",
            caption="../report/external_confusion.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "external confusion matrix",
            },
        ),
        roc=report(
            "results/experiments/{experiment}/fold{fold}/external/roc.png",
            caption="../report/external_roc.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "external ROC",
            },
        ),
    log:
        "results/logs/evaluate_external/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/evaluate_external/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        experiment=experiment_params,
        classes=config["classes"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/evaluate.py"


rule external_table:
    input:
        internal=fold_results("metrics.json"),
        external=fold_results("external/metrics.json"),
    output:
        "results/experiments/{experiment}/internal_vs_external.csv",
    log:
        "results/logs/external_table/{experiment}.log",
    benchmark:
        "results/benchmarks/external_table/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        classes=config["classes"],
    script:
        "../../scripts/external_table.py"
