# Crop jobs run inside the Snakemake process (`run:` + the profile's
# force-use-threads) so that a job costs milliseconds of bookkeeping instead
# of a Python start; then one aggregate manifest. preprocess.batch_size 1: one
# job per image; above 1: one job per stable batch of images (docs/performance.md),
# whose one input is the batch's listing (cxrflow.listing) and which skips images
# whose cached record still matches their bytes.

from cxrflow import jobs as cxr_jobs


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
    # params.settings only decides re-runs (per image: a change of the reduced-decode
    # settings re-runs the images whose decode scale it changes); the job gets them all.
    params:
        png=crop_png,
        settings=image_crop_settings,
        problem=lambda wildcards: image_row(wildcards).problem,
    run:
        cxr_jobs.crop_image_job(crop_item(wildcards, params), CROP_SETTINGS, log[0])


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
    # Batches side by side feed one process pool of --cores workers (cxrflow.jobs), so
    # the pool never waits for Snakemake between jobs. On a cluster each batch is a job
    # of its own: the profile's set-threads gives it its CPUs.
    threads: 1
    params:
        settings=CROP_SETTINGS,
    run:
        cxr_jobs.crop_batch_job(
            batch_items(wildcards),
            params.settings,
            workflow.cores,
            output[0],
            log[0],
            f"{wildcards.source} batch {wildcards.batch}",
        )


rule manifest:
    input:
        selections=expand("results/sources/{source}.csv", source=config["sources"]),
        skipped=expand("results/sources/skipped/{source}.csv", source=config["sources"]),
        records=all_records(),
    output:
        manifest="results/preprocessed/manifest.csv",
        summary="results/preprocessed/summary.json",
        quarantine="results/preprocessed/quarantine.csv",
        skipped="results/preprocessed/skipped.csv",
    log:
        "results/logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    localrule: True
    run:
        cxr_jobs.manifest_rule(input, output, log[0], BATCH_SIZE > 1)


# A source mostly quarantined is a wrong path or format, not bad luck: stop before
# splitting, with the reasons (preprocess.max_quarantined_share lets a user go on).
rule check_quarantine:
    input:
        summary="results/preprocessed/summary.json",
    output:
        "results/preprocessed/quarantine_check.json",
    log:
        "results/logs/check_quarantine.log",
    benchmark:
        "results/benchmarks/check_quarantine.tsv"
    localrule: True
    params:
        max_share=config["preprocess"]["max_quarantined_share"],
    run:
        cxr_jobs.check_quarantine_job(
            input.summary, params.max_share, output[0], log[0]
        )


rule preprocess:
    input:
        "results/preprocessed/manifest.csv",
        "results/preprocessed/quarantine_check.json",
    localrule: True
