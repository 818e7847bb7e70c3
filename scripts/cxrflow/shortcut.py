"""The border-only control: is the model reading the lungs, or the frame around them?

The same training is repeated on images whose central field (the lungs) is
replaced by one constant grey, so only borders and corners remain: black bars,
burnt-in markers, collimation edges, framing. If that control scores clearly
better than a label-blind guess *and* the full model is not shown to beat it by
more than a margin (paired bootstrap over the same test units), the classes
can be told apart without looking at the lungs, and the full model's score
cannot be taken as evidence that it reads the disease (``verdict``). The model is
cleared ("no shortcut") only on evidence: the difference's lower bound above the
margin and the control's upper bound within a tolerance of chance; a small test
set gives "inconclusive" with the reason. The control is trained with the
experiment's own (untuned) settings, never with a nested experiment's choice for
the full model, so the full model's tuning does not tilt the verdict.

The intervals and the one F1 definition live in ``uncertainty`` (the statistics core).

Everything here is pure NumPy / scikit-learn on arrays and tables, so the rules
(``train_border_only``, ``shortcut_audit``) stay thin and the rule is testable
without Keras.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .results_io import json_safe, read_predictions, write_json
from .uncertainty import (
    absent_classes,
    metrics_from_confusion,
    paired_bootstrap,
    pool_folds,
    resampling_units,
    unit_confusion,
)

LOG = logging.getLogger(__name__)


def chance_f1(y_true: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """The best F1 a model that ignores the image can expect on these test labels.

    Label-blind predictors: always the same class k (its F1 is 2p/(1+p) for class
    k, 0 for the others), or a guess drawn with the class frequencies (expected
    F1 of class k = p_k, macro 1/K). Returned per metric: the macro F1 and the
    positive class's F1 (classes[0]), each the maximum over those predictors, so
    "above chance" means above every one of them.
    """
    y = np.asarray(y_true).astype(str)
    if len(y) == 0:
        raise ValueError("no test labels: chance is undefined")
    p = np.array([(y == c).mean() for c in classes])
    constant = 2 * p / (1 + p)  # F1 of class k when k is always predicted
    macro = max(float(p.sum() / len(classes)), float(constant.max() / len(classes)))
    positive = max(float(p[0]), float(constant[0]))
    return {"macro_f1": macro, "positive_f1": positive, "prevalence": dict(zip(classes, p.tolist()))}


VERDICTS = ("shortcut", "borders informative", "no shortcut", "inconclusive")


def verdict(
    full: Mapping[str, Any],
    border: Mapping[str, Any],
    difference: Mapping[str, Any],
    chance: float,
    *,
    flag_margin: float,
    chance_tolerance: float,
    metric: str,
    n_units: int,
    refused: str = "",
) -> tuple[str, bool, str]:
    """(verdict, flag, sentence) from the full and border-only scores, their paired difference
    (full - border), each ``{estimate, low, high}``, and chance.

    "Clearly above chance": the interval's lower bound is above the best label-blind
    F1. "Clearly better by more than the margin": the lower bound of the paired
    difference is above ``flag_margin``. "Shown near chance": the control's upper
    bound is at most ``chance + chance_tolerance``. The burden of proof is on the
    model: it is cleared only on evidence, never for lack of it.

    * ``shortcut`` (the only flagged verdict): the border-only model is clearly above
      chance and the full model is not clearly better than it by more than ``flag_margin``.
    * ``borders informative``: the border-only model is clearly above chance, and the
      full model clearly better by more than the margin.
    * ``no shortcut``: the full model is clearly above chance and clearly better than
      the control by more than the margin, and the control is shown near chance.
    * ``inconclusive``: anything else, with the reason (``refused``: the metric is
      undefined, e.g. a class absent from the test set; or too few test units to tell).
    """
    if refused:
        return "inconclusive", False, f"Shortcut audit refused: {refused}; no verdict on {metric}."
    f, b, d = full["estimate"], border["estimate"], difference
    facts = (
        f"the border-only model (central lung field masked) scores {metric} {_bound(b)} "
        f"[{_bound(border['low'])}, {_bound(border['high'])}], the full model {_bound(f)} "
        f"[{_bound(full['low'])}, {_bound(full['high'])}] (difference {_bound(d['estimate'])} "
        f"[{_bound(d['low'])}, {_bound(d['high'])}]), chance {chance:.2f}"
    )
    border_above = _above(border["low"], chance)
    full_above = _above(full["low"], chance)
    clearly_better = _above(d["low"], flag_margin)
    near_chance = (
        border["high"] is not None
        and bool(np.isfinite(border["high"]))
        and (border["high"] <= chance + chance_tolerance)
    )
    if border_above and not clearly_better:
        return (
            "shortcut",
            True,
            (
                f"Shortcut flagged: {facts}. The image borders alone (bars, markers, collimation, "
                "framing) separate the classes clearly better than chance, and the full model is not shown "
                f"to do better than them by more than {flag_margin:.2f}: its score is no evidence that it "
                "reads the lungs."
            ),
        )
    if border_above:
        return (
            "borders informative",
            False,
            (
                f"No shortcut flagged, but the borders carry label information: {facts}. The border-only "
                f"model is clearly above chance, and the full model clearly better than it by more than "
                f"{flag_margin:.2f}, so it uses more than the borders (the Grad-CAM panel shows where it looks)."
            ),
        )
    if full_above and clearly_better and near_chance:
        return (
            "no shortcut",
            False,
            (
                f"No shortcut: {facts}. The full model is clearly better than the borders alone by more than "
                f"{flag_margin:.2f}, and the borders are shown within {chance_tolerance:.2f} of chance."
            ),
        )
    if not full_above:
        why = "the full model is not clearly above chance, so there is no score to explain away"
    elif not clearly_better:
        why = (
            f"the full model is not shown better than the borders by more than {flag_margin:.2f} "
            f"(too few test patients: {n_units})"
        )
    else:
        why = (
            f"the borders are not shown within {chance_tolerance:.2f} of chance (upper bound "
            f"{_bound(border['high'])}; too few test patients: {n_units})"
        )
    return "inconclusive", False, f"Shortcut audit inconclusive: {facts}; {why}."


def _above(low: float | None, chance: float) -> bool:
    """Interval bound above chance; an undefined bound (no resample defined the metric) is not."""
    return low is not None and bool(np.isfinite(low)) and low > chance


def _bound(value: float | None) -> str:
    """Two digits, or "n/a" for an undefined value."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


