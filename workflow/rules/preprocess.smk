# One crop job per image, run inside the Snakemake process (`run:` + the
# profile's force-use-threads) so that an image costs milliseconds of
# bookkeeping instead of a Python start; then one aggregate manifest.


rule crop_image:
    input:
        raw_input,
    output:
        "results/preprocessed/records/{source}/{image_id}.json",
    log:
        "results/logs/crop/{source}/{image_id}.log",
    benchmark:
        "results/benchmarks/crop/{source}/{image_id}.tsv"
    group:
        "crop"
    params:
        png=crop_png,
        settings=config["preprocess"],
        problem=lambda wildcards: image_row(wildcards).problem,
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
