"""One experiment's summary over its folds: point estimates, spread and confidence intervals.

A mean over folds without its uncertainty hides how little a few dozen test
patients say. The summary carries three kinds of it:

* **spread over folds**: mean, sd (ddof=1), and every fold's value
  (``metrics.summarize_folds``);
* **each fold's own bootstrap CI** (``ci_per_fold``), as in its metrics.json;
* **a pooled CI** (``ci_pooled``, k > 1 folds): in k-fold each patient is tested by
  exactly one fold's model, so the out-of-fold predictions of all folds form one
  test set of every patient, with intervals as a fold's. summary.txt prints it
  beside its own estimate, the pooled score (all folds' predictions together),
  never beside the mean over folds; it is conditional on the k fitted models (it
  covers which test patients were drawn, not how training would vary). ROC AUC
  pooled this way mixes the folds' score scales: read the per-fold AUCs beside it.
* **each fold's test prevalence**, printed beside the metrics it conditions.

No t-interval over folds is given: the folds' models share most of their training
patients, so fold scores are not independent and such an interval is too narrow
(Bengio & Grandvalet, 2004).

External tests (``external``) are summarised the same way except for the pooled CI:
every fold's model sees the same external patients, so there is nothing to pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import confidence_intervals, summarize_folds
from .results_io import read_predictions, write_json
from .metrics import format_value as _fmt
from .nested import nested_summary
from .uncertainty import pool_folds

LOG = logging.getLogger(__name__)

HEAD_KEYS = ("experiment", "backend", "arch", "weights")


def pooled_ci(
    predictions: Sequence[pd.DataFrame], classes: Sequence[str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Patient bootstrap over the out-of-fold predictions of all folds (``pool_folds``)."""
    return confidence_intervals(pool_folds(predictions), classes, settings)


def _over_folds(folds: Sequence[Mapping[str, Any]], shared_test_set: bool = False) -> dict[str, Any]:
    """One fold: its metrics and CI; several: mean/sd/values per metric and each fold's CI
    (``shared_test_set``: every fold tested the same images, as an external test)."""
    if len(folds) == 1:
        return {
            "folds": 1,
            "fold_ids": [folds[0].get("fold")],
            "metrics": folds[0]["metrics"],
            "ci": folds[0].get("ci"),
        }
    return {
        "fold_ids": [f.get("fold") for f in folds],
        **summarize_folds([f["metrics"] for f in folds], shared_test_set),
        "ci_per_fold": [f.get("ci") for f in folds],
    }


def experiment_summary(
    folds: Sequence[Mapping[str, Any]],
    predictions: Sequence[pd.DataFrame],
    classes: Sequence[str],
    bootstrap: Mapping[str, Any],
    external: Sequence[Mapping[str, Any]] = (),
    internal_vs_external: pd.DataFrame | None = None,
    nested: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The experiment's metrics.json: internal test over folds, then external test and nested CV if any."""
    if not folds:
        raise ValueError("no per-fold metrics.json given")
    if len(predictions) != len(folds):
        raise ValueError(f"{len(folds)} fold metrics but {len(predictions)} prediction tables")
    summary: dict[str, Any] = {k: folds[0][k] for k in HEAD_KEYS if k in folds[0]}
    summary.update(_over_folds(folds))
    if len(folds) > 1:
        summary["ci_pooled"] = pooled_ci(predictions, classes, bootstrap)
    if external:
        if len(external) != len(folds):
            raise ValueError(f"{len(folds)} folds but {len(external)} external evaluations")
        summary["external"] = {
            "test_sources": external[0].get("test_sources"),
            **_over_folds(external, shared_test_set=True),
        }
    if internal_vs_external is not None:
        table = internal_vs_external.astype(object).where(internal_vs_external.notna(), None)
        summary["internal_vs_external"] = table.to_dict("records")
    if nested is not None:
        summary["nested"] = dict(nested)
    return summary


def _per_class_lines(summary: Mapping[str, Any], classes: Sequence[str], title: str) -> list[str]:
    """Rows class/metric: estimate (mean ± sd over folds) and the CI, two digits as sklearn's report."""
    lines = [title, ""]
    many = summary["folds"] > 1
    ci = summary.get("ci_pooled") if many else summary.get("ci")
    head = "mean ± sd" if many else "estimate"
    ci_head = "pooled [CI]" if many and ci else "CI"
    lines.append(f"{'class':>14} {'metric':>10} {head:>14} {ci_head:>20}   per fold")
    keys = [
        (c, m, k)
        for c in classes
        for m, k in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("roc_auc", None))
    ]
    keys.append(("all", "accuracy", "accuracy"))
    for cls, metric, report_key in keys:
        if cls == "all":
            name, bounds = "accuracy", (ci or {}).get("accuracy")
        else:
            name = f"per_class/{cls}/{report_key}" if report_key else f"roc_auc_per_class/{cls}"
            bounds = (ci or {}).get("per_class", {}).get(cls, {}).get(metric)
        interval = "" if not bounds else f"[{_fmt(bounds['low'])}, {_fmt(bounds['high'])}]"
        if many and bounds:  # the pooled interval beside its own estimate, never beside the mean
            interval = f"{_fmt(bounds['estimate'])} {interval}"
        if many:
            stat = summary["metrics"][name]
            value = f"{_fmt(stat['mean'])} ± {_fmt(stat['sd'])}"
            per_fold = " ".join(_fmt(v) for v in stat["values"])
        else:
            value = _fmt(_leaf(summary["metrics"], name))
            per_fold = ""
        lines.append(f"{cls:>14} {metric:>10} {value:>14} {interval:>20}   {per_fold}")
    prevalence = _prevalence_line(summary, classes)
    if prevalence:
        lines.append(prevalence)
    return lines


