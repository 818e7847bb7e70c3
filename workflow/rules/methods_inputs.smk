# Parse-time helpers of the methods rules (methods.smk): their paths and inputs.

import os
import shutil

METHODS = RESULTS / "methods"
# Written by the listing of folder sources where present: files that are not images or
# not of a configured class ("files listed" = manifest rows + these).
SKIPPED_CSV = RESULTS / "preprocessed" / "skipped.csv"
PROVENANCE = RESULTS / "provenance.json"
# The last record, kept before the provenance job replaces it: changed fingerprints are named.
PREVIOUS_PROVENANCE = RESULTS / "logs" / "provenance" / "previous.json"
# The job reads the run's start from the environment: as a param it would re-run the job every run.
os.environ.setdefault("CXRFLOW_RUN_START", str(RUN_START))


def keep_previous_provenance():
    """Copy the last record aside before a run replaces it (called on start, never while
    the workflow is read: -n, --lint and --unlock write nothing)."""
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
    return [
        str(Path(cxr_layout.fold_dir(e, k)) / "model_card.json")
        for e, k in experiment_folds()
    ]


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
        "training": str(fold / "training.json"),
        "operating_point": str(fold / "operating_point.json"),
        "train": split_input("train")(wildcards),
        "val": split_input("val")(wildcards),
    }
    if config["audit"]["border_only"]["enabled"]:
        files["shortcut"] = str(fold / "shortcut_audit.json")
    if is_external(e):
        files["external_metrics"] = str(fold / "external" / "metrics.json")
    return files
