# Parse-time helpers: which images exist, where each output goes.
# The selection of images is computed here, once per Snakemake start, from the
# sources' metadata, so that adding images to a source schedules exactly their
# crop jobs (a dry run shows them) and nothing else.

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from cxrflow import sources as cxr_sources  # noqa: E402
from cxrflow import synth as cxr_synth  # noqa: E402
from cxrflow import preprocess as cxr_preprocess  # noqa: E402

RESULTS = Path("results")
DEMO = config["demo"]
DEMO_FILES = [str(Path(DEMO["path"]) / f) for f in cxr_synth.demo_files(DEMO)]
SPLIT_NAMES = ["train", "val", "test"]
FOLDS = list(range(config["split"]["folds"]))


wildcard_constraints:
    source="[A-Za-z0-9][A-Za-z0-9_-]*",
    image_id="[A-Za-z0-9._-]+",
    experiment="[A-Za-z0-9][A-Za-z0-9_-]*",
    fold="[0-9]+",


def metadata_file(spec):
    """The file whose content defines a source's selection (None for folders)."""
    name = cxr_sources.metadata_file(spec["format"], spec)
    return None if name is None else str(Path(spec["path"]) / name)


def planned_demo_metadata(spec):
    """Demo metadata before the demo rule has written it, or None for real data."""
    meta = metadata_file(spec)
    if meta is None or meta not in set(DEMO_FILES) or Path(meta).exists():
        return None
    rel = str(Path(meta).relative_to(DEMO["path"]))
    return cxr_sources.tidy_metadata(spec["format"], cxr_synth.plan_demo(DEMO)[rel])


def select_source(name):
    spec = config["sources"][name]
    labels = spec.get("labels", config["labels"])
    planned = planned_demo_metadata(spec)
    if planned is None:
        return cxr_sources.load_source(name, spec, labels, check_files=True)
    return cxr_sources.select_images(
        name, spec, planned, Path(spec["path"]), labels, check_files=False
    )


SELECTIONS = {name: select_source(name) for name in config["sources"]}
IMAGES = {
    (row.source, row.image_id): row
    for table in SELECTIONS.values()
    for row in table.itertuples(index=False)
}


def record_path(source, image_id):
    return str(RESULTS / "preprocessed" / "records" / source / f"{image_id}.json")


def crop_png(wildcards):
    return str(
        RESULTS
        / "preprocessed"
        / "images"
        / wildcards.source
        / f"{wildcards.image_id}.png"
    )


def all_records():
    return [record_path(s, i) for (s, i) in IMAGES]


def image_row(wildcards):
    return IMAGES[(wildcards.source, wildcards.image_id)]


def raw_input(wildcards):
    """The raw image as input, unless it is known bad (missing, unsafe path)."""
    row = image_row(wildcards)
    return [] if row.problem else [row.raw_path]


def source_inputs(wildcards):
    meta = metadata_file(config["sources"][wildcards.source])
    return [] if meta is None else [meta]


def split_files():
    return [
        str(RESULTS / "splits" / f"fold{k}" / f"{s}.csv")
        for k in FOLDS
        for s in SPLIT_NAMES
    ]


def experiment_dir(experiment):
    return RESULTS / "experiments" / experiment


def experiment_summaries():
    return [str(experiment_dir(e) / "metrics.json") for e in config["experiments"]]


def crop_one(wildcards, output, params, log):
    """Body of crop_image, kept here so the run directive stays one call."""
    row = image_row(wildcards)
    record = cxr_preprocess.process_image(
        row.image_id,
        row.raw_path,
        params.png,
        output[0],
        problem=row.problem,
        **params.settings,
    )
    Path(log[0]).write_text(f"{record['status']} {record['reason']}\n")


def write_selection(wildcards, output, log):
    """Body of select_source: the parse-time selection, written for the manifest."""
    table = SELECTIONS[wildcards.source]
    table.to_csv(output[0], index=False)
    problems = int((table["problem"] != "").sum())
    Path(log[0]).write_text(f"{len(table)} images selected, {problems} with problems\n")


def experiment_params(wildcards):
    return config["experiments"][wildcards.experiment]
