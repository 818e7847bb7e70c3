# Training (one GPU job per experiment and fold), evaluation on the held-out
# test split, and a per-experiment summary over folds. Split files come from the
# shared split, or from the experiment's own (external.smk) when it has one.
# ImageNet weights are fetched once, on the host that runs Snakemake (fetch_weights,
# a local rule), so training jobs on compute nodes without network read a file.


rule fetch_weights:
    output:
        str(Path(config["weights_dir"]) / "{arch}_imagenet_notop.h5"),
    log:
        "results/logs/fetch_weights/{arch}.log",
    benchmark:
        "results/benchmarks/fetch_weights/{arch}.tsv"
    wildcard_constraints:
        arch="vgg19|resnet50",
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        backend=weights_backend,
    script:
        "../../scripts/fetch_weights.py"


from pathlib import Path

from cxrflow import layout as cxr_layout


rule train:
    input:
        unpack(choice_input),
        unpack(weights_input),
        train=split_input("train"),
        val=split_input("val"),
    output:
        model="results/experiments/{experiment}/fold{fold}/model.keras",
        history="results/experiments/{experiment}/fold{fold}/history.csv",
        training="results/experiments/{experiment}/fold{fold}/training.json",
    log:
        "results/logs/train/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    # CPU threads of the Keras backend (cxrflow.keras_job), scaled down to --cores;
    # --set-threads changes it (docs/performance.md, "Threads").
    threads: 8
    resources:
        gpu=1,
    params:
        experiment=experiment_params,
        classes=config["classes"],
        # Not an output: it must survive a killed job so the rerun resumes.
        checkpoint_dir=lambda wildcards, output: str(
            Path(output.model).parent / "checkpoint"
        ),
    script:
        "../../scripts/train.py"


rule evaluate:
    input:
        model=rules.train.output.model,
        history=rules.train.output.history,
        train=split_input("train"),
        val=split_input("val"),
        test=split_input("test"),
    output:
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
        report="results/experiments/{experiment}/fold{fold}/classification_report.txt",
        metrics="results/experiments/{experiment}/fold{fold}/metrics.json",
        # The model on its validation split, where the operating point is chosen.
        val_predictions="results/experiments/{experiment}/fold{fold}/val_predictions.csv",
        history_plot=report(
            "results/experiments/{experiment}/fold{fold}/history.png",
            caption="../report/history.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "training history",
            },
        ),
        confusion=report(
            "results/experiments/{experiment}/fold{fold}/confusion_matrix.png",
            caption="../report/confusion.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "confusion matrix",
            },
        ),
        roc=report(
            "results/experiments/{experiment}/fold{fold}/roc.png",
            caption="../report/roc.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={"experiment": "{experiment}", "fold": "{fold}", "figure": "ROC"},
        ),
    log:
        "results/logs/evaluate/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/evaluate/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        experiment=experiment_params,
        classes=config["classes"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/evaluate.py"


rule baselines:
    input:
        train=split_input("train"),
        test=split_input("test"),
        metrics="results/experiments/{experiment}/fold{fold}/metrics.json",
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
    output:
        "results/experiments/{experiment}/fold{fold}/baselines.json",
    log:
        "results/logs/baselines/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/baselines/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        settings=config["audit"]["baselines"],
        classes=config["classes"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/baselines.py"


rule summarize:
    input:
        unpack(summary_inputs),
    output:
        metrics="results/experiments/{experiment}/metrics.json",
        text="results/experiments/{experiment}/summary.txt",
        plot=report(
            "results/experiments/{experiment}/summary.png",
            caption="../report/summary_plot.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "all",
                "figure": "F1 per fold",
            },
        ),
    log:
        "results/logs/summarize/{experiment}.log",
    benchmark:
        "results/benchmarks/summarize/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/summarize.py"
