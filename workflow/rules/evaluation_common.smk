# Input functions of evaluation.smk and the targets they add to the default run.


def external_predictions(wildcards):
    """The fold's external predictions where the experiment has test_sources."""
    if not is_external(wildcards.experiment):
        return {}
    return {
        "external": str(
            experiment_dir(wildcards.experiment)
            / f"fold{wildcards.fold}"
            / "external"
            / "predictions.csv"
        )
    }


def seed_runs(wildcards):
    """(run, seed, fold) of every seed run of the parent experiment, in seed order."""
    return [
        (run, seed, k)
        for run, seed in SEED_GROUPS[wildcards.experiment]
        for k in experiment_fold_ids(run)
    ]


def seed_metrics(wildcards):
    return [
        str(experiment_dir(run) / f"fold{k}" / "metrics.json")
        for run, _, k in seed_runs(wildcards)
    ]


def seed_summaries():
    """Each experiment with `seeds`: its seed summary (the models' own files come with their records)."""
    return [str(experiment_dir(p) / "seeds.json") for p in SEED_GROUPS]


def evaluation_views():
    """The evaluation's table-like results, relative to results/ (each gets an HTML view in the report)."""
    files = ["audit/confounders.json"]
    for e in config["experiments"]:
        for k in experiment_fold_ids(e):
            fold = f"experiments/{e}/fold{k}"
            files += [
                f"{fold}/calibration.json",
                f"{fold}/operating_point.json",
                f"{fold}/subgroups.csv",
            ]
    files += [f"experiments/{p}/seeds.json" for p in SEED_GROUPS]
    return files
