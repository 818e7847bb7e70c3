# Raw data: the embedded synthetic demo, per-source selection tables, and
# optional downloads of the public collections.

from cxrflow import crop_jobs as cxr_jobs


rule demo_data:
    output:
        DEMO_FILES,
    log:
        "results/logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        demo=DEMO,
    script:
        "../../scripts/demo_data.py"


rule select_source:
    input:
        source_inputs,
    output:
        selection="results/sources/{source}.csv",
        skipped="results/sources/skipped/{source}.csv",
    log:
        "results/logs/select_source/{source}.log",
    benchmark:
        "results/benchmarks/select_source/{source}.tsv"
    localrule: True
    params:
        # Digests of the selection and of the skipped files, not the tables: a change of
        # filters, labels or listed files re-runs this job (and, through it, the manifest),
        # and the job's reason on the console stays one short line; the job says what
        # changed in one line.
        table=lambda wildcards: cxr_jobs.selection_digest(SELECTIONS[wildcards.source]),
        skipped=lambda wildcards: cxr_jobs.selection_digest(
            INVENTORIES[wildcards.source].skipped
        ),
    run:
        cxr_jobs.write_inventory(
            INVENTORIES[wildcards.source],
            PREVIOUS_SELECTIONS[wildcards.source],
            output.selection,
            output.skipped,
            log[0],
            wildcards.source,
        )


rule download_ieee8023:
    output:
        directory(config["download"]["ieee8023"]["dest"]),
    log:
        "results/logs/download/ieee8023.log",
    benchmark:
        "results/benchmarks/download/ieee8023.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        url=config["download"]["ieee8023"]["url"],
        ref=config["download"]["ieee8023"]["ref"],
    script:
        "../../scripts/download.py"


rule download_rsna:
    output:
        directory(config["download"]["rsna"]["dest"]),
    log:
        "results/logs/download/rsna.log",
    benchmark:
        "results/benchmarks/download/rsna.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    params:
        competition=config["download"]["rsna"]["competition"],
        cli=config["download"]["rsna"]["cli"],
    script:
        "../../scripts/download.py"
