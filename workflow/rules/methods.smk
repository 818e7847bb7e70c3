# The run's own methods section: where every image went (flow diagram and partition
# table), what produced the numbers (provenance), a card per trained model, the
# checklist items the run can fill, and predictions of a trained model on any
# configured source. Logic: scripts/cxrflow/{flow,partitions,provenance,model_card,
# predict,checklist}.py; entry points: scripts/cxrflow/methods_main.py.

import os
import shutil

METHODS = RESULTS / "methods"
METHODS_CATEGORY = "4. Methods"
# Written by the listing of folder sources where present: files that are not images or
# not of a configured class ("files listed" = manifest rows + these).
SKIPPED_CSV = RESULTS / "preprocessed" / "skipped.csv"
PROVENANCE = RESULTS / "provenance.json"
# The last record, kept before the provenance job replaces it: changed fingerprints are named.
PREVIOUS_PROVENANCE = RESULTS / "logs" / "provenance" / "previous.json"
# The job reads the run's start from the environment: as a param it would re-run the job every run.
os.environ.setdefault("CXRFLOW_RUN_START", str(RUN_START))
if PROVENANCE.is_file():
    PREVIOUS_PROVENANCE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROVENANCE, PREVIOUS_PROVENANCE)


def external_splits():
    """experiment -> its external.csv, for experiments that hold sources out."""
    return {
        e: str(experiment_dir(e) / "splits" / "external.csv")
        for e in config["experiments"]
        if is_external(e)
    }


def card_files():
    """model_card.json of every trained model, aligned with experiment_folds()."""
    return fold_files("model_card.json")


def card_names():
    """'experiment/fold<k>' -> its model_card.json."""
    return {
        f"{e}/fold{k}": path for (e, k), path in zip(experiment_folds(), card_files())
    }


def methods_outputs():
    """What the methods rules add to `rule all`."""
    cards = [
        str(METHODS / "cards" / e / f"fold{k}.html") for e, k in experiment_folds()
    ]
    return [
        str(METHODS / "flow.json"),
        str(METHODS / "flow.html"),
        str(METHODS / "partitions.html"),
        str(PROVENANCE),
        *card_files(),
        *cards,
        str(METHODS / "checklist.md"),
    ]


def provenance_after():
    """Everything else the run makes: the record is written last, its end time the run's."""
    methods = set(methods_outputs())
    return [path for path in get_final_output() if path not in methods]


def card_inputs(wildcards):
    e, k = wildcards.experiment, wildcards.fold
    fold = experiment_dir(e) / f"fold{k}"
    files = {
        "model": str(fold / "model.keras"),
        "metrics": str(fold / "metrics.json"),
        "history": str(fold / "history.csv"),
        "train": split_input("train")(wildcards),
        "val": split_input("val")(wildcards),
    }
    if config["audit"]["border_only"]["enabled"]:
        files["shortcut"] = str(fold / "shortcut_audit.json")
    if is_external(e):
        files["external_metrics"] = str(fold / "external" / "metrics.json")
    return files


def card_optional(wildcards):
    """Records other rules may write beside the model; read where present, 'not recorded' otherwise."""
    fold = experiment_dir(wildcards.experiment) / f"fold{wildcards.fold}"
    return {
        "operating_point": str(fold / "operating_point.json"),
        "training": str(fold / "training.json"),
    }


rule data_flow:
    input:
        manifest="results/preprocessed/manifest.csv",
        assignments="results/splits/assignments.csv",
        duplicate_groups="results/audit/duplicate_groups.json",
        external=list(external_splits().values()),
    output:
        flow=str(METHODS / "flow.json"),
        figure=report(
            str(METHODS / "flow.png"),
            caption="../report/flow.rst",
            category=METHODS_CATEGORY,
            labels={"figure": "data flow diagram"},
        ),
        flow_page=report(
            str(METHODS / "flow.html"),
            caption="../report/flow_table.rst",
            category=METHODS_CATEGORY,
            labels={"figure": "data flow, every step"},
        ),
        partitions=str(METHODS / "partitions.csv"),
        partitions_page=report(
            str(METHODS / "partitions.html"),
            caption="../report/partitions.rst",
            category=METHODS_CATEGORY,
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
        skipped=str(SKIPPED_CSV),
    script:
        "../../scripts/data_flow.py"


rule provenance:
    input:
        after=provenance_after(),
        constraints="constraints.txt",
    output:
        record=str(PROVENANCE),
        page=report(
            str(METHODS / "provenance.html"),
            caption="../report/provenance.rst",
            category=METHODS_CATEGORY,
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
        workflow_dir=workflow.basedir,
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
            category=METHODS_CATEGORY,
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
        optional=card_optional,
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
            category=METHODS_CATEGORY,
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
