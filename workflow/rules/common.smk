# Parse-time helpers: which images exist, where each output goes.
# The selection of images is computed here, once per Snakemake start, from the
# sources' metadata, so that adding images to a source schedules exactly their
# crop jobs (a dry run shows them) and nothing else.

from pathlib import Path
from types import SimpleNamespace

import jinja2

from cxrflow import sources as cxr_sources  # noqa: E402
from cxrflow import synth as cxr_synth  # noqa: E402
from cxrflow import batch as cxr_batch  # noqa: E402
from cxrflow import jobs as cxr_jobs  # noqa: E402
from cxrflow import listing as cxr_listing  # noqa: E402
from cxrflow import preprocess as cxr_preprocess  # noqa: E402
from cxrflow import nested as cxr_nested  # noqa: E402
from cxrflow import report_views as cxr_views  # noqa: E402

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


def write_listings():
    """One listing per batch (cxrflow.listing), rewritten now only where a row changed.

    Demo images do not exist at parse time; their content follows from demo_data's
    metadata, a batch input of its own, so they are listed without a stat.
    """
    for source, batches in BATCHES.items():
        stat = not is_demo_source(source)
        for batch, image_ids in batches.items():
            rows = [IMAGES[(source, i)] for i in image_ids]
            text = cxr_listing.listing_text(
                ((r.image_id, r.raw_path, r.problem) for r in rows), stat=stat
            )
            cxr_listing.write_if_changed(listing_path(source, batch), text)
        cxr_listing.remove_others(
            Path(listing_path(source, "x")).parent, [f"{b}.tsv" for b in batches]
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
    return RESULTS / "experiments" / experiment


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


write_listings()


def experiment_fold_ids(experiment):
    """Outer folds of an experiment: its own `folds`, else split.folds."""
    folds = config["experiments"][experiment]["folds"]
    return list(range(config["split"]["folds"] if folds is None else folds))


def own_split(experiment):
    """An experiment with held-out sources or its own fold count cannot use the shared split."""
    spec = config["experiments"][experiment]
    return bool(spec["test_sources"]) or len(experiment_fold_ids(experiment)) != len(
        FOLDS
    )


def is_external(experiment):
    return bool(config["experiments"][experiment]["test_sources"])


def is_nested(experiment):
    return bool(config["experiments"][experiment]["grid"])


def split_root(experiment):
    return (
        experiment_dir(experiment) / "splits"
        if own_split(experiment)
        else RESULTS / "splits"
    )


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


def fold_files(name):
    """One file per experiment and fold, aligned with experiment_folds()."""
    return [str(experiment_dir(e) / f"fold{k}" / name) for e, k in experiment_folds()]


def split_audits():
    """Per trust-summary row: the JSON whose `leakage` covers that model's split."""
    return [
        str(
            split_root(e) / "audit.json"
            if own_split(e)
            else RESULTS / "audit" / "data_audit.json"
        )
        for e, _ in experiment_folds()
    ]


def external_metrics_rows():
    """Per trust-summary row: its external metrics.json, or None without test_sources."""
    return [
        (
            str(experiment_dir(e) / f"fold{k}" / "external" / "metrics.json")
            if is_external(e)
            else None
        )
        for e, k in experiment_folds()
    ]


def grid_points(experiment):
    """cxrflow.nested imports scikit-learn (1-2 s): only a workflow with a grid pays for it."""
    grid = config["experiments"][experiment]["grid"]
    if not grid:
        return []
    from cxrflow import nested as cxr_nested

    return cxr_nested.grid_points(grid)


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


def shortcut_files():
    """shortcut_audit.json of every model, aligned with experiment_folds(); none when disabled."""
    if not config["audit"]["border_only"]["enabled"]:
        return []
    return fold_files("shortcut_audit.json")


def experiment_shortcut_rows():
    """Per trust-summary row: its experiment's shortcut_audit.json over all folds; none when disabled."""
    if not config["audit"]["border_only"]["enabled"]:
        return []
    return [
        str(experiment_dir(e) / "shortcut_audit.json") for e, _ in experiment_folds()
    ]


def external_shortcut_rows():
    """Per trust-summary row: its external shortcut_audit.json, or None (no test_sources, control disabled)."""
    if not config["audit"]["border_only"]["enabled"]:
        return []
    return [
        (
            str(experiment_dir(e) / f"fold{k}" / "external" / "shortcut_audit.json")
            if is_external(e)
            else None
        )
        for e, k in experiment_folds()
    ]


def gradcam_files():
    """gradcam.png of every model; none when audit.gradcam.enabled is false."""
    return fold_files("gradcam.png") if config["audit"]["gradcam"]["enabled"] else []


def experiment_shortcut_files():
    """Each experiment's shortcut_audit.json once (the rows' list, deduplicated)."""
    return sorted(set(experiment_shortcut_rows()))


def external_shortcut_files():
    """The external shortcut audits that exist (the rows' list without its None entries)."""
    return [path for path in external_shortcut_rows() if path]


def external_metrics_files():
    """The external metrics.json that exist (the rows' list without its None entries)."""
    return [path for path in external_metrics_rows() if path]


def get_final_output():
    """What `snakemake` with no target builds: preprocessing, splits, every experiment's
    summary, the audits and the trust summary that opens the report."""
    return [
        *rules.preprocess.input,
        *rules.split.input,
        *experiment_summaries(),
        "results/audit/data_audit.json",
        "results/trust_summary.csv",
        *shortcut_files(),
        *experiment_shortcut_files(),
        *external_shortcut_files(),
        *gradcam_files(),
        *report_views(),
        "results/report/verdict.html",
    ]


# The report (report.smk): an HTML view of each table-like result a person reads.
def table_results():
    """Every table-like result a person reads, relative to results/ (each gets an HTML view)."""
    files = [
        "trust_summary.csv",
        "preprocessed/summary.json",
        "splits/summary.json",
        "audit/duplicates.csv",
        "audit/data_audit.json",
    ]
    border_only = config["audit"]["border_only"]["enabled"]
    for e in config["experiments"]:
        base = f"experiments/{e}"
        files += [f"{base}/metrics.json", f"{base}/summary.txt"]
        if border_only:
            files.append(f"{base}/shortcut_audit.txt")
        if own_split(e):
            files.append(f"{base}/splits/audit.json")
        if is_external(e):
            files.append(f"{base}/internal_vs_external.csv")
        if is_nested(e):
            files.append(f"{base}/nested_cv.csv")
        for k in experiment_fold_ids(e):
            fold = f"{base}/fold{k}"
            files += [f"{fold}/predictions.csv", f"{fold}/classification_report.txt"]
            if border_only:
                files.append(f"{fold}/shortcut_audit.txt")
            if is_external(e):
                files += [
                    f"{fold}/external/predictions.csv",
                    f"{fold}/external/classification_report.txt",
                ]
                if border_only:
                    files.append(f"{fold}/external/shortcut_audit.txt")
    return files + evaluation_views()


def report_views():
    return [
        str(RESULTS / "report" / "views" / f"{path}.html") for path in table_results()
    ]


def view_caption(wildcards):
    """The result's own caption (workflow/report/*.rst), its Jinja filled in here: the view's caption
    is that text, so it reads as the file's caption always did."""
    place = cxr_views.view_place(wildcards.path)
    text = (Path(workflow.basedir) / "workflow" / "report" / place.caption).read_text()
    names = SimpleNamespace(experiment=place.experiment, fold=place.fold)
    return jinja2.Template(text).render(
        snakemake=SimpleNamespace(config=config, wildcards=names)
    )
