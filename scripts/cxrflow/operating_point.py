"""A decision threshold chosen on the validation split, frozen, and applied unchanged to every test set.

F1 from argmax hides a choice: the threshold 0.5 (two classes). A threshold tuned on
the test set inflates every figure read at it. Here the threshold on a class's
probability is chosen on the **validation** predictions only, by a rule fixed in the
configuration (``evaluation.threshold``):

* ``youden``: the validation ROC point with the largest sensitivity + specificity - 1,
* ``target_sensitivity``: the highest threshold whose validation sensitivity reaches the target,
* ``fixed``: a given value,

then applied as ``prob >= threshold`` to the internal test split and each external
source: sensitivity, specificity, PPV, NPV and F1, each with the statistics core's
interval over split groups (Clopper-Pearson with a cluster design effect; F1 through
tp / (tp + fp + fn), as ``uncertainty.class_f1_interval``).
Sensitivity at fixed specificities is read off the *test* ROC and labelled post hoc:
it describes the test curve, it is not an operating point a user could have set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from .calibration import target_classes
from .results_io import json_safe
from .uncertainty import F1_METHOD, class_f1_interval, proportion_interval, unit_bootstrap, unit_sums

AT_THRESHOLD = ("sensitivity", "specificity", "ppv", "npv", "f1")


def outcomes(predictions: pd.DataFrame, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """(is the class, its probability) one-vs-rest."""
    return (predictions["true_label"].astype(str) == cls).to_numpy(), predictions[f"prob_{cls}"].to_numpy(float)


def choose_threshold(val: pd.DataFrame, cls: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """The frozen threshold of ``cls`` from validation predictions ``val`` by ``rule`` (evaluation.threshold).

    Where the validation split cannot choose (no images, only one outcome, or for Youden no
    ROC point above the diagonal: it would pick "never positive"), the ``fixed`` value is used
    and ``fallback`` says why: never a value read off the test set.
    """
    y, p = outcomes(val, cls)
    out: dict[str, Any] = {"class": cls, "rule": rule["rule"], "chosen_on": "validation", "n_validation": int(len(y)),
                           "validation_positives": int(y.sum()), "fallback": None}  # fmt: skip
    if rule["rule"] == "fixed":
        return {**out, "threshold": float(rule["fixed"]), "description": f"fixed at {rule['fixed']:g}"}
    if len(y) == 0 or y.all() or not y.any():
        why = "no validation images" if len(y) == 0 else f"the validation split holds only one outcome of {cls}"
        return {**out, "threshold": float(rule["fixed"]), "fallback": why,
                "description": f"{rule['rule']} could not be applied ({why}): fixed {rule['fixed']:g} used",
                }  # fmt: skip
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if rule["rule"] == "youden":
        k = int(np.argmax(tpr - fpr))  # first maximum: the highest threshold among ties
        if tpr[k] - fpr[k] <= 0:
            why = "no validation ROC point lies above the diagonal (Youden's J <= 0)"
            return {**out, "threshold": float(rule["fixed"]), "fallback": why,
                    "description": f"youden could not be applied ({why}): fixed {rule['fixed']:g} used"}  # fmt: skip
        description = (f"Youden's J on the validation split: sensitivity {tpr[k]:.2f} + specificity "
                       f"{1 - fpr[k]:.2f} - 1 = {tpr[k] - fpr[k]:.2f}")  # fmt: skip
    else:
        target = float(rule["target_sensitivity"])
        k = int(np.flatnonzero(tpr >= target - 1e-12)[0])
        description = (f"highest threshold reaching sensitivity {target:g} on the validation split "
                       f"(reached {tpr[k]:.2f}, specificity {1 - fpr[k]:.2f})")  # fmt: skip
    threshold = float(min(thresholds[k], 1.0))  # roc_curve's first threshold is +inf: nothing positive
    return {**out, "threshold": threshold, "validation_sensitivity": float(tpr[k]),
            "validation_specificity": float(1 - fpr[k]), "description": description}  # fmt: skip


PROPORTION_METHOD = "Clopper-Pearson, cluster design effect"
# Each figure at the threshold as (successes, trials) of the four cells: a proportion of images.
PROPORTIONS = {"sensitivity": ("tp", ("tp", "fn")), "specificity": ("tn", ("tn", "fp")),
               "ppv": ("tp", ("tp", "fp")), "npv": ("tn", ("tn", "fn"))}  # fmt: skip


def threshold_intervals(predictions: pd.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float,
                        level: float) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Sensitivity, specificity, PPV, NPV and F1 of ``p >= threshold`` with their intervals over split groups."""
    positive = p >= threshold
    cells = unit_sums(predictions, {"tp": positive & y, "fp": positive & ~y, "fn": ~positive & y,
                                    "tn": ~positive & ~y})  # fmt: skip
    out = {}
    for name, (hit, of) in PROPORTIONS.items():
        est, low, high = proportion_interval(cells[hit], cells[of[0]] + cells[of[1]], level)
        out[name] = {"estimate": est, "low": low, "high": high, "n_used": None, "method": PROPORTION_METHOD}
    per_unit = np.stack(
        [np.stack([cells["tp"], cells["fn"]], axis=1), np.stack([cells["fp"], cells["tn"]], axis=1)], axis=1
    )  # fmt: skip (units x true x predicted, the class first)
    est, low, high = class_f1_interval(per_unit, 0, level)
    out["f1"] = {"estimate": est, "low": low, "high": high, "n_used": None, "method": F1_METHOD}
    return out