METRIC_LABELS = {"macro_f1": "macro F1", "positive_f1": "F1 of the positive class"}


def shortcut_audit(
    full_predictions: pd.DataFrame,
    border_predictions: pd.DataFrame,
    classes: Sequence[str],
    settings: Mapping[str, Any],
    bootstrap: Mapping[str, Any],
) -> dict[str, Any]:
    """The audit of one experiment and fold: both models' F1s with paired CIs, chance, verdict and sentence.

    ``settings`` is the config's ``audit.border_only``; ``bootstrap`` its ``audit.bootstrap``.
    Both prediction tables must cover the same test images (same split).
    """
    classes = list(classes)
    metric = settings["metric"]
    if metric not in METRIC_LABELS:
        raise ValueError(f"audit.border_only.metric must be one of {sorted(METRIC_LABELS)}, got {metric!r}")
    full_ids = sorted(full_predictions["image_id"].astype(str))
    if full_ids != sorted(border_predictions["image_id"].astype(str)):
        raise ValueError("full and border-only predictions cover different test images")
    ci = paired_bootstrap({"full": full_predictions, "border_only": border_predictions}, classes,
                          n_boot=bootstrap["n"], seed=bootstrap["seed"], level=bootstrap["level"])  # fmt: skip
    chance = chance_f1(full_predictions["true_label"], classes)
    units = np.unique(resampling_units(full_predictions).to_numpy())
    scores = {
        name: {**ci[name], "f1": dict(zip(classes, metrics_from_confusion(
            unit_confusion(table, classes, units)[1].sum(axis=0))["f1"].tolist()))}
        for name, table in (("full", full_predictions), ("border_only", border_predictions))
    }  # fmt: skip
    difference = ci["full - border_only"]
    absent = absent_classes(full_predictions, classes)
    refused = f"class {', '.join(absent)} absent from the test set, so F1 is undefined" if absent else ""
    name, flag, sentence = verdict(scores["full"][metric], scores["border_only"][metric], difference[metric],
                                   chance[metric], flag_margin=settings["flag_margin"],
                                   chance_tolerance=settings["chance_tolerance"], metric=METRIC_LABELS[metric],
                                   n_units=len(units), refused=refused)  # fmt: skip
    return {
        "classes": classes,
        "positive_class": classes[0],
        "settings": dict(settings),
        "bootstrap": dict(bootstrap),
        "n_test": len(full_ids),
        "n_units": int(len(units)),
        "metric": metric,
        "refused": refused or None,
        "chance": chance,
        "full": scores["full"],
        "border_only": scores["border_only"],
        "difference": difference,
        "verdict": name,
        "flag": flag,
        "sentence": sentence,
    }


