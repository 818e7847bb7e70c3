"""Calibration of predicted probabilities: do 80% predictions come true 80% of the time?

F1 and AUC only rank and cut; a model can rank perfectly and still say 0.99 where
the truth is 0.6. Following Van Calster et al. (BMC Medicine 2019) each class's
probability (one-vs-rest; for two classes the first class only) is summarised by

* the **Brier score** (mean squared error of the probability, lower is better),
* the **calibration intercept** (calibration-in-the-large): ``a`` in
  ``logit P(y) = a + logit(p)``, slope fixed at 1; 0 is ideal, > 0 the model
  under-predicts the class, < 0 it over-predicts,
* the **calibration slope**: ``b`` in ``logit P(y) = a + b * logit(p)``; 1 is ideal,
  < 1 predictions too extreme (overfitting), > 1 too modest,
* a **reliability diagram**: equal-width probability bins with the mean predicted
  probability, the observed frequency and the count of each bin,

each with an interval over the test split groups (``uncertainty``): BCa bootstrap for the
Brier score, intercept, slope and ECE; Clopper-Pearson with a cluster design effect for a
bin's observed frequency (a proportion of the bin's images). The expected calibration error (ECE) is
listed but is no headline: it depends on the binning (Nixon et al. 2019).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit

from .results_io import json_safe
from .uncertainty import proportion_interval, unit_bootstrap, unit_sums

# Probabilities are clipped to [EPS, 1 - EPS] before the logit: a stored 1.0 would be infinite.
EPS = 1e-8
_NEWTON_STEPS = 100


def target_classes(classes: Sequence[str]) -> list[str]:
    """Classes summarised one-vs-rest: the first (positive) class of two, every class of more."""
    return list(classes[:1]) if len(classes) == 2 else list(classes)


def logits(p: np.ndarray) -> np.ndarray:
    """logit of probabilities clipped to [EPS, 1 - EPS]."""
    return logit(np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS))


def calibration_intercept(y: np.ndarray, p: np.ndarray) -> float:
    """Maximum-likelihood ``a`` of ``logit P(y) = a + logit(p)`` (the slope held at 1); NaN without both outcomes.

    The score equation sum(y - expit(a + lp)) = 0 is monotone in ``a``: one root, found by brentq.
    """
    y, lp = np.asarray(y, dtype=float), logits(p)
    if y.min() == y.max():
        return float("nan")
    bound = 50.0 + np.abs(lp).max()
    return float(brentq(lambda a: float(np.sum(y - expit(a + lp))), -bound, bound, xtol=1e-10))


def separated(y: np.ndarray, score: np.ndarray) -> bool:
    """Does one threshold split the outcomes perfectly? Then a logistic slope is infinite (undefined)."""
    y = np.asarray(y, dtype=bool)
    pos, neg = score[y], score[~y]
    return bool(pos.min() > neg.max() or pos.max() < neg.min())


def calibration_slope(y: np.ndarray, p: np.ndarray) -> float:
    """Unpenalised logistic regression of ``y`` on ``logit(p)`` (Newton-Raphson): its slope; NaN without both
    outcomes, with one distinct probability, where the probabilities separate the outcomes, or without convergence.

    Newton's method on two parameters converges in a handful of steps, which a bootstrap of a
    thousand resamples needs (a general solver took 0.1 s per fit on near-separated resamples).
    """
    y, lp = np.asarray(y, dtype=float), logits(p)
    if y.min() == y.max() or np.ptp(lp) == 0 or separated(y, lp):
        return float("nan")
    x = np.column_stack([np.ones_like(lp), lp])

    def loss(theta: np.ndarray) -> float:
        eta = x @ theta
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    theta = np.zeros(2)  # from zero, with step halving: Newton never overshoots into divergence
    for _ in range(_NEWTON_STEPS):
        mu = expit(x @ theta)
        hessian = x.T @ (x * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hessian, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            return float("nan")
        current, scale = loss(theta), 1.0
        while loss(theta + scale * step) > current + 1e-12 and scale > 1e-6:
            scale /= 2
        theta = theta + scale * step
        if np.max(np.abs(scale * step)) < 1e-10:
            return float(theta[1])
    return float("nan")


def bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin of each probability, as sklearn's calibration_curve (strategy uniform) assigns it."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(p, dtype=float))


def reliability(y: np.ndarray, p: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """Per bin: count, mean predicted probability and observed frequency (NaN in empty bins)."""
    ids = bin_index(p, bins)
    count = np.bincount(ids, minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(ids, weights=p, minlength=bins) / count
        observed = np.bincount(ids, weights=np.asarray(y, dtype=float), minlength=bins) / count
    return {"count": count, "predicted": predicted, "observed": observed}


def ece(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    """Expected calibration error: count-weighted mean |observed - predicted| over the bins."""
    r = reliability(y, p, bins)
    used = r["count"] > 0
    return float(np.sum(r["count"][used] * np.abs(r["observed"][used] - r["predicted"][used])) / len(p))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference of probability and outcome: sklearn's ``brier_score_loss`` (the tests
    compare the two), written out because its input checks cost ~1 ms a call and the bootstrap
    calls it for every resample and every left-out group, which made it most of the job's time."""
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2)) if len(y) else float("nan")


