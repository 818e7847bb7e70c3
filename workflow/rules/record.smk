# One evaluation record per model (experiment and fold): every part measured on
# it (metrics, baselines, shortcut audits, external test, figures), gathered into
# record.json. The parts are listed once, in cxrflow.record.RECORD_PARTS; the
# trust summary (audit.smk) and the Verdict page (report.smk) read the records.

from cxrflow import record as cxr_record


rule model_record:
    input:
        unpack(record_inputs),
    output:
        "results/experiments/{experiment}/fold{fold}/record.json",
    log:
        "results/logs/model_record/{experiment}/fold{fold}.log",
    benchmark:
        "results/benchmarks/model_record/{experiment}/fold{fold}.tsv"
    localrule: True
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/model_record.py"
