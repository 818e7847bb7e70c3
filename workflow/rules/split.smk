# Leakage-free split manifests: seeded, stratified by label, grouped by
# patient and by near-duplicate cluster, stable when patients are added.
# The near-duplicate search runs inside make_splits because it decides the
# split (a copy of one radiograph stays with its twin, as a patient's images do).

from pathlib import Path


rule make_splits:
    input:
        manifest="results/preprocessed/manifest.csv",
        quarantine_check="results/preprocessed/quarantine_check.json",
    output:
        files=split_files(),
        assignments="results/splits/assignments.csv",
        summary="results/splits/summary.json",
        duplicates="results/audit/duplicates.csv",
        duplicate_groups="results/audit/duplicate_groups.json",
    log:
        "results/logs/make_splits.log",
    benchmark:
        "results/benchmarks/make_splits.tsv"
    conda:
        "../../envs/preprocess.yaml"
    # The copy search decodes and aligns in a pool of `threads` processes (scaled down to
    # --cores locally). A number, not workflow.cores: that would make `snakemake --unlock`,
    # `-n` and `--lint` demand --cores, and ask a cluster node for every core of the run.
    threads: 2
    params:
        split=config["split"],
        classes=config["classes"],
        duplicates=config["audit"]["duplicates"],
        out_dir=lambda wildcards, output: str(Path(output.assignments).parent),
    script:
        "../../scripts/split.py"


rule split:
    input:
        "results/splits/summary.json",
    localrule: True
