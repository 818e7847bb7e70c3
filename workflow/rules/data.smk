# Raw data: the embedded synthetic demo, per-source selection tables, and
# optional downloads of the public collections.

from cxrflow import jobs as cxr_jobs


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
        # The selection itself: a change of filters, labels or listed files
        # re-runs this job and, through it, the manifest.
        table=lambda wildcards: SELECTIONS[wildcards.source].to_csv(index=False),
        # The files a folders source skips: a new one re-lists them.
        skipped=lambda wildcards: INVENTORIES[wildcards.source].skipped.to_csv(
            index=False
        ),
    run:
        cxr_jobs.write_inventory(
            INVENTORIES[wildcards.source], output.selection, output.skipped, log[0]
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
