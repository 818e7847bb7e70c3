# Leakage-free split manifests: seeded, stratified by label, grouped by
# patient, stable when patients are added.


rule make_splits:
    input:
        manifest="results/preprocessed/manifest.csv",
    output:
        files=split_files(),
        assignments="results/splits/assignments.csv",
        summary=report(
            "results/splits/summary.json",
            caption="../report/splits.rst",
            category="1. Data",
        ),
    log:
        "results/logs/make_splits.log",
    benchmark:
        "results/benchmarks/make_splits.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        split=config["split"],
        classes=config["classes"],
        out_dir=lambda wildcards, output: str(Path(output.assignments).parent),
    script:
        "../../scripts/split.py"


rule split:
    input:
        "results/splits/summary.json",
