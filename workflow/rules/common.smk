# Path helpers and input functions: which images exist, where each output goes.
# The selection of images is computed here, once per Snakemake start, from the
# sources' metadata, so that adding images to a source schedules exactly their
# crop jobs (a dry run shows them) and nothing else. Logic lives in scripts/cxrflow/;
# where results live is cxrflow.layout.

from pathlib import Path

from cxrflow import crop_batches as cxr_batch
from cxrflow import config as cxr_config
from cxrflow import layout as cxr_layout
from cxrflow import crop_listings as cxr_listing
from cxrflow import preprocess as cxr_preprocess
from cxrflow import record as cxr_record
from cxrflow import report_views as cxr_views
from cxrflow import sources as cxr_sources
from cxrflow import synth as cxr_synth

RESULTS = Path(cxr_layout.RESULTS)
DEMO = config["demo"]
DEMO_FILES = [str(Path(DEMO["path"]) / f) for f in cxr_synth.demo_files(DEMO)]
SPLIT_NAMES = ["train", "val", "test"]
FOLDS = list(range(config["split"]["folds"]))
# Each experiment's folds and optional stages (external test, nested CV, own split).
PLANS = cxr_layout.experiment_plans(config)


wildcard_constraints:
    source="[A-Za-z0-9][A-Za-z0-9_-]*",
    image_id="[A-Za-z0-9._-]+",
    experiment="[A-Za-z0-9][A-Za-z0-9_-]*",
    fold="[0-9]+",
    inner="[0-9]+",
    point="[0-9]+",


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


def inventory_source(name):
    """The source's image rows, the files it skips and its metadata's encoding."""
    spec = config["sources"][name]
    labels = spec.get("labels", config["labels"])
    planned = planned_demo_metadata(spec)
    if planned is None:
        return cxr_sources.inventory_source(name, spec, labels, check_files=True)
    images = cxr_sources.select_images(
        name, spec, planned, Path(spec["path"]), labels, check_files=False
    )
    return cxr_sources.SourceInventory.of_images(images)


INVENTORIES = {name: inventory_source(name) for name in config["sources"]}
SELECTIONS = {name: inv.images for name, inv in INVENTORIES.items()}
# Each source's selection as the last run wrote it (read now: Snakemake deletes a job's
# output before the job runs), so that select_source can say what changed.
PREVIOUS_SELECTIONS = {
    name: cxr_jobs.read_selection(RESULTS / "sources" / f"{name}.csv")
    for name in config["sources"]
}
DEMO_SOURCES = set(cxr_config.synthetic_sources(config))
IMAGES = {
    (row.source, row.image_id): row
    for table in SELECTIONS.values()
    for row in table.itertuples(index=False)
}


# Crop settings are what process_image takes; batch_size only says how jobs are cut,
# so changing it must not change (or re-run) any image's crop.
BATCH_SIZE = config["preprocess"]["batch_size"]
CROP_SETTINGS = cxr_preprocess.crop_settings(config["preprocess"])
# source -> batch name -> image ids; empty with batch_size 1 (one job per image).
BATCHES = {
    source: cxr_batch.assign_batches(list(table["image_id"]), BATCH_SIZE)
    for source, table in SELECTIONS.items()
    if BATCH_SIZE > 1
}


def record_path(source, image_id):
    return str(RESULTS / "preprocessed" / "records" / source / f"{image_id}.json")


def png_path(source, image_id):
    return str(RESULTS / "preprocessed" / "images" / source / f"{image_id}.png")


def crop_png(wildcards):
    return png_path(wildcards.source, wildcards.image_id)


def batch_path(source, batch):
    return str(RESULTS / "preprocessed" / "batches" / source / f"{batch}.json")


def record_files():
    """Every selected image's record JSON, whichever job wrote it."""
    return [record_path(s, i) for (s, i) in IMAGES]


def all_records():
    """The manifest's crop inputs: per-image records, or one file per batch."""
    if BATCH_SIZE == 1:
        return record_files()
    return [batch_path(s, b) for s, batches in BATCHES.items() for b in batches]


def image_row(wildcards):
    return IMAGES[(wildcards.source, wildcards.image_id)]


def raw_input(wildcards):
    """The raw image as input, unless it is known bad (missing, unsafe path)."""
    row = image_row(wildcards)
    return [] if row.problem else [row.raw_path]


