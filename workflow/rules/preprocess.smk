# One crop job per image, run inside the Snakemake process (`run:` + the
# profile's force-use-threads) so that an image costs milliseconds of
# bookkeeping instead of a Python start; then one aggregate manifest.

from cxrflow import preprocess as cxr_preprocess  # noqa: E402
from cxrflow import manifest as cxr_manifest  # noqa: E402


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


rule crop_image:
    input:
        raw_input,
    output:
        "results/preprocessed/records/{source}/{image_id}.json",
    params:
        png=crop_png,
        settings=config["preprocess"],
        problem=lambda wildcards: image_row(wildcards).problem,
    log:
        "results/logs/crop/{source}/{image_id}.log",
    benchmark:
        "results/benchmarks/crop/{source}/{image_id}.tsv"
    group:
        "crop"
    run:
        crop_one(wildcards, output, params, log)


rule manifest:
    input:
        selections=expand("results/sources/{source}.csv", source=config["sources"]),
        records=all_records(),
    output:
        manifest="results/preprocessed/manifest.csv",
        summary=report(
            "results/preprocessed/summary.json",
            caption="../report/manifest.rst",
            category="1. Data",
        ),
    log:
        "results/logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/manifest.py"


rule preprocess:
    input:
        "results/preprocessed/manifest.csv",