def _prevalence_line(summary: Mapping[str, Any], classes: Sequence[str]) -> str:
    """Each fold's test prevalence of every class (support / n), beside the fold metrics it conditions."""
    if summary["folds"] == 1:
        per_class = summary["metrics"]["per_class"]
        n = sum(per_class[c]["support"] for c in classes)
        return "test prevalence: " + ", ".join(f"{c} {per_class[c]['support'] / n:.2f}" for c in classes)
    supports = {c: summary["metrics"][f"per_class/{c}/support"]["values"] for c in classes}
    totals = np.sum([supports[c] for c in classes], axis=0)
    return "test prevalence per fold: " + "; ".join(
        f"{c} " + " ".join(f"{s / t:.2f}" for s, t in zip(supports[c], totals)) for c in classes
    )


def _leaf(tree: Mapping[str, Any], name: str) -> Any:
    for part in name.split("/"):
        tree = tree[part]
    return tree


def summary_text(summary: Mapping[str, Any], classes: Sequence[str]) -> str:
    """summary.txt: internal test, external test, internal vs external F1, nested-CV choices."""
    folds = summary["folds"]
    level = next(
        (c["level"] for c in [summary.get("ci_pooled"), summary.get("ci"), *(summary.get("ci_per_fold") or [])] if c),
        0.95,
    )
    note = (
        f"{folds} folds: mean ± sd over folds, per-fold values, and the pooled out-of-fold estimate with its "
        f"{level:.0%} CI over split groups; the pooled CI is conditional on the {folds} fitted models "
        "(test-patient uncertainty only, not that of training)"
        if folds > 1
        else f"hold-out test with its {level:.0%} CI over split groups, conditional on the fitted model"
    )
    lines = [f"Experiment {summary.get('experiment', '')} ({note})", ""]
    lines += _per_class_lines(summary, classes, "Internal test (held-out patients of the training sources)")
    if "external" in summary:
        ext = summary["external"]
        lines += [""] + _per_class_lines(
            {**ext, "ci": ext.get("ci")},
            classes,
            f"External test on {', '.join(ext.get('test_sources') or [])} (per-fold CIs in fold<k>/external/)",
        )
    if summary.get("internal_vs_external"):
        table = pd.DataFrame(summary["internal_vs_external"])
        lines += ["", "Internal vs external F1 (accuracy for class 'all'), with each fold's CI", ""]
        for row in table.to_dict("records"):
            lines.append(
                f"fold {row['fold']:>4} {row['class']:>14} {row['metric']:>8}  internal "
                f"{_fmt(row['internal'])} [{_fmt(row['internal_low'])}, {_fmt(row['internal_high'])}]"
                f"  external {_fmt(row['external'])} [{_fmt(row['external_low'])}, "
                f"{_fmt(row['external_high'])}]  difference {_fmt(row['external_minus_internal'])} "
                f"[{_fmt(row.get('difference_low'))}, {_fmt(row.get('difference_high'))}]"
            )
    if "nested" in summary:
        nested = summary["nested"]
        f1 = nested["outer_macro_f1"]
        lines += [
            "",
            f"Nested cross-validation: outer macro F1 {_fmt(f1['mean'])} ± {_fmt(f1['sd'])} over "
            f"{nested['outer_folds']} outer folds (choice by {nested['selection_metric']})",
            "",
        ]
        for choice, outer in zip(nested["choices"], f1["values"]):
            lines.append(
                f"outer fold {choice['fold']}: chose grid point {choice['index']} {choice['params']} "
                f"(inner {_fmt(choice['mean'])}), outer test macro F1 {_fmt(outer)}"
            )
    return "\n".join(lines) + "\n"


