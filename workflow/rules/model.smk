# Training (one GPU job per experiment and fold), evaluation on the held-out
# test split, and a per-experiment summary over folds.


def experiment_params(wildcards):
    return config["experiments"][wildcards.experiment]


def fold_file(split):
    return "results/splits/fold{fold}/" + split + ".csv"


rule train:
    input:
        train=fold_file("train"),
        val=fold_file("val"),
    output:
        model="results/experiments/{experiment}/fold{fold}/model.keras",
        history="results/experiments/{experiment}/fold{fold}/history.csv",
    params:
        experiment=experiment_params,
        classes=config["classes"],
        # Not an output: it must survive a killed job so the rerun resumes.
        checkpoint_dir=lambda wildcards, output: str(
            Path(output.model).parent / "checkpoint"
        ),
    resources:
        gpu=1,
    threads: 2
    log:
        "results/logs/train/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/train.py"


FOLD_DIR = "results/experiments/{experiment}/fold{fold}/"


rule evaluate:
    input:
        model=rules.train.output.model,
        history=rules.train.output.history,
        train=fold_file("train"),
        val=fold_file("val"),
        test=fold_file("test"),
    output:
        predictions=report(
            FOLD_DIR + "predictions.csv",
            caption="../report/predictions.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "{fold}", "figure": "predictions"},
        ),
        report=report(
            FOLD_DIR + "classification_report.txt",
            caption="../report/classification_report.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "{fold}", "figure": "classification report"},
        ),
        metrics=FOLD_DIR + "metrics.json",
        history_plot=report(
            FOLD_DIR + "history.png",
            caption="../report/history.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "{fold}", "figure": "training history"},
        ),
        confusion=report(
            FOLD_DIR + "confusion_matrix.png",
            caption="../report/confusion.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "{fold}", "figure": "confusion matrix"},
        ),
        roc=report(
            FOLD_DIR + "roc.png",
            caption="../report/roc.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "{fold}", "figure": "ROC"},
        ),
    params:
        experiment=experiment_params,
        classes=config["classes"],
    log:
        "results/logs/evaluate/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/evaluate/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/evaluate.py"


rule summarize:
    input:
        metrics=expand(
            "results/experiments/{{experiment}}/fold{fold}/metrics.json", fold=FOLDS
        ),
    output:
        metrics=report(
            "results/experiments/{experiment}/metrics.json",
            caption="../report/summary.rst",
            category="2. Experiments",
            subcategory="{experiment}",
            labels={"fold": "all", "figure": "summary metrics"},
        ),
    log:
        "results/logs/summarize/{experiment}.log",
    benchmark:
        "results/benchmarks/summarize/{experiment}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/summarize.py"