def batch_rows(wildcards):
    return [
        IMAGES[(wildcards.source, i)]
        for i in BATCHES[wildcards.source][wildcards.batch]
    ]


def listing_path(source, batch):
    return str(RESULTS / "preprocessed" / "listings" / source / f"{batch}.tsv")


def batch_listing_rows(source, batch):
    """(image_id, raw_path, problem) of each image of a batch, as its listing holds them."""
    return [
        (row.image_id, row.raw_path, row.problem)
        for row in (IMAGES[(source, i)] for i in BATCHES[source][batch])
    ]


def listing_key_file(wildcards):
    """The batch listing's key file (cxrflow.crop_listings): named by the key of the listing's text as it
    would be written now (stats read, nothing written), so a changed batch is a missing file.
    Demo images do not exist at parse time; their content follows from demo_data's metadata, a
    batch input of its own, so they are listed without a stat."""
    source, batch = wildcards.source, wildcards.batch
    text = cxr_listing.listing_text(
        batch_listing_rows(source, batch), stat=not is_demo_source(source)
    )
    return str(
        Path(listing_path(source, batch)).parent
        / "keys"
        / f"{batch}.{cxr_listing.listing_key(text)}"
    )


def write_batch_listing(wildcards, key_file, output, log):
    """The batch_listing job: the listing written, its earlier key files and vanished batches' listings removed."""
    cxr_jobs.write_listing_job(
        batch_listing_rows(wildcards.source, wildcards.batch),
        not is_demo_source(wildcards.source),
        output,
        key_file,
        list(BATCHES[wildcards.source]),
        log,
    )


def batch_inputs(wildcards):
    """The batch's listing (one input instead of hundreds of raw images) and, for the
    demo, its metadata (written by demo_data)."""
    demo = source_inputs(wildcards) if is_demo_source(wildcards.source) else []
    return [listing_path(wildcards.source, wildcards.batch), *demo]


def batch_items(wildcards):
    return [
        cxr_batch.BatchItem(
            row.image_id,
            row.raw_path,
            row.problem,
            png_path(wildcards.source, row.image_id),
            record_path(wildcards.source, row.image_id),
        )
        for row in batch_rows(wildcards)
    ]


def is_demo_source(source):
    return source in DEMO_SOURCES


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
    return Path(cxr_layout.experiment_dir(experiment))


def experiment_summaries():
    return [str(experiment_dir(e) / "metrics.json") for e in config["experiments"]]


def image_crop_settings(wildcards):
    """One image's settings as its content key sees them (decode keys -> its decode scale):
    Snakemake re-runs a per-image job only when they change. Reads the file's header."""
    row = image_row(wildcards)
    return cxr_preprocess.key_settings(
        CROP_SETTINGS, None if row.problem else row.raw_path
    )


def crop_item(wildcards, params):
    row = image_row(wildcards)
    return cxr_batch.BatchItem(
        row.image_id,
        row.raw_path,
        row.problem,
        params.png,
        record_path(row.source, row.image_id),
    )


def experiment_params(wildcards):
    return config["experiments"][wildcards.experiment]


def experiment_fold_ids(experiment):
    """Outer folds of an experiment: its own `folds`, else split.folds."""
    return list(PLANS[experiment].folds)


def own_split(experiment):
    return PLANS[experiment].own_split


def is_external(experiment):
    return PLANS[experiment].external


def is_nested(experiment):
    return PLANS[experiment].nested


def split_root(experiment):
    return Path(PLANS[experiment].split_root)


def split_input(name):
    """Input function: the experiment's split file `name` of the fold (train, val, test, assignments)."""

    def files(wildcards):
        root = split_root(wildcards.experiment)
        if name == "assignments":
            return str(root / "assignments.csv")
        return str(root / f"fold{wildcards.fold}" / f"{name}.csv")

    return files


def experiment_folds():
    """(experiment, fold) of every trained model, in the trust summary's row order."""
    return [(e, k) for e in config["experiments"] for k in experiment_fold_ids(e)]


def record_inputs(wildcards):
    """Input function of model_record: every part the model has (cxrflow.record.RECORD_PARTS)."""
    plan = PLANS[wildcards.experiment]
    return cxr_record.part_paths(plan, int(wildcards.fold), config["audit"])


