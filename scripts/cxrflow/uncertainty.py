"""The statistics core: one definition of each test metric, and its confidence interval.

Every number a report states with an interval comes from here (``metric_intervals``
for one model, ``paired_bootstrap`` for two on the same units), so a metric's
estimate and its interval (and a resample of it) share one definition:

* **Unit.** Images of one split group (a patient, or near-duplicate copies merged
  with it) are correlated, so the unit of resampling and of the design effect is
  the group: the ``group`` column of predictions.csv, else the patient id, else the
  image itself (``resampling_units``; the one place that maps a missing id).
* **Metrics** (``metrics_from_confusion``): accuracy, per-class precision, recall
  (sensitivity) and F1 = 2tp / (2tp + fp + fn), NaN where undefined; macro F1 is the
  mean of every class's F1 and is undefined (NaN, reported as refused) when a class
  has no image among the true labels. ROC AUC is one-vs-rest Mann-Whitney, ties 1/2.
* **Intervals, chosen per quantity by simulation** (``bench/interval_coverage.py``,
  docs/trust.md; the percentile bootstrap covered 0.74-0.88 on 20-25 patients):

  - proportions (accuracy, precision, recall): Clopper-Pearson on the effective
    counts ``k / deff, n / deff``, with the cluster design effect ``deff`` = the
    cluster-robust variance of the ratio over the binomial one, clipped to
    [1, sum m_i^2 / sum m_i] (m_i images per unit; the upper end, ICC = 1, is used
    when the estimate is 0 or 1, where the variance says nothing);
  - F1 of a class: F1 = 2J / (1 + J) with J = tp / (tp + fp + fn) a proportion of the
    images that are true or predicted of the class, so J gets the proportion interval
    and both ends are mapped to F1;
  - ROC AUC: Newcombe's (2006) score interval for the Mann-Whitney AUC, on the
    class's unit counts (images of one unit counted as one: ICC = 1, conservative);
  - macro F1: the mean of the classes' F1 intervals, each at level 1 - (1 - level)/K
    (Bonferroni: covers whenever they all do; the BCa bootstrap covered 0.82 at 10
    patients);
  - every difference of two models on the same units: BCa bootstrap (Efron 1987)
    over units, the same resamples for both models (paired), with the jackknife over
    units for the acceleration. Resamples where the difference is undefined are
    dropped, counted in ``n_used``, and a warning is logged when fewer than asked are
    defined;
  - a difference of estimates on different units (external minus internal): MOVER
    from the two intervals (``difference_of_independent``);
  - any other statistic of the prediction rows (a Brier score, a logistic
    recalibration's intercept or slope, a sensitivity read off the ROC):
    ``unit_bootstrap``, BCa over units with the leave-one-unit-out jackknife; a
    proportion of images per unit (sensitivity at a threshold, a reliability bin's
    frequency) uses ``proportion_interval`` on ``unit_sums``.

Resampling with replacement is done exactly with per-unit weights (a unit drawn
twice weighs 2), so every resample is the same weighted data duplication would give.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.sparse import coo_matrix
from scipy.stats import beta, norm

LOG = logging.getLogger(__name__)

UNIT_COLUMN = "group"


def resampling_units(predictions: pd.DataFrame) -> pd.Series:
    """Each prediction's resampling unit: its split ``group``, else ``patient_id``, else ``image:<image_id>``.

    An image without a group or patient id is its own unit (the source cannot say
    which images share a patient), as in the split's groups.
    """
    empty = pd.Series("", index=predictions.index)
    unit = empty
    for col in ("patient_id", UNIT_COLUMN):  # later wins: the group, where given, decides
        if col in predictions.columns:
            value = predictions[col].fillna("").astype(str).str.strip()
            unit = value.where(value != "", unit)
    if (unit == "").any():
        if "image_id" not in predictions.columns:
            raise ValueError("predictions have rows without group or patient_id, and no image_id to stand in")
        unit = unit.where(unit != "", "image:" + predictions["image_id"].astype(str))
    return unit


def check_predictions(predictions: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Validate the predictions.csv contract; return the probability columns in class order."""
    prob_cols = [f"prob_{c}" for c in classes]
    missing = {"true_label", "predicted_label", *prob_cols} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}")
    if not {"group", "patient_id", "image_id"} & set(predictions.columns):
        raise ValueError("predictions need a group, patient_id or image_id column to resample")
    if predictions.empty:
        raise ValueError("predictions are empty")
    for col in ("true_label", "predicted_label"):
        unknown = set(predictions[col].astype(str)) - set(classes)
        if unknown:
            raise ValueError(f"{col} has labels outside classes {list(classes)}: {sorted(unknown)}")
    if not np.isfinite(predictions[prob_cols].to_numpy(dtype=float)).all():
        raise ValueError("probability columns contain NaN or infinite values")
    return prob_cols