def sensitivities_at_specificities(y: np.ndarray, p: np.ndarray, specificities: Sequence[float]) -> list[float]:
    """For each specificity, the highest sensitivity of the ROC among points with at least that specificity;
    NaN without both outcomes. One ROC for all of them: the bootstrap draws it a thousand times."""
    if y.all() or not y.any():
        return [float("nan")] * len(specificities)
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return [float(tpr[fpr <= 1 - s + 1e-12].max()) for s in specificities]


def spec_key(specificity: float) -> str:
    return f"sensitivity_at_specificity_{specificity:g}"


def apply_threshold(predictions: pd.DataFrame, cls: str, threshold: float, specificities: Sequence[float],
                    bootstrap_settings: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The frozen threshold's figures on one prediction table, and the post-hoc sensitivities (BCa bootstrap
    over split groups: read off a curve, not a fixed proportion), with intervals."""
    y, p = outcomes(predictions, cls)
    at = threshold_intervals(predictions, y, p, threshold, bootstrap_settings["level"])

    def statistic(rows: np.ndarray) -> dict[str, float]:
        return dict(zip(map(spec_key, specificities), sensitivities_at_specificities(y[rows], p[rows], specificities)))

    intervals = unit_bootstrap(predictions, statistic, n_boot=bootstrap_settings["n"], seed=bootstrap_settings["seed"],
                               level=bootstrap_settings["level"])  # fmt: skip
    counts = {"tp": int(np.sum((p >= threshold) & y)), "fp": int(np.sum((p >= threshold) & ~y)),
              "fn": int(np.sum((p < threshold) & y)), "tn": int(np.sum((p < threshold) & ~y))}  # fmt: skip
    return json_safe({
        "n": int(len(y)), "positives": int(y.sum()), "counts": counts,
        "at_threshold": {m: at[m] for m in AT_THRESHOLD},
        "post_hoc": {"note": "read off this set's own ROC: describes the curve, not a threshold chosen in advance",
                     **{spec_key(s): intervals[spec_key(s)] for s in specificities}},
    })  # fmt: skip


def operating_point(val: pd.DataFrame, sets: Mapping[str, pd.DataFrame], classes: Sequence[str],
                    settings: Mapping[str, Any], bootstrap_settings: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """operating_point.json: per target class its frozen threshold (chosen on ``val``) and its figures on each
    of ``sets`` (name -> predictions: the test split, each external source). ``settings`` is config evaluation."""
    out: dict[str, Any] = {"rule": dict(settings["threshold"]),
                           "fixed_specificities": list(settings["fixed_specificities"]), "classes": {}}  # fmt: skip
    for cls in target_classes(classes):
        chosen = choose_threshold(val, cls, settings["threshold"])
        out["classes"][cls] = {
            "threshold": chosen,
            "sets": {name: {"threshold": chosen["threshold"],
                            **apply_threshold(table, cls, chosen["threshold"], settings["fixed_specificities"],
                                              bootstrap_settings)}
                     for name, table in sets.items()},
        }  # fmt: skip
    return json_safe(out)