def audit_text(result: Mapping[str, Any]) -> str:
    """shortcut_audit.txt: the verdict sentence, then both models' scores, chance and the settings."""
    positive = result["positive_class"]
    level = result["bootstrap"]["level"]

    def cell(interval: Mapping[str, Any]) -> str:
        low, high = interval["low"], interval["high"]
        return f"{_bound(interval['estimate'])} [{_bound(low)}, {_bound(high)}]"

    head = f"{'':<26}{'macro F1':<20}{'F1 ' + positive:<20}"
    lines = [
        f"Shortcut audit: experiment {result.get('experiment', '')}, fold {result.get('fold', '')}"
        + (", external test set" if result.get("test") == "external" else ""),
        "",
        textwrap.fill(result["sentence"], 88),
        "",
        textwrap.fill(
            f"{level:.0%} intervals over the {result.get('n_units', '?')} test units (split groups; "
            f"{result['n_test']} test images): each model's F1 from Clopper-Pearson intervals, the "
            f"difference from a paired BCa bootstrap of {result['bootstrap']['n']} resamples; the "
            f"verdict uses {METRIC_LABELS[result['metric']]}.",
            88,
        ),
        "",
        head,
        f"{'full model':<26}{cell(result['full']['macro_f1']):<20}{cell(result['full']['positive_f1']):<20}",
        f"{'border-only control':<26}{cell(result['border_only']['macro_f1']):<20}"
        f"{cell(result['border_only']['positive_f1']):<20}",
        f"{'full - border-only':<26}{cell(result['difference']['macro_f1']):<20}"
        f"{cell(result['difference']['positive_f1']):<20}",
        f"{'chance (label-blind)':<26}{result['chance']['macro_f1']:<20.2f}{result['chance']['positive_f1']:<20.2f}",
        "",
        textwrap.fill(
            f"Border-only control: the central {result['settings']['mask']:.0%} of each side of every "
            f"train, validation and test image set to {result['settings']['fill']}; flag margin "
            f"{result['settings']['flag_margin']:.2f}; chance tolerance "
            f"{result['settings']['chance_tolerance']:.2f}; trained with the experiment's own settings, "
            f"never the full model's tuned choice; verdict: {result['verdict']}.",
            88,
        ),
    ]
    return "\n".join(lines) + "\n"


