"""Entry points of the rules in workflow/rules/evaluation.smk: covariates, calibration, the frozen
operating point, subgroups, confounders and the spread over seeds.

Each reads predictions.csv (and val_predictions.csv, the covariate table) and writes one
JSON beside metrics.json, so every figure can be recomputed from the files next to it.

Each entry point imports its own stage module: a rule job is a fresh Python process, and
the covariates job would otherwise pay for scikit-learn and SciPy (about 1 s of CPU) that
only the other stages use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import covariates as cov
from .rule_log import open_log
from .manifest import read_manifest
from .results_io import json_safe, read_predictions, write_json


def covariates_main(manifest_csv: str, output: str, age_edges: Sequence[float], log_path: str) -> pd.DataFrame:
    """Rule covariates: the normalised age, sex, view and age band of every ok image (covariates.csv)."""
    log = open_log(log_path)
    table = cov.covariate_table(read_manifest(manifest_csv), age_edges)
    table.to_csv(output, index=False)
    log.info("covariates of %d images: %s", len(table), json.dumps(cov.summary(table)))
    return table


def prediction_sets(test_csv: str, external_csv: str | None, covariates_csv: str) -> dict[str, pd.DataFrame]:
    """{"test": ..., "external <source>": ... per held-out source}, each with its covariates attached."""
    table = cov.read_covariates(covariates_csv)
    sets = {"test": cov.attach(read_predictions(test_csv), table)}
    if external_csv:
        external = cov.attach(read_predictions(external_csv), table)
        for source, part in external.groupby("source", sort=True):
            sets[f"external {source}"] = part.reset_index(drop=True)
    return sets


def calibration_main(test_csv: str, external_csv: str | None, covariates_csv: str, outputs: Mapping[str, str],
                     classes: Sequence[str], bins: int, bootstrap_settings: Mapping[str, Any], log_path: str
                     ) -> dict[str, Any]:  # fmt: skip
    """Rule calibration: calibration.json (per set and class) and the reliability diagram."""
    from . import calibration as cal

    log = open_log(log_path)
    sets = prediction_sets(test_csv, external_csv, covariates_csv)
    result = {name: cal.calibration(table, classes, bins, bootstrap_settings) for name, table in sets.items()}
    out = {"bins": bins, "bootstrap": dict(bootstrap_settings), "sets": result}
    write_json(json_safe(out), outputs["json"])
    cal.reliability_plot(result, outputs["plot"])
    for name, per_class in result.items():
        for cls, c in per_class.items():
            log.info("%s %s: Brier %s intercept %s slope %s", name, cls, c["brier"]["estimate"],
                     c["intercept"]["estimate"], c["slope"]["estimate"])  # fmt: skip
    return out


def operating_point_main(val_csv: str, test_csv: str, external_csv: str | None, covariates_csv: str, output: str,
                         classes: Sequence[str], settings: Mapping[str, Any], bootstrap_settings: Mapping[str, Any],
                         log_path: str) -> dict[str, Any]:  # fmt: skip
    """Rule operating_point: the threshold chosen on val_predictions.csv, applied to every test set."""
    from . import operating_point as op

    log = open_log(log_path)
    sets = prediction_sets(test_csv, external_csv, covariates_csv)
    result = op.operating_point(read_predictions(val_csv), sets, classes, settings, bootstrap_settings)
    write_json(result, output)
    for cls, part in result["classes"].items():
        log.info("%s: threshold %.4f (%s)", cls, part["threshold"]["threshold"], part["threshold"]["description"])
    return result


def subgroups_main(test_csv: str, external_csv: str | None, covariates_csv: str, operating_point_json: str,
                   outputs: Mapping[str, str], classes: Sequence[str], settings: Mapping[str, Any],
                   bootstrap_settings: Mapping[str, Any], log_path: str) -> pd.DataFrame:  # fmt: skip
    """Rule subgroups: subgroups.json (every group's figures), subgroups.csv (one row a group) and the plot."""
    from . import subgroups as sub

    log = open_log(log_path)
    sets = prediction_sets(test_csv, external_csv, covariates_csv)
    frozen = json.loads(Path(operating_point_json).read_text())["classes"][classes[0]]["threshold"]
    table, detail = sub.subgroup_table(sets, classes, frozen["threshold"], settings, bootstrap_settings)
    table.to_csv(outputs["csv"], index=False, float_format="%.4f")
    covariate_counts = {name: cov.counts(part) for name, part in sets.items()}
    write_json(json_safe({"positive": classes[0], "threshold": frozen, "min_subgroup": settings["min_subgroup"],
                          "age_edges": list(settings["age_edges"]), "counts": covariate_counts,
                          "table": table.to_dict("records"), "groups": detail}), outputs["json"])  # fmt: skip
    sub.subgroup_plot(table, outputs["plot"], classes[0])
    log.info("%d subgroups (%d small):\n%s", len(table), int(table["small"].sum()),
             table[["set", "covariate", "group", "images", "f1", "f1_low", "f1_high"]].to_string(index=False),
             )  # fmt: skip
    return table


def confounders_main(covariates_csv: str, assignments_csv: str, output: str, settings: Mapping[str, Any],
                     log_path: str) -> dict[str, Any]:  # fmt: skip
    """Rule confounders: confounders.json of the whole selection, patients grouped as the split groups them."""
    from . import confounders as conf

    log = open_log(log_path)
    table = cov.read_covariates(covariates_csv)
    assignments = pd.read_csv(assignments_csv, dtype=str, keep_default_na=False)
    groups = table["image_id"].map(dict(zip(assignments["image_id"], assignments["group"])))
    # An ok image outside the shared split (a held-out source) is its own patient's group.
    groups = groups.fillna(table["source"] + "/" + table["patient_id"])
    result = conf.confounders(table, groups, settings)
    write_json(result, output)
    log.info("%s", result["sentence"])
    return result


SEED_COLUMNS = ("experiment", "seed", "fold", "f1", "f1_low", "f1_high", "macro_f1")


def seed_table(runs: Sequence[tuple[str, int, int]], metrics_paths: Sequence[str], positive: str) -> pd.DataFrame:
    """One row per (seed run, fold): the positive class's F1 with its interval and the macro F1, from metrics.json."""
    rows = []
    for (experiment, seed, fold), path in zip(runs, metrics_paths, strict=True):
        m = json.loads(Path(path).read_text())
        ci = m.get("ci", {}).get("per_class", {}).get(positive, {}).get("f1", {})
        rows.append({"experiment": experiment, "seed": seed, "fold": fold,
                     "f1": m["metrics"]["per_class"][positive]["f1-score"], "f1_low": ci.get("low"),
                     "f1_high": ci.get("high"), "macro_f1": m["metrics"]["macro avg"]["f1-score"]})  # fmt: skip
    return pd.DataFrame(rows, columns=list(SEED_COLUMNS))


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample sd (ddof=1; None for one value), min, max and range."""
    x = np.asarray(values, dtype=float)
    return {"n": int(len(x)), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if len(x) > 1 else None,
            "min": float(x.min()), "max": float(x.max()), "range": float(x.max() - x.min())}  # fmt: skip


def seeds_main(parent: str, runs: Sequence[tuple[str, int, int]], metrics_paths: Sequence[str],
               outputs: Mapping[str, str], positive: str, log_path: str) -> dict[str, Any]:  # fmt: skip
    """Rule seed_summary: each seed's F1 (per fold and its fold mean) with mean, sd and range over seeds,
    seeds.json and a forest plot of the seeds."""
    log = open_log(log_path)
    table = seed_table(runs, metrics_paths, positive)
    per_seed = table.groupby("seed", sort=True).agg(f1=("f1", "mean"), macro_f1=("macro_f1", "mean")).reset_index()
    result = json_safe({"experiment": parent, "positive": positive, "runs": table.to_dict("records"),
                        "per_seed": per_seed.to_dict("records"), "f1": spread(per_seed["f1"]),
                        "macro_f1": spread(per_seed["macro_f1"])})  # fmt: skip
    write_json(result, outputs["json"])
    seeds_plot(table, result, outputs["plot"])
    log.info("%s over %d seeds: F1 of %s mean %.3f sd %s range %.3f", parent, len(per_seed), positive,
             result["f1"]["mean"], result["f1"]["sd"], result["f1"]["range"])  # fmt: skip
    return result


def seeds_plot(table: pd.DataFrame, result: Mapping[str, Any], path: str | Path) -> Any:
    """Forest plot: each seed run's F1 with its interval, and the mean over seeds with +-1 sd."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 0.35 * len(table) + 1.6))
    ax = figure.subplots()
    ys = np.arange(len(table), 0, -1)
    for y_, row in zip(ys, table.itertuples(index=False)):
        lo = row.f1 if row.f1_low is None or pd.isna(row.f1_low) else row.f1_low
        hi = row.f1 if row.f1_high is None or pd.isna(row.f1_high) else row.f1_high
        ax.plot([lo, hi], [y_, y_], color="black", linewidth=1)
        ax.plot([row.f1], [y_], marker="o", color="black")
    f1 = result["f1"]
    sd = f1["sd"] or 0.0
    ax.plot([f1["mean"] - sd, f1["mean"] + sd], [0, 0], color="tab:blue", linewidth=3)
    ax.plot([f1["mean"]], [0], marker="D", color="tab:blue")
    ax.set_yticks([*ys, 0], [f"seed {r.seed} fold {r.fold}" for r in table.itertuples(index=False)]
                  + [f"mean +- sd ({f1['n']} seeds)"])  # fmt: skip
    ax.set(xlim=(-0.02, 1.02), xlabel=f"F1 of {result['positive']}",
           title=f"{result['experiment']}: spread over seeds (range {f1['range']:.2f})")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return figure