def model_records():
    """Every model's record, in the trust summary's row order."""
    return [cxr_layout.record_path(e, k) for e, k in experiment_folds()]


def grid_points(experiment):
    """cxrflow.nested imports scikit-learn (1-2 s): only a workflow with a grid pays for it."""
    grid = config["experiments"][experiment]["grid"]
    if not grid:
        return []
    from cxrflow import nested

    return nested.grid_points(grid)


def inner_params(wildcards):
    return grid_points(wildcards.experiment)[int(wildcards.point)]


def inner_scores(wildcards):
    """Every (inner fold, grid point) score of one outer fold: the select job's inputs."""
    spec = config["experiments"][wildcards.experiment]
    fold_dir = experiment_dir(wildcards.experiment) / f"fold{wildcards.fold}"
    return [
        str(fold_dir / "inner" / f"split{j}" / f"point{p}" / "score.json")
        for j in range(spec["inner_folds"])
        for p in range(len(grid_points(wildcards.experiment)))
    ]


def choice_input(wildcards):
    """The final training of a nested experiment reads its outer fold's choice."""
    if not is_nested(wildcards.experiment):
        return {}
    return {
        "choice": str(
            experiment_dir(wildcards.experiment)
            / f"fold{wildcards.fold}"
            / "choice.json"
        )
    }


def weights_input(wildcards):
    """A `weights: imagenet` training reads the fetched base file (the same for every fold)."""
    spec = config["experiments"][wildcards.experiment]
    if spec["weights"] != "imagenet":
        return {}
    return {
        "weights": str(
            Path(config["weights_dir"]) / f"{spec['arch']}_imagenet_notop.h5"
        )
    }


def weights_backend(wildcards):
    """fetch_weights runs Keras' downloader under a backend an experiment with that base uses."""
    backends = [
        spec["backend"]
        for spec in config["experiments"].values()
        if spec["arch"] == wildcards.arch
    ]
    return backends[0] if backends else "tensorflow"


def summary_inputs(wildcards):
    """Per-fold results the experiment summary draws on (external and nested ones where set)."""
    e = wildcards.experiment
    folds = [experiment_dir(e) / f"fold{k}" for k in experiment_fold_ids(e)]
    inputs = {
        "metrics": [str(f / "metrics.json") for f in folds],
        "predictions": [str(f / "predictions.csv") for f in folds],
    }
    if is_external(e):
        inputs["external"] = [str(f / "external" / "metrics.json") for f in folds]
        inputs["comparison"] = str(experiment_dir(e) / "internal_vs_external.csv")
    if is_nested(e):
        inputs["choices"] = [str(f / "choice.json") for f in folds]
        inputs["nested"] = str(experiment_dir(e) / "nested_cv.csv")
    return inputs


def fold_results(name):
    """Input function: file `name` of every fold of the experiment."""

    def files(wildcards):
        e = wildcards.experiment
        return [
            str(experiment_dir(e) / f"fold{k}" / name) for k in experiment_fold_ids(e)
        ]

    return files


# The border-only control's mask, as load_split takes it ({fraction, fill}).
BORDER_MASK = {
    "fraction": config["audit"]["border_only"]["mask"],
    "fill": config["audit"]["border_only"]["fill"],
}


def get_final_output():
    """What `snakemake` with no target builds: preprocessing, splits, every experiment's
    summary, every model's record with its parts, and the report's pages."""
    return [
        *rules.preprocess.input,
        *rules.split.input,
        *experiment_summaries(),
        cxr_layout.DATA_AUDIT,
        cxr_layout.TRUST_SUMMARY,
        *model_records(),  # each pulls in every part of its model: audits, figures
        *report_views(),
        "results/report/verdict.html",
        *methods_outputs(),
    ]


# The report (report.smk): an HTML view of each table-like result a person reads.
def report_views():
    border_only = config["audit"]["border_only"]["enabled"]
    return [
        str(RESULTS / "report" / "views" / f"{path}.html")
        for path in cxr_layout.table_results(PLANS, border_only) + evaluation_views()
    ]


def view_caption(wildcards):
    """The result's own caption (workflow/report/*.rst), its Jinja filled in as for the file itself."""
    place = cxr_views.view_place(wildcards.path)
    text = (Path(workflow.basedir) / "workflow" / "report" / place.caption).read_text()
    return cxr_views.render_caption(text, config, place)