def figures(y: np.ndarray, p: np.ndarray, bins: int) -> dict[str, float]:
    """The summary figures of one class as named floats (the bootstrap's statistic)."""
    return {"brier": brier(y, p),
            "intercept": calibration_intercept(y, p), "slope": calibration_slope(y, p),
            "ece": ece(y, p, bins)}  # fmt: skip


def class_calibration(predictions: pd.DataFrame, cls: str, bins: int, bootstrap_settings: Mapping[str, Any]
                      ) -> dict[str, Any]:  # fmt: skip
    """One class's figures, one-vs-rest on its ``prob_<cls>`` column, each with its interval over split groups."""
    y_all = (predictions["true_label"].astype(str) == cls).to_numpy()
    p_all = predictions[f"prob_{cls}"].to_numpy(dtype=float)
    intervals = unit_bootstrap(predictions, lambda rows: figures(y_all[rows], p_all[rows], bins),
                               n_boot=bootstrap_settings["n"], seed=bootstrap_settings["seed"],
                               level=bootstrap_settings["level"])  # fmt: skip
    r = reliability(y_all, p_all, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = bin_index(p_all, bins)
    table = []
    for k in range(bins):
        sums = unit_sums(predictions, {"hit": (ids == k) & y_all, "in": ids == k})
        _, low, high = proportion_interval(sums["hit"], sums["in"], bootstrap_settings["level"])
        table.append({"bin": k, "low_edge": float(edges[k]), "high_edge": float(edges[k + 1]),
                      "count": int(r["count"][k]), "predicted": r["predicted"][k], "observed": r["observed"][k],
                      "observed_low": low, "observed_high": high})  # fmt: skip
    notes = []
    if y_all.min() == y_all.max():
        notes.append(f"only {'positives' if y_all.all() else 'negatives'} of {cls}: intercept and slope undefined")
    elif intervals["slope"]["estimate"] is None:
        notes.append("the probabilities separate the outcomes perfectly (or are all equal): the slope is undefined")
    return json_safe({
        "class": cls, "n": int(len(y_all)), "positives": int(y_all.sum()),
        **{name: intervals[name] for name in ("brier", "intercept", "slope", "ece")},
        "reliability": table, "notes": notes,
    })  # fmt: skip


def calibration(predictions: pd.DataFrame, classes: Sequence[str], bins: int,
                bootstrap_settings: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Calibration of every target class (:func:`target_classes`) on one prediction table."""
    return {cls: class_calibration(predictions, cls, bins, bootstrap_settings) for cls in target_classes(classes)}


def reliability_plot(sets: Mapping[str, Mapping[str, Any]], path: str | Path) -> Any:
    """Reliability diagram of each (set, class): observed frequency against mean predicted probability,
    with bootstrap bars, the diagonal, and the count of each bin written above its point. Returns the Figure."""
    from matplotlib.figure import Figure

    panels = [(name, cls, fig) for name, per_class in sets.items() for cls, fig in per_class.items()]
    figure = Figure(figsize=(5 * len(panels), 5))
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    for ax, (name, cls, cal) in zip(axes, panels):
        rows = [r for r in cal["reliability"] if r["count"]]
        x = [r["predicted"] for r in rows]
        y = [r["observed"] for r in rows]
        low = [y_ - (r["observed_low"] if r["observed_low"] is not None else y_) for y_, r in zip(y, rows)]
        high = [(r["observed_high"] if r["observed_high"] is not None else y_) - y_ for y_, r in zip(y, rows)]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3)
        for x_, y_, r in zip(x, y, rows):
            ax.annotate(f"n={r['count']}", (x_, y_), textcoords="offset points", xytext=(0, 6), ha="center",
                        fontsize=7)  # fmt: skip
        slope = cal["slope"]["estimate"]
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.05), xlabel=f"predicted probability of {cls}",
               ylabel="observed frequency",
               title=f"{name}: Brier {cal['brier']['estimate']:.3f}, intercept "
                     f"{_num(cal['intercept']['estimate'])}, slope {_num(slope)}")  # fmt: skip
        ax.title.set_fontsize(9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return figure


def _num(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"
