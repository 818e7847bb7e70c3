"""A decision threshold chosen on the validation split, frozen, and applied unchanged to every test set.

F1 from argmax hides a choice: the threshold 0.5 (two classes). A threshold tuned on
the test set inflates every figure read at it. Here the threshold on a class's
probability is chosen on the **validation** predictions only, by a rule fixed in the
configuration (``evaluation.threshold``):

* ``youden``: the validation ROC point with the largest sensitivity + specificity - 1,
* ``target_sensitivity``: the highest threshold whose validation sensitivity reaches the target,
* ``fixed``: a given value,

then applied as ``prob >= threshold`` to the internal test split and each external
source: sensitivity, specificity, PPV, NPV and F1 with patient-bootstrap intervals.
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
from .metrics import json_safe
from .resampling import bootstrap

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


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV and F1 of ``p >= threshold``; NaN where a denominator is 0."""
    positive = p >= threshold
    tp, fp = float(np.sum(positive & y)), float(np.sum(positive & ~y))
    fn, tn = float(np.sum(~positive & y)), float(np.sum(~positive & ~y))

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn)}  # fmt: skip


def sensitivity_at_specificity(y: np.ndarray, p: np.ndarray, specificity: float) -> float:
    """The highest sensitivity of the ROC among points with at least ``specificity``; NaN without both outcomes."""
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=False)
    return float(tpr[fpr <= 1 - specificity + 1e-12].max())


def spec_key(specificity: float) -> str:
    return f"sensitivity_at_specificity_{specificity:g}"


def apply_threshold(predictions: pd.DataFrame, cls: str, threshold: float, specificities: Sequence[float],
                    bootstrap_settings: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The frozen threshold's figures on one prediction table, and the post-hoc sensitivities, with intervals."""
    y, p = outcomes(predictions, cls)

    def statistic(rows: np.ndarray) -> dict[str, float]:
        out = at_threshold(y[rows], p[rows], threshold)
        out.update({spec_key(s): sensitivity_at_specificity(y[rows], p[rows], s) for s in specificities})
        return out

    intervals = bootstrap(predictions, statistic, bootstrap_settings)
    counts = {"tp": int(np.sum((p >= threshold) & y)), "fp": int(np.sum((p >= threshold) & ~y)),
              "fn": int(np.sum((p < threshold) & y)), "tn": int(np.sum((p < threshold) & ~y))}  # fmt: skip
    return json_safe({
        "n": int(len(y)), "positives": int(y.sum()), "counts": counts,
        "at_threshold": {m: intervals[m] for m in AT_THRESHOLD},
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