def pool_folds(predictions: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The out-of-fold predictions of all folds as one test set, units keyed ``fold:group``.

    Equal ids from two folds stay apart, and an image without a group or patient id
    is its own unit (``resampling_units``).
    """
    frames = []
    for k, table in enumerate(predictions):
        unit = f"{k}:" + resampling_units(table)
        frames.append(table.assign(patient_id=unit, group=unit, image_id=f"{k}:" + table["image_id"].astype(str)))
    return pd.concat(frames, ignore_index=True)


def unit_sums(predictions: pd.DataFrame, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-unit sums of per-image values (counts such as "positive and predicted positive"), units in sorted
    order: the per-unit ``successes`` and ``trials`` that ``proportion_interval`` takes."""
    _, unit_of_image = np.unique(resampling_units(predictions).to_numpy(), return_inverse=True)
    return {name: np.bincount(unit_of_image, weights=np.asarray(v, dtype=float)) for name, v in values.items()}


def unit_bootstrap(
    predictions: pd.DataFrame,
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    *,
    n_boot: int,
    seed: int,
    level: float,
) -> dict[str, dict[str, Any]]:
    """``{name: {estimate, low, high, n_used, method}}``: BCa interval over units of every value ``statistic`` returns.

    ``statistic`` takes row indices into ``predictions`` (all rows for the estimate; a unit
    drawn twice brings its rows twice) and returns named floats, NaN where a resample leaves
    one undefined (not counted in ``n_used``). Resamples are ``draws`` of the units
    (``resampling_units``), the acceleration the jackknife leaving out one unit at a time.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    units, unit_of_row = np.unique(resampling_units(predictions).to_numpy(), return_inverse=True)
    rows = np.arange(len(unit_of_row))
    estimate = statistic(rows)
    boot = {name: np.full(n_boot, np.nan) for name in estimate}
    for b, counts in enumerate(draws(len(units), n_boot, seed)):
        resampled = statistic(np.repeat(rows, counts[unit_of_row]))
        for name in boot:
            boot[name][b] = float(resampled.get(name, np.nan))
    jack = {name: np.full(len(units), np.nan) for name in estimate}
    if len(units) > 1:
        for u in range(len(units)):
            left = statistic(rows[unit_of_row != u])
            for name in jack:
                jack[name][u] = float(left.get(name, np.nan))
    return {name: bca_interval(boot[name], float(estimate[name]), jack[name], level) for name in estimate}


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The one definition of each count metric, from (..., K, K) confusion counts (rows true); NaN where undefined.

    Per class: precision, recall, F1 = 2tp/(2tp+fp+fn); accuracy; macro F1 = mean of
    all classes' F1, undefined when a class has no true image (a class absent from
    the test set has no F1 to average, and counting it 0 or leaving it out both
    misstate the model).
    """
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted = cm.sum(axis=-2)
    actual = cm.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
        denom = predicted + actual
        f1 = np.where(denom > 0, 2 * tp / denom, np.nan)
        total = cm.sum(axis=(-2, -1))
        accuracy = np.where(total > 0, tp.sum(axis=-1) / total, np.nan)
    macro = np.where((actual > 0).all(axis=-1), np.nanmean(np.where(denom > 0, f1, 0.0), axis=-1), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy, "macro_f1": macro}


def absent_classes(predictions: pd.DataFrame, classes: Sequence[str]) -> list[str]:
    """Classes with no image among the true labels: macro F1 (and a verdict on it) is refused then."""
    present = set(predictions["true_label"].astype(str))
    return [c for c in classes if c not in present]


def unit_confusion(
    predictions: pd.DataFrame, classes: Sequence[str], units: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(units, per-unit confusion counts [U, K, K]); ``units`` fixes the unit order (paired tables)."""
    index = {c: k for k, c in enumerate(classes)}
    y = predictions["true_label"].astype(str).map(index).to_numpy()
    p = predictions["predicted_label"].astype(str).map(index).to_numpy()
    unit = resampling_units(predictions).to_numpy()
    if units is None:
        units = np.unique(unit)
    pos = np.searchsorted(units, unit)
    if (pos >= len(units)).any() or (units[np.minimum(pos, len(units) - 1)] != unit).any():
        raise ValueError("predictions hold units outside the given ones")
    per_unit = np.zeros((len(units), len(classes), len(classes)))
    np.add.at(per_unit, (pos, y, p), 1)
    return units, per_unit


def draws(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) multinomial counts: how often each unit is drawn in each resample (shared = paired)."""
    return np.random.default_rng(seed).multinomial(n_units, np.full(n_units, 1 / n_units), size=n_boot)


def bootstrap_auc(
    positive: np.ndarray, score: np.ndarray, unit_of_image: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """One-vs-rest ROC AUC for every row of unit ``weights`` at once (Mann-Whitney, ties count 1/2).

    Equals sklearn's ``roc_auc_score(..., sample_weight=w)``; NaN where a row has
    no positive or no negative image.
    """
    levels, level_of_image = np.unique(score, return_inverse=True)
    shape = (weights.shape[1], len(levels))
    pos = coo_matrix((positive.astype(float), (unit_of_image, level_of_image)), shape=shape).tocsr()
    neg = coo_matrix(((~positive).astype(float), (unit_of_image, level_of_image)), shape=shape).tocsr()
    w_pos = (pos.T @ weights.T).T  # (rows, levels): weight of positives at each score level
    w_neg = (neg.T @ weights.T).T
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (w_pos * (neg_below + 0.5 * w_neg)).sum(axis=1) / pairs
    return np.where(pairs > 0, auc, np.nan)


def proportion_interval(successes: np.ndarray, trials: np.ndarray, level: float) -> tuple[float, float, float]:
    """(estimate, low, high) of sum(successes)/sum(trials) over units: Clopper-Pearson with a design effect.

    ``successes``/``trials`` are per-unit counts. The design effect is the
    cluster-robust variance of the ratio over the binomial variance, clipped to
    [1, sum m^2 / sum m] (m = trials per unit); its upper end when the estimate is
    0 or 1 or there is one unit. NaN when there is no trial.
    """
    s, t = np.asarray(successes, float), np.asarray(trials, float)
    keep = t > 0
    s, t = s[keep], t[keep]
    n = t.sum()
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    k = s.sum()
    p = k / n
    cap = float((t**2).sum() / n)
    if 0 < p < 1 and len(t) > 1:
        robust = len(t) / (len(t) - 1) * ((s - p * t) ** 2).sum() / n**2
        deff = float(np.clip(robust / (p * (1 - p) / n), 1.0, cap))
    else:
        deff = cap
    n_eff, k_eff = n / deff, k / deff
    alpha = 1 - level
    low = 0.0 if k_eff <= 0 else float(beta.ppf(alpha / 2, k_eff, n_eff - k_eff + 1))
    high = 1.0 if k_eff >= n_eff else float(beta.ppf(1 - alpha / 2, k_eff + 1, n_eff - k_eff))
    return float(p), low, high


def auc_interval(auc: float, n_pos: float, n_neg: float, level: float) -> tuple[float, float]:
    """Newcombe's (2006, method 5) score interval of a Mann-Whitney AUC from ``n_pos`` positive and
    ``n_neg`` negative units: the A with (A - auc)^2 = z^2 V(A), V Hanley-McNeil's variance at A with
    both sizes replaced by their mean. Non-degenerate at an AUC of 0 or 1."""
    if not np.isfinite(auc) or n_pos <= 0 or n_neg <= 0:
        return float("nan"), float("nan")
    z = norm.ppf(0.5 + level / 2)
    n_star = max((n_pos + n_neg) / 2 - 1, 1.0)

    def gap(a: float) -> float:
        var = a * (1 - a) / (n_pos * n_neg) * (1 + (n_star - 1) * ((1 - a) / (2 - a) + a / (1 + a)))
        return (a - auc) ** 2 - z**2 * var

    eps = 1e-9  # at an AUC of 0 or 1 the variance vanishes there, but not beside it
    inner_low, inner_high = max(auc - eps, 0.0), min(auc + eps, 1.0)
    low = 0.0 if auc <= 0 else (brentq(gap, 0.0, inner_low) if gap(inner_low) < 0 else auc)
    high = 1.0 if auc >= 1 else (brentq(gap, inner_high, 1.0) if gap(inner_high) < 0 else auc)
    return float(low), float(high)


def bca_interval(boot: np.ndarray, estimate: float, jackknife: np.ndarray, level: float) -> dict[str, Any]:
    """BCa interval (Efron 1987) of the defined resamples ``boot``; ``jackknife`` the leave-one-unit-out values.

    An undefined estimate gives no interval. Bias and acceleration fall back to 0
    when they cannot be estimated (all resamples on one side, a constant jackknife).
    """
    used = boot[np.isfinite(boot)]
    out: dict[str, Any] = {"estimate": float(estimate), "low": float("nan"), "high": float("nan"),
                           "n_used": int(len(used)), "method": "BCa bootstrap"}  # fmt: skip
    if not np.isfinite(estimate) or len(used) == 0:
        return out
    below = (np.sum(used < estimate) + 0.5 * np.sum(used == estimate)) / len(used)
    z0 = float(norm.ppf(np.clip(below, 0.5 / len(used), 1 - 0.5 / len(used))))
    jack = jackknife[np.isfinite(jackknife)]
    d = jack.mean() - jack if len(jack) > 1 else np.zeros(1)
    denom = 6 * (d**2).sum() ** 1.5
    a = float((d**3).sum() / denom) if denom > 0 else 0.0
    z = norm.ppf([(1 - level) / 2, (1 + level) / 2])
    with np.errstate(invalid="ignore", divide="ignore"):
        q = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    q = np.nan_to_num(q, nan=0.5)
    low, high = np.quantile(used, q)
    out.update({"low": float(min(low, estimate)), "high": float(max(high, estimate))})
    return out


def warn_undefined(name: str, interval: Mapping[str, Any], n_boot: int) -> None:
    """Log a warning when fewer resamples than asked define a bootstrap quantity."""
    if isinstance(interval.get("n_used"), int) and interval["n_used"] < n_boot:
        LOG.warning("%s: only %d of %d resamples define it; its interval rests on those", name,
                    interval["n_used"], n_boot)  # fmt: skip


def jackknife_confusion(per_unit: np.ndarray) -> np.ndarray:
    """Leave-one-unit-out confusion counts [U, K, K]."""
    return per_unit.sum(axis=0)[None] - per_unit


F1_METHOD = "Clopper-Pearson on tp/(tp+fp+fn), cluster design effect, mapped to F1"
MACRO_METHOD = "mean of the classes' F1 intervals at level 1 - (1 - level)/K (Bonferroni)"


def class_f1_interval(per_unit: np.ndarray, k: int, level: float) -> tuple[float, float, float]:
    """(estimate, low, high) of class k's F1 = 2J/(1+J), J = tp/(tp+fp+fn) given the proportion interval."""
    tp = per_unit[:, k, k]
    union = per_unit[:, k, :].sum(axis=1) + per_unit[:, :, k].sum(axis=1) - tp
    est, low, high = proportion_interval(tp, union, level)
    to_f1 = [float(2 * v / (1 + v)) if np.isfinite(v) else float("nan") for v in (est, low, high)]
    return to_f1[0], to_f1[1], to_f1[2]


def macro_f1_interval(per_unit: np.ndarray, level: float) -> dict[str, Any]:
    """Macro F1 with an interval that covers whenever every class's F1 interval does.

    Each class's F1 interval is taken at level 1 - (1 - level) / K, so all K cover
    together with probability >= ``level`` (Bonferroni), and the mean of their ends
    bounds the mean of the F1s. The bootstrap (BCa) covered 0.82 at 10 patients
    (bench/interval_coverage.py). Undefined (NaN) when a class has no true image.
    """
    n_cls = per_unit.shape[1]
    estimate = float(metrics_from_confusion(per_unit.sum(axis=0))["macro_f1"])
    out = _analytic(estimate, float("nan"), float("nan"), MACRO_METHOD)
    if not np.isfinite(estimate):
        return out
    joint = 1 - (1 - level) / n_cls
    bounds = np.array([class_f1_interval(per_unit, k, joint)[1:] for k in range(n_cls)])
    out.update({"low": float(min(bounds[:, 0].mean(), estimate)), "high": float(max(bounds[:, 1].mean(), estimate))})
    return out


def _analytic(estimate: float, low: float, high: float, method: str) -> dict[str, Any]:
    return {"estimate": float(estimate), "low": float(low), "high": float(high), "n_used": None, "method": method}


def metric_intervals(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    level: float,
) -> dict[str, Any]:
    """Accuracy, macro F1 and per-class precision/recall/F1/ROC AUC, each ``{estimate, low, high, n_used, method}``.

    Methods per quantity as in the module docstring (``n_used``: defined resamples
    for a bootstrap interval, None for an analytic one). ROC AUC of a class is
    one-vs-rest on its ``prob_<class>`` column. ``n_boot`` and ``seed`` are recorded
    for the bootstrap intervals of differences (``paired_bootstrap``), which share them.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    classes = list(classes)
    prob_cols = check_predictions(predictions, classes)
    units, per_unit = unit_confusion(predictions, classes)
    unit_of_image = np.searchsorted(units, resampling_units(predictions).to_numpy())
    y = predictions["true_label"].astype(str).to_numpy()
    n_units = len(units)
    tp = np.diagonal(per_unit, axis1=1, axis2=2)
    actual, predicted = per_unit.sum(axis=2), per_unit.sum(axis=1)
    method_p = "Clopper-Pearson, cluster design effect"

    def prop(s: np.ndarray, t: np.ndarray) -> dict[str, Any]:
        est, low, high = proportion_interval(s, t, level)
        return _analytic(est, low, high, method_p)

    accuracy = prop(tp.sum(axis=1), per_unit.sum(axis=(1, 2)))
    per_class: dict[str, dict[str, Any]] = {}
    for k, cls in enumerate(classes):
        f1 = class_f1_interval(per_unit, k, level)
        positive = y == cls
        unit_w = np.ones((1, n_units))
        auc = float(bootstrap_auc(positive, predictions[prob_cols[k]].to_numpy(float), unit_of_image, unit_w)[0])
        pos_units = len(np.unique(unit_of_image[positive]))
        neg_units = len(np.unique(unit_of_image[~positive]))
        auc_low, auc_high = auc_interval(auc, pos_units, neg_units, level)
        per_class[cls] = {
            "precision": prop(tp[:, k], predicted[:, k]),
            "recall": prop(tp[:, k], actual[:, k]),
            "f1": _analytic(*f1, F1_METHOD),
            "roc_auc": _analytic(auc, auc_low, auc_high, "Newcombe score interval over units"),
        }
    absent = absent_classes(predictions, classes)
    macro = macro_f1_interval(per_unit, level)
    if absent:
        macro["refused"] = f"class {', '.join(absent)} absent from the test set"
    return {
        "level": level,
        "n_boot": n_boot,
        "seed": seed,
        "unit": "split group",
        "n_units": int(n_units),
        "n_patients": int(n_units),
        "n_images": int(len(predictions)),
        "accuracy": accuracy,
        "macro_f1": macro,
        "per_class": per_class,
    }


def paired_bootstrap(
    tables: Mapping[str, pd.DataFrame], classes: Sequence[str], *, n_boot: int, seed: int, level: float
) -> dict[str, dict[str, dict[str, Any]]]:
    """Macro and positive-class F1 of each table with their intervals (as ``metric_intervals``), and of the
    first table minus each other one with a paired BCa bootstrap interval.

    Paired: every table is scored on the *same* resamples of the same units, so a
    difference's interval reflects only how the models differ, not which patients
    happened to be drawn. All tables must hold predictions for the same units.
    Returns ``{name: {metric: interval}}`` plus ``"<first> - <other>"`` entries.
    """
    if not tables:
        raise ValueError("no prediction tables to bootstrap")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    classes = list(classes)
    for t in tables.values():
        check_predictions(t, classes)
    unit_sets = {name: np.unique(resampling_units(t).to_numpy()) for name, t in tables.items()}
    units = next(iter(unit_sets.values()))
    if any(len(units) != len(u) or (units != u).any() for u in unit_sets.values()):
        raise ValueError("paired bootstrap needs the same test units (split groups) in every table")
    weights = draws(len(units), n_boot, seed).astype(float)
    per_unit = {name: unit_confusion(t, classes, units)[1] for name, t in tables.items()}

    def scores(cm: np.ndarray) -> dict[str, np.ndarray]:
        m = metrics_from_confusion(cm)
        return {"macro_f1": m["macro_f1"], "positive_f1": m["f1"][..., 0]}

    full = {name: scores(pu.sum(axis=0)) for name, pu in per_unit.items()}
    boot = {name: scores(np.einsum("bu,uij->bij", weights, pu)) for name, pu in per_unit.items()}
    jack = {name: scores(jackknife_confusion(pu)) for name, pu in per_unit.items()}
    out = {name: {"macro_f1": macro_f1_interval(pu, level),
                  "positive_f1": _analytic(*class_f1_interval(pu, 0, level), F1_METHOD)}
           for name, pu in per_unit.items()}  # fmt: skip
    first, *others = list(tables)
    for other in others:
        out[f"{first} - {other}"] = {
            m: bca_interval(boot[first][m] - boot[other][m], float(full[first][m] - full[other][m]),
                            jack[first][m] - jack[other][m], level)
            for m in METRICS
        }  # fmt: skip
    for name, intervals in out.items():
        for m, interval in intervals.items():
            if np.isfinite(interval["estimate"]):
                warn_undefined(f"{m} of {name}", interval, n_boot)
    return out


METRICS = ("macro_f1", "positive_f1")


def difference_of_independent(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Interval of a - b for estimates on different units (MOVER, Newcombe 1998 / Zou & Donner 2008).

    Each of ``a`` and ``b`` is ``{estimate, low, high}`` at the same level; None or
    NaN anywhere gives no interval.
    """
    vals = [a.get(k) for k in ("estimate", "low", "high")] + [b.get(k) for k in ("estimate", "low", "high")]
    if any(v is None or not np.isfinite(v) for v in vals):
        est = (a.get("estimate") or np.nan) - (b.get("estimate") or np.nan)
        return {"estimate": float(est), "low": float("nan"), "high": float("nan"), "method": "MOVER"}
    ea, la, ha, eb, lb, hb = (float(v) for v in vals)
    d = ea - eb
    low = d - np.sqrt((ea - la) ** 2 + (hb - eb) ** 2)
    high = d + np.sqrt((ha - ea) ** 2 + (eb - lb) ** 2)
    return {"estimate": d, "low": float(low), "high": float(high), "method": "MOVER"}


def ci_table(result: dict[str, Any]) -> pd.DataFrame:
    """Flatten ``metric_intervals``'s result into rows (class, metric, estimate, low, high, n_used, method)."""
    rows = [{"class": "all", "metric": "accuracy", **result["accuracy"]}]
    if "macro_f1" in result:
        rows.append({"class": "all", "metric": "macro_f1", **result["macro_f1"]})
    for cls, metrics in result["per_class"].items():
        rows += [{"class": cls, "metric": m, **v} for m, v in metrics.items()]
    return pd.DataFrame(rows, columns=["class", "metric", "estimate", "low", "high", "n_used", "method"])
