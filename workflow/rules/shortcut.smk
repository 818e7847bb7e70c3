# Shortcut audit per experiment and fold: the border-only control (the same
# training and split with the experiment's untuned settings, on images whose
# central lung field is masked), a verdict on whether the borders alone explain
# the model's score, and a Grad-CAM panel showing where the model looks.
# docs/trust.md.

from pathlib import Path

from cxrflow import layout as cxr_layout


# The control is trained with the experiment's own settings, never a nested
# experiment's choice for the full model: tuning picked for the full model would
# tilt the verdict (docs/trust.md). The same job then evaluates the control on the
# test split (Keras and the model are loaded once; no setting is chosen there).
rule train_border_only:
    input:
        unpack(weights_input),
        train=split_input("train"),
        val=split_input("val"),
        test=split_input("test"),
    output:
        model="results/experiments/{experiment}/fold{fold}/border_only/model.keras",
        history="results/experiments/{experiment}/fold{fold}/border_only/history.csv",
        training="results/experiments/{experiment}/fold{fold}/border_only/training.json",
        predictions="results/experiments/{experiment}/fold{fold}/border_only/predictions.csv",
        report="results/experiments/{experiment}/fold{fold}/border_only/classification_report.txt",
        metrics="results/experiments/{experiment}/fold{fold}/border_only/metrics.json",
        history_plot="results/experiments/{experiment}/fold{fold}/border_only/history.png",
        confusion="results/experiments/{experiment}/fold{fold}/border_only/confusion_matrix.png",
        roc="results/experiments/{experiment}/fold{fold}/border_only/roc.png",
    log:
        "results/logs/train_border_only/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/train_border_only/{experiment}/fold{fold}.tsv"
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
        mask=BORDER_MASK,
        bootstrap=config["audit"]["bootstrap"],
        # Not an output: it must survive a killed job so the rerun resumes.
        checkpoint_dir=lambda wildcards, output: str(
            Path(output.model).parent / "checkpoint"
        ),
    script:
        "../../scripts/train.py"


rule shortcut_audit:
    input:
        full="results/experiments/{experiment}/fold{fold}/predictions.csv",
        border_only=rules.train_border_only.output.predictions,
    output:
        json="results/experiments/{experiment}/fold{fold}/shortcut_audit.json",
        text="results/experiments/{experiment}/fold{fold}/shortcut_audit.txt",
    log:
        "results/logs/shortcut_audit/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/shortcut_audit/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        settings=config["audit"]["border_only"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/shortcut_audit.py"


rule gradcam:
    input:
        model="results/experiments/{experiment}/fold{fold}/model.keras",
        predictions="results/experiments/{experiment}/fold{fold}/predictions.csv",
        test=split_input("test"),
    output:
        report(
            "results/experiments/{experiment}/fold{fold}/gradcam.png",
            caption="../report/gradcam.rst",
            category=cxr_layout.EXPERIMENT_CATEGORY,
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "Grad-CAM",
            },
        ),
    log:
        "results/logs/gradcam/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/gradcam/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    resources:
        gpu=1,
    params:
        experiment=experiment_params,
        classes=config["classes"],
        settings=config["audit"]["gradcam"],
    script:
        "../../scripts/gradcam_panel.py"


rule shortcut_summary:
    input:
        full=fold_results("predictions.csv"),
        border_only=fold_results("border_only/predictions.csv"),
        audits=fold_results("shortcut_audit.json"),
    output:
        json="results/experiments/{experiment}/shortcut_audit.json",
        text="results/experiments/{experiment}/shortcut_audit.txt",
    log:
        "results/logs/shortcut_summary/{experiment}.log",
    benchmark:
        "results/benchmarks/shortcut_summary/{experiment}.tsv"
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        settings=config["audit"]["border_only"],
        bootstrap=config["audit"]["bootstrap"],
    script:
        "../../scripts/shortcut_summary.py"


# With test_sources: the border-only control on the held-out sources too, so the
# external score can be read against what the frame alone gives there.
rule evaluate_border_only_external:
    input:
        model=rules.train_border_only.output.model,
        train=split_input("train"),
        val=split_input("val"),
        external="results/experiments/{experiment}/splits/external.csv",
    output:
        predictions="results/experiments/{experiment}/fold{fold}/external/border_only/predictions.csv",
        report="results/experiments/{experiment}/fold{fold}/external/border_only/classification_report.txt",
        metrics="results/experiments/{experiment}/fold{fold}/external/border_only/metrics.json",
        confusion="results/experiments/{experiment}/fold{fold}/external/border_only/confusion_matrix.png",
        roc="results/experiments/{experiment}/fold{fold}/external/border_only/roc.png",
    log:
        "results/logs/evaluate_border_only_external/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/evaluate_border_only_external/{experiment}/fold{fold}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        experiment=experiment_params,
        classes=config["classes"],
        bootstrap=config["audit"]["bootstrap"],
        mask=BORDER_MASK,
    script:
        "../../scripts/evaluate.py"


rule shortcut_audit_external:
    input:
        full="results/experiments/{experiment}/fold{fold}/external/predictions.csv",
        border_only=rules.evaluate_border_only_external.output.predictions,
    output:
        json="results/experiments/{experiment}/fold{fold}/external/shortcut_audit.json",
        text="results/experiments/{experiment}/fold{fold}/external/shortcut_audit.txt",
    log:
        "results/logs/shortcut_audit_external/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/shortcut_audit_external/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        settings=config["audit"]["border_only"],
        bootstrap=config["audit"]["bootstrap"],
        test="external",
    script:
        "../../scripts/shortcut_audit.py"