def summary_plot(summary: Mapping[str, Any], classes: Sequence[str], path: str | Path) -> None:
    """F1 per class: each fold's estimate with its bootstrap CI (internal, and external beside it when
    there is one), and the mean over folds as a bar."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.8 * len(classes) + 6, 4))
    ax = fig.subplots()
    parts = [("internal", summary, "tab:blue")]
    if "external" in summary:
        parts.append(("external", summary["external"], "tab:orange"))
    width = 0.8 / len(parts)
    for p, (name, part, color) in enumerate(parts):
        many = part["folds"] > 1
        cis = part.get("ci_per_fold") if many else [part.get("ci")]
        values = (
            [part["metrics"][f"per_class/{c}/f1-score"]["values"] for c in classes]
            if many
            else [[part["metrics"]["per_class"][c]["f1-score"]] for c in classes]
        )
        for i, cls in enumerate(classes):
            center = i - 0.4 + width * (p + 0.5)
            xs = center + np.linspace(-width / 4, width / 4, len(values[i])) if len(values[i]) > 1 else [center]
            ax.bar(
                center,
                np.mean(values[i]),
                width=width * 0.9,
                color=color,
                alpha=0.25,
                label=f"{name} (mean over folds)" if i == 0 and many else None,
            )
            for j, (x, v, ci) in enumerate(zip(xs, values[i], cis)):
                bounds = (ci or {}).get("per_class", {}).get(cls, {}).get("f1") or {}
                low, high = bounds.get("low"), bounds.get("high")
                err = None if low is None or high is None else [[max(v - low, 0)], [max(high - v, 0)]]
                ax.errorbar(
                    x,
                    v,
                    yerr=err,
                    fmt="o",
                    color=color,
                    capsize=3,
                    label=f"{name}: fold F1 with {'its' if many else 'the'} bootstrap CI"
                    if i == 0 and j == 0
                    else None,
                )
    ax.set(
        xticks=range(len(classes)),
        xticklabels=list(classes),
        ylim=(0, 1.05),
        ylabel="F1",
        title=f"F1 per class, {summary['folds']} fold(s)",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside: never hides a point
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def summarize_main(
    inputs: Mapping[str, Any], outputs: Mapping[str, str], classes: Sequence[str], bootstrap: Mapping[str, Any]
) -> dict[str, Any]:
    """Rule summarize: one experiment over its folds, to metrics.json, summary.txt and summary.png.

    ``inputs`` are the rule's (common.smk summary_inputs): per-fold metrics and
    predictions, and where the experiment has them external metrics, the
    internal-vs-external table (comparison) and the nested-CV choices.
    """
    classes = list(classes)
    folds = [json.loads(Path(p).read_text()) for p in inputs["metrics"]]
    predictions = [read_predictions(p) for p in inputs["predictions"]]
    external = [json.loads(Path(p).read_text()) for p in inputs.get("external", [])]
    comparison = pd.read_csv(inputs["comparison"], dtype={"fold": str}) if "comparison" in inputs else None
    choices = [json.loads(Path(p).read_text()) for p in inputs.get("choices", [])]
    nested = nested_summary(choices, folds, classes) if choices else None
    summary = experiment_summary(folds, predictions, classes, bootstrap, external, comparison, nested)
    write_json(summary, outputs["metrics"])
    Path(outputs["text"]).write_text(summary_text(summary, classes))
    summary_plot(summary, classes, outputs["plot"])
    LOG.info("summarized %d fold(s) of %s", len(folds), summary.get("experiment"))
    return summary
