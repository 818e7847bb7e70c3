# The run's own methods section: where every image went (flow diagram and partition
# table), what produced the numbers (provenance), a card per trained model, the
# checklist items the run can fill, and predictions of a trained model on any
# configured source. Logic: scripts/cxrflow/{flow,partitions,provenance,model_card,
# predict,checklist}.py; entry points: scripts/cxrflow/methods_main.py.

from cxrflow import layout as cxr_layout


rule data_flow:
    input:
        manifest="results/preprocessed/manifest.csv",
        assignments="results/splits/assignments.csv",
        duplicate_groups="results/audit/duplicate_groups.json",
        skipped="results/preprocessed/skipped.csv",
        external=list(external_splits().values()),
    output:
        flow=str(METHODS / "flow.json"),
        figure=report(
            str(METHODS / "flow.png"),
            caption="../report/flow.rst",
            category=cxr_layout.METHODS_CATEGORY,
            labels={"figure": "data flow diagram"},
        ),
        flow_page=report(
            str(METHODS / "flow.html"),
            caption="../report/flow_table.rst",
            category=cxr_layout.METHODS_CATEGORY,
            labels={"figure": "data flow, every step"},
        ),
        partitions=str(METHODS / "partitions.csv"),
        partitions_page=report(
            str(METHODS / "partitions.html"),
            caption="../report/partitions.rst",
            category=cxr_layout.METHODS_CATEGORY,
            labels={"figure": "characteristics per partition"},
        ),
    log:
        "results/logs/methods/data_flow.log",
    benchmark:
        "results/benchmarks/methods/data_flow.tsv"
    localrule: True
    conda:
        "../../envs/train.yaml"
    params:
        classes=config["classes"],
        external=external_splits(),
    script:
        "../../scripts/data_flow.py"


rule provenance:
    input:
        after=provenance_after(),
        constraints=str(Path(workflow.basedir) / "constraints.txt"),
    output:
        record=str(PROVENANCE),
        page=report(
            str(METHODS / "provenance.html"),
            caption="../report/provenance.rst",
            category=cxr_layout.METHODS_CATEGORY,
            labels={"figure": "provenance"},
        ),
    log:
        "results/logs/methods/provenance.log",
    benchmark:
        "results/benchmarks/methods/provenance.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        # The repository whose commit is recorded: where constraints.txt lies, beside the Snakefile.
        workflow_dir=lambda wildcards, input: str(Path(input.constraints).parent),
        previous=str(PREVIOUS_PROVENANCE),
    script:
        "../../scripts/provenance.py"


rule model_card:
    input:
        unpack(card_inputs),
    output:
        card="results/experiments/{experiment}/fold{fold}/model_card.json",
        page=report(
            str(METHODS / "cards" / "{experiment}" / "fold{fold}.html"),
            caption="../report/model_card.rst",
            category=cxr_layout.METHODS_CATEGORY,
            subcategory="model cards",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "model card",
            },
        ),
    log:
        "results/logs/methods/model_card/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/methods/model_card/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        experiment=experiment_params,
        classes=config["classes"],
        preprocess=CROP_SETTINGS,
    script:
        "../../scripts/model_card.py"


rule checklist:
    input:
        flow=str(METHODS / "flow.json"),
        partitions=str(METHODS / "partitions.csv"),
        provenance=str(PROVENANCE),
        splits="results/splits/summary.json",
        cards=card_files(),
    output:
        markdown=str(METHODS / "checklist.md"),
        page=report(
            str(METHODS / "checklist.html"),
            caption="../report/checklist.rst",
            category=cxr_layout.METHODS_CATEGORY,
            labels={"figure": "reporting checklist"},
        ),
    log:
        "results/logs/methods/checklist.log",
    benchmark:
        "results/benchmarks/methods/checklist.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        cards=card_names(),
        classes=config["classes"],
    script:
        "../../scripts/checklist.py"


# On demand: `snakemake results/predictions/<experiment>/fold<k>/<source>.csv`.
rule predict:
    input:
        model="results/experiments/{experiment}/fold{fold}/model.keras",
        card="results/experiments/{experiment}/fold{fold}/model_card.json",
        manifest="results/preprocessed/manifest.csv",
    output:
        "results/predictions/{experiment}/fold{fold}/{source}.csv",
    log:
        "results/logs/predict/{experiment}/fold{fold}/{source}.log",
    benchmark:
        "results/benchmarks/predict/{experiment}/fold{fold}/{source}.tsv"
    conda:
        "../../envs/train.yaml"
    params:
        experiment=experiment_params,
        classes=config["classes"],
    script:
        "../../scripts/predict.py"