def experiment_audit(
    full_predictions: Sequence[pd.DataFrame],
    border_predictions: Sequence[pd.DataFrame],
    fold_audits: Sequence[Mapping[str, Any]],
    classes: Sequence[str],
    settings: Mapping[str, Any],
    bootstrap: Mapping[str, Any],
) -> dict[str, Any]:
    """The experiment's one verdict: ``shortcut_audit`` of all folds' test predictions pooled.

    With k folds every patient is tested by exactly one fold's model and its control,
    so the pooled out-of-fold predictions of both are one paired test set k times a
    fold's size (``uncertainty.pool_folds``, as the summary's pooled CI): the verdict a
    single fold leaves to chance is decided on all patients. The folds' own verdicts
    are listed beside it, so a reader sees whether they agree. With one fold this is
    that fold's audit.
    """
    if not full_predictions or len(full_predictions) != len(border_predictions):
        raise ValueError(f"{len(full_predictions)} full and {len(border_predictions)} border-only prediction tables")
    if len(fold_audits) != len(full_predictions):
        raise ValueError(f"{len(full_predictions)} folds but {len(fold_audits)} fold audits")
    result = shortcut_audit(pool_folds(full_predictions), pool_folds(border_predictions), classes, settings,
                            bootstrap)  # fmt: skip
    per_fold = [{"fold": a.get("fold", str(k)), "verdict": a["verdict"], "flag": a["flag"]}
                for k, a in enumerate(fold_audits)]  # fmt: skip
    return {"fold": "all", "folds": len(full_predictions), **result, "per_fold": per_fold,
            "flagged_folds": sum(bool(f["flag"]) for f in per_fold)}  # fmt: skip


def experiment_audit_text(result: Mapping[str, Any]) -> str:
    """shortcut_audit.txt of the experiment: the pooled audit, then each fold's verdict."""
    folds = result["folds"]
    fold = f"all ({folds} folds' test predictions pooled)" if folds > 1 else "all (one fold)"
    text = audit_text({**result, "fold": fold})
    lines = [f"Verdicts of the single folds ({result['flagged_folds']} of {folds} flagged):"]
    lines += [f"  fold {f['fold']}: {f['verdict']}" for f in result["per_fold"]]
    return text + "\n" + "\n".join(lines) + "\n"


def shortcut_audit_main(
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    classes: Sequence[str],
    settings: Mapping[str, Any],
    bootstrap: Mapping[str, Any],
    run: Mapping[str, Any],
    test: str = "internal",
) -> dict[str, Any]:
    """Rules shortcut_audit and shortcut_audit_external: :func:`shortcut_audit` of one fold's predictions
    (``inputs``: full and border_only predictions.csv), to shortcut_audit.json and .txt (``run``:
    {experiment, fold}; ``test``: internal or external)."""
    full, border = read_predictions(inputs["full"]), read_predictions(inputs["border_only"])
    result = shortcut_audit(full, border, classes, settings, bootstrap)
    result = {"experiment": run.get("experiment", ""), "fold": run.get("fold", ""), "test": test, **result}
    write_json(json_safe(result), outputs["json"])
    Path(outputs["text"]).write_text(audit_text(result))
    LOG.info("%s", result["sentence"])
    return result


def experiment_audit_main(
    full_paths: Sequence[str],
    border_paths: Sequence[str],
    audit_paths: Sequence[str],
    outputs: Mapping[str, str],
    classes: Sequence[str],
    settings: Mapping[str, Any],
    bootstrap: Mapping[str, Any],
    experiment: str,
) -> dict[str, Any]:
    """Rule shortcut_summary: :func:`experiment_audit` over all folds, to the experiment's shortcut_audit.json
    and .txt beside its metrics.json."""
    fold_audits = [json.loads(Path(p).read_text()) for p in audit_paths]
    result = experiment_audit([read_predictions(p) for p in full_paths], [read_predictions(p) for p in border_paths],
                              fold_audits, classes, settings, bootstrap)  # fmt: skip
    result = {"experiment": experiment, **result}
    write_json(json_safe(result), outputs["json"])
    Path(outputs["text"]).write_text(experiment_audit_text(result))
    LOG.info("%s (%d of %d folds flagged)", result["sentence"], result["flagged_folds"], result["folds"])
    return result
