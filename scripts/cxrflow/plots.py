"""Figures of one evaluated fold. matplotlib's object API (Figure + Agg canvas): no pyplot state, no display."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_curve

from .metrics import format_value


def history_plot(history: pd.DataFrame, path: str | Path) -> None:
    """Accuracy and loss per epoch, train and (when a validation split existed) val."""
    fig = Figure(figsize=(10, 4))
    marker = "o" if len(history) < 20 else None
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss")):
        for column, label in ((metric, "train"), (f"val_{metric}", "val")):
            if column in history.columns:
                ax.plot(history["epoch"], history[column], marker=marker, label=label)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def confusion_matrix_plot(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path) -> None:
    """Counts, rows true and columns predicted, in class order."""
    matrix = np.asarray(matrix)
    n = len(classes)
    fig = Figure(figsize=(1.2 * n + 3, 1.2 * n + 2))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set(
        xticks=range(n),
        yticks=range(n),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def roc_plot(predictions: pd.DataFrame, classes: Sequence[str], metrics: dict, path: str | Path) -> None:
    """ROC of the positive class (classes[0]) when binary, one-vs-rest per class otherwise."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    shown = classes[:1] if len(classes) == 2 else classes
    for name in shown:
        positive = predictions["true_label"] == name
        auc = metrics["roc_auc_per_class"].get(name)
        if auc is None:  # one class only among the true labels: no curve exists
            ax.plot([], [], label=f"{name}: undefined (no positives or no negatives)")
            continue
        fpr, tpr, _ = roc_curve(positive, predictions[f"prob_{name}"])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def forest_plot(trust: pd.DataFrame, path: str | Path, seeds: Sequence[Mapping[str, Any]] = ()) -> None:
    """Every experiment's F1 with its interval, one row per experiment and fold, its baselines beside it.

    Rows come from trust_summary.csv: the model's F1 of the first class with its bootstrap
    CI (a bar), the thumbnail and border-ring baselines and, where it ran, the border-only
    control and the external test as markers on the same row, so comparing experiments
    (and seeing which ones beat nothing but a trivial model) is a glance down one column.
    Each experiment with `seeds` (its seeds.json in ``seeds``) adds a row below: the mean F1 over
    seeds with +-1 sd (thick) and the range from the lowest to the highest seed (thin).
    """
    rows = trust.reset_index(drop=True)
    fig = Figure(figsize=(9, 1.8 + 0.5 * max(len(rows), 1)))
    ax = fig.subplots()
    if rows.empty:
        ax.text(0.5, 0.5, "no experiment configured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        fig.savefig(path, dpi=100)
        return
    y = np.arange(len(rows))[::-1] + len(seeds)
    f1 = rows["model_f1"].astype(float).to_numpy()
    low = rows["model_f1_low"].astype(float).fillna(rows["model_f1"].astype(float)).to_numpy()
    high = rows["model_f1_high"].astype(float).fillna(rows["model_f1"].astype(float)).to_numpy()
    ax.errorbar(f1, y, xerr=[np.maximum(f1 - low, 0), np.maximum(high - f1, 0)], fmt="o", color="black",
                capsize=3, label="model F1 with its CI", zorder=3)  # fmt: skip
    markers = [("thumbnail_f1", "s", "tab:blue", "thumbnail baseline"),
               ("border_ring_f1", "^", "tab:orange", "border-ring baseline"),
               ("border_only_f1", "v", "tab:red", "border-only control"),
               ("external_f1", "D", "tab:green", "external test")]  # fmt: skip
    for column, marker, color, label in markers:
        if column in rows and rows[column].notna().any():
            ax.scatter(rows[column].astype(float), y, marker=marker, color=color, label=label, zorder=2)
    labels = [f"{e}, fold {k}" for e, k in zip(rows["experiment"], rows["fold"])]
    for row, summary in enumerate(seeds):
        spread = summary["f1"]
        sd = spread["sd"] or 0.0
        ax.plot([spread["min"], spread["max"]], [row, row], color="tab:purple", linewidth=1, zorder=2)
        ax.plot([spread["mean"] - sd, spread["mean"] + sd], [row, row], color="tab:purple", linewidth=4, zorder=2,
                label="mean over seeds +- sd (thin: range)" if row == 0 else None)  # fmt: skip
        ax.scatter([spread["mean"]], [row], marker="D", color="tab:purple", zorder=3)
    y = np.concatenate([y, np.arange(len(seeds))[::-1]])
    labels += [f"{s['experiment']}: {s['f1']['n']} seeds" for s in reversed(seeds)]
    ax.set(
        yticks=y,
        yticklabels=labels,
        xlim=(-0.03, 1.03),
        ylim=(-0.7, len(rows) + len(seeds) - 0.3),
        xlabel=f"F1 of {rows['class'].iloc[0]}",
        title="F1 per experiment and fold, beside its baselines",
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: never hides a point
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def roc_plot_with_ci(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    metrics: Mapping[str, Any],
    ci: Mapping[str, Any],
    path: str | Path,
) -> Any:
    """plots.roc_plot, with each curve's legend reading AUC [low, high] (the bootstrap CI).

    Binary: the positive class's curve; more classes: one one-vs-rest curve per class.
    Returns the matplotlib Figure, so a test can count the curves.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    shown = classes[:1] if len(classes) == 2 else classes
    for name in shown:
        auc = metrics["roc_auc_per_class"].get(name)
        if auc is None:  # one class only among the true labels: no curve exists
            ax.plot([], [], label=f"{name}: undefined (no positives or no negatives)")
            continue
        bounds = ci["per_class"][name]["roc_auc"]
        fpr, tpr, _ = roc_curve(predictions["true_label"] == name, predictions[f"prob_{name}"])
        low, high = format_value(bounds["low"], 3), format_value(bounds["high"], 3)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f} [{low}, {high}])")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC ({ci['level']:.0%} CI over split groups)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig
