# Crop jobs run inside the Snakemake process (`run:` + the profile's
# force-use-threads) so that a job costs milliseconds of bookkeeping instead
# of a Python start; then one aggregate manifest. preprocess.batch_size 1: one
# job per image; above 1: one job per stable batch of images (bench/README.md),
# which skips images whose cached record still matches their bytes.


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
        settings=CROP_SETTINGS,
        problem=lambda wildcards: image_row(wildcards).problem,
    run:
        crop_one(wildcards, output, params, log)


rule crop_batch:
    input:
        batch_inputs,
    output:
        "results/preprocessed/batches/{source}/{batch}.json",
    log:
        "results/logs/crop_batch/{source}/{batch}.log",
    benchmark:
        "results/benchmarks/crop_batch/{source}/{batch}.tsv"
    wildcard_constraints:
        batch="[0-9]+-[0-9]+",
    # One batch at a time, spread over all cores by a process pool (common.smk).
    threads: workflow.cores
    params:
        images=batch_images,
        settings=CROP_SETTINGS,
    run:
        crop_batch_job(wildcards, output, params, log, threads)


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
    run:
        manifest_job(input, output, log)


rule preprocess:
    input:
        "results/preprocessed/manifest.csv",
