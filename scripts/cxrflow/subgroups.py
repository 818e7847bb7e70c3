"""Every test figure per subgroup (source, sex, age band, view), with n and intervals.

An aggregate score hides subgroups where the model fails (hidden stratification,
Oakden-Rayner et al. 2020). Each test set is cut by each covariate; every group is
listed, with its images and patients, and groups under ``evaluation.min_subgroup``
images are marked ``small`` rather than dropped: a reader sees that the group exists
and that its interval is too wide to say much. The unknown group (no age in the
metadata, say) is a group like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .covariates import COVARIATES, band_order, group_values
from .metrics import compute_metrics, confidence_intervals
from .results_io import json_safe
from .operating_point import outcomes, threshold_intervals
from .uncertainty import unit_bootstrap

TABLE_COLUMNS = ("set", "covariate", "group", "images", "patients", "positives", "small", "accuracy", "accuracy_low",
                 "accuracy_high", "f1", "f1_low", "f1_high", "roc_auc", "roc_auc_low", "roc_auc_high", "sensitivity",
                 "sensitivity_low", "sensitivity_high", "specificity", "specificity_low", "specificity_high", "brier",
                 "brier_low", "brier_high")  # fmt: skip


def group_figures(predictions: pd.DataFrame, classes: Sequence[str], threshold: float,
                  bootstrap_settings: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One group's figures: accuracy, per-class F1/precision/recall/AUC (``metrics.confidence_intervals``) and,
    for the positive class at the frozen threshold, sensitivity, specificity and Brier score, all with intervals."""
    positive = classes[0]
    y, p = outcomes(predictions, positive)
    ci = confidence_intervals(predictions, classes, bootstrap_settings)
    at = threshold_intervals(predictions, y, p, threshold, bootstrap_settings["level"])
    at.update(
        unit_bootstrap(
            predictions,
            lambda rows: {"brier": float(np.mean((p[rows] - y[rows]) ** 2))},
            n_boot=bootstrap_settings["n"],
            seed=bootstrap_settings["seed"],
            level=bootstrap_settings["level"],
        )
    )  # fmt: skip (sklearn's Brier score)
    return json_safe({"ci": ci, "at_threshold": at, "positive": positive, "threshold": threshold})


def _row(name: str, covariate: str, group: str, table: pd.DataFrame, figures: Mapping[str, Any], min_n: int,
         positive: str) -> dict[str, Any]:  # fmt: skip
    ci, at = figures["ci"], figures["at_threshold"]
    row: dict[str, Any] = {"set": name, "covariate": covariate, "group": group, "images": int(len(table)),
                           "patients": int(table["patient_id"].astype(str).nunique()),
                           "positives": int((table["true_label"].astype(str) == positive).sum()),
                           "small": bool(len(table) < min_n)}  # fmt: skip
    parts = {"accuracy": ci["accuracy"], "f1": ci["per_class"][positive]["f1"],
             "roc_auc": ci["per_class"][positive]["roc_auc"],
             **{m: at[m] for m in ("sensitivity", "specificity", "brier")}}  # fmt: skip
    for metric, interval in parts.items():
        row.update({metric: interval["estimate"], f"{metric}_low": interval["low"], f"{metric}_high": interval["high"]})
    return row


def ordered_groups(values: pd.Series, covariate: str, age_edges: Sequence[float]) -> list[str]:
    """The groups present, age bands in age order, others alphabetically, unknown last."""
    present = set(values)
    if covariate == "age_band":
        return [g for g in band_order(age_edges) if g in present]
    return sorted(present - {"unknown"}) + (["unknown"] if "unknown" in present else [])


def subgroup_table(sets: Mapping[str, pd.DataFrame], classes: Sequence[str], threshold: float,
                   settings: Mapping[str, Any], bootstrap_settings: Mapping[str, Any]
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:  # fmt: skip
    """(the flat table of every set x covariate x group, the full figures per group for the JSON).

    ``sets`` maps a set's name to its predictions with covariates attached
    (``covariates.attach``); ``threshold`` is the positive class's frozen threshold.
    """
    rows, detail = [], {}
    for name, table in sets.items():
        detail[name] = {}
        for covariate in COVARIATES:
            values = group_values(table, covariate)
            detail[name][covariate] = {}
            for group in ordered_groups(values, covariate, settings["age_edges"]):
                part = table[values == group].reset_index(drop=True)
                figures = group_figures(part, classes, threshold, bootstrap_settings)
                rows.append(_row(name, covariate, group, part, figures, settings["min_subgroup"], classes[0]))
                confusion = compute_metrics(part, classes)["confusion_matrix"]
                detail[name][covariate][group] = {"images": int(len(part)), "small": rows[-1]["small"],
                                                  "confusion_matrix": confusion, **figures}  # fmt: skip
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)), detail


def subgroup_plot(table: pd.DataFrame, path: str | Path, positive: str) -> Any:
    """F1 of the positive class per group with its interval, one row per (set, covariate, group);
    small groups drawn hollow and labelled. Returns the Figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 0.3 * len(table) + 1.2))
    ax = figure.subplots()
    ys = np.arange(len(table))[::-1]
    for y_, row in zip(ys, table.itertuples(index=False)):
        est = row.f1 if row.f1 is not None and np.isfinite(row.f1) else np.nan
        lo = row.f1_low if row.f1_low is not None and np.isfinite(row.f1_low) else est
        hi = row.f1_high if row.f1_high is not None and np.isfinite(row.f1_high) else est
        ax.plot([lo, hi], [y_, y_], color="black", linewidth=1)
        ax.plot([est], [y_], marker="o", color="black", markerfacecolor="white" if row.small else "black")
    labels = [f"{r.set} {r.covariate}={r.group} (n={r.images}{', small' if r.small else ''})"
              for r in table.itertuples(index=False)]  # fmt: skip
    ax.set_yticks(ys, labels, fontsize=7)
    ax.set(xlim=(-0.02, 1.02), xlabel=f"F1 of {positive} (interval over split groups)", title="Subgroups")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return figure
