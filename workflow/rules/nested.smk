# Nested cross-validation (experiments with a `grid`): per outer fold, the outer
# training split is cut into inner folds; every grid point is trained on each
# inner-train part and scored on its inner-validation part (one GPU job each);
# select_params picks the best point, which the `train` rule then retrains on the
# outer training split (it reads choice.json at run time).

from pathlib import Path


rule inner_split:
    input:
        train=split_input("train"),
        assignments=split_input("assignments"),
    output:
        train="results/experiments/{experiment}/fold{fold}/inner/split{inner}/train.csv",
        val="results/experiments/{experiment}/fold{fold}/inner/split{inner}/val.csv",
    log:
        "results/logs/inner_split/{experiment}/fold{fold}/split{inner}.log",
    benchmark:
        "results/benchmarks/inner_split/{experiment}/fold{fold}/split{inner}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        inner_folds=lambda wildcards: config["experiments"][wildcards.experiment][
            "inner_folds"
        ],
        seed=config["split"]["seed"],
    script:
        "../../scripts/inner_split.py"


rule train_inner:
    input:
        unpack(weights_input),
        train=rules.inner_split.output.train,
        val=rules.inner_split.output.val,
    output:
        score="results/experiments/{experiment}/fold{fold}/inner/split{inner}/point{point}/score.json",
        predictions="results/experiments/{experiment}/fold{fold}/inner/split{inner}/point{point}/predictions.csv",
        history="results/experiments/{experiment}/fold{fold}/inner/split{inner}/point{point}/history.csv",
        training="results/experiments/{experiment}/fold{fold}/inner/split{inner}/point{point}/training.json",
    log:
        "results/logs/train_inner/{experiment}/fold{fold}/split{inner}/point{point}.log",
    benchmark:
        "results/benchmarks/train_inner/{experiment}/fold{fold}/split{inner}/point{point}.tsv"
    conda:
        "../../envs/train.yaml"
    # CPU threads of the Keras backend (cxrflow.keras_job), scaled down to --cores;
    # --set-threads changes it (docs/performance.md, "Threads").
    threads: 8
    resources:
        gpu=1,
    params:
        experiment=experiment_params,
        grid_point=inner_params,
        classes=config["classes"],
        # Not outputs: the checkpoint must survive a killed job; the model is scored, then deleted.
        checkpoint_dir=lambda wildcards, output: str(
            Path(output.score).parent / "checkpoint"
        ),
        scratch_model=lambda wildcards, output: str(
            Path(output.score).parent / "model.scratch.keras"
        ),
    script:
        "../../scripts/train_inner.py"


rule select_params:
    input:
        inner_scores,
    output:
        choice="results/experiments/{experiment}/fold{fold}/choice.json",
    log:
        "results/logs/select_params/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/select_params/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        points=lambda wildcards: grid_points(wildcards.experiment),
    script:
        "../../scripts/select_params.py"


rule nested_table:
    input:
        choices=fold_results("choice.json"),
        metrics=fold_results("metrics.json"),
    output:
        "results/experiments/{experiment}/nested_cv.csv",
    log:
        "results/logs/nested_table/{experiment}.log",
    benchmark:
        "results/benchmarks/nested_table/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        classes=config["classes"],
    script:
        "../../scripts/nested_table.py"
