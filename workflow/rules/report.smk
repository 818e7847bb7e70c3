# What a reader of report.html sees first: the Verdict page (every experiment and
# fold with what to trust of its score), a forest plot of all experiments, and an
# HTML view of every table-like result (Snakemake's report shows HTML and images in
# the page, but offers CSV, JSON and text files only as downloads). The files
# themselves stay in results/ for machines. Logic: scripts/cxrflow/report_views.py.

from cxrflow import layout as cxr_layout
from cxrflow import report_views as cxr_views


rule report_view:
    input:
        "results/{path}",
    output:
        report(
            "results/report/views/{path}.html",
            caption="../report/view.rst",
            category=lambda wildcards: cxr_views.view_place(wildcards.path).category,
            subcategory=lambda wildcards: cxr_views.view_place(
                wildcards.path
            ).subcategory,
            labels=lambda wildcards: dict(cxr_views.view_place(wildcards.path).labels),
        ),
    log:
        "results/logs/report_view/{path}.log",
    benchmark:
        "results/benchmarks/report_view/{path}.tsv"
    wildcard_constraints:
        path=r"[A-Za-z0-9_./-]+\.(csv|json|txt)",
    localrule: True
    params:
        caption=view_caption,
    run:
        cxr_views.write_view(input[0], output[0], f"results/{wildcards.path}", log[0])


rule verdict:
    input:
        records=model_records(),
        preprocess="results/preprocessed/summary.json",
        splits="results/splits/summary.json",
        data_audit="results/audit/data_audit.json",
        seeds=seed_summaries(),
    output:
        html=report(
            "results/report/verdict.html",
            caption="../report/verdict.rst",
            category=cxr_layout.VERDICT_CATEGORY,
            labels={"figure": "verdict table"},
        ),
        forest=report(
            "results/report/forest.png",
            caption="../report/forest.rst",
            category=cxr_layout.VERDICT_CATEGORY,
            labels={"figure": "forest plot"},
        ),
        # The report's first page reads it (workflow/report/workflow.rst).
        run="results/report/run.rst",
    log:
        "results/logs/verdict.log",
    benchmark:
        "results/benchmarks/verdict.tsv"
    localrule: True
    params:
        experiments=config["experiments"],
        positive=config["classes"][0],
    run:
        cxr_views.verdict_rule(
            input, output, params.experiments, params.positive, log[0]
        )
