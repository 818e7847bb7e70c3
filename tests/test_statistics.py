"""The printed numbers' statistics, each defect of the former rules as a small table.

One test per rule: the shortcut verdict needs evidence to clear a model, a metric's
estimate and interval share one definition, intervals do not collapse on few
patients, the split group is the resampling unit, a missing patient id is its own
unit everywhere, summaries print the pooled estimate beside its interval, the source
check flags aligned source and label, and comparisons carry intervals. Every number
is recomputed with scikit-learn or scipy where one exists.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import beta, chi2_contingency
from sklearn.metrics import accuracy_score, f1_score

from cxrflow.audit import bias_corrected_cramers_v, source_check
from cxrflow import config as cxr_config
from cxrflow.baselines import margin_intervals
from cxrflow.external import side_by_side
from cxrflow.metrics import compute_metrics, confidence_intervals, summarize_folds
from cxrflow.shortcut import shortcut_audit
from cxrflow.summary import experiment_summary, summary_text
from cxrflow.uncertainty import metric_intervals, paired_bootstrap, proportion_interval

CLASSES = ["COVID-19", "Normal"]
SETTINGS = {"enabled": True, "mask": 0.8, "fill": 128, "metric": "macro_f1", "flag_margin": 0.1,
            "chance_tolerance": 0.1}  # fmt: skip
BOOTSTRAP = {"n": 1000, "seed": 0, "level": 0.95}
SCHEMA = cxr_config.SCHEMA


def table(true: list[str], predicted: list[str], patients: list[str] | None = None) -> pd.DataFrame:
    n = len(true)
    prob = [0.9 if p == CLASSES[0] else 0.1 for p in predicted]
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)],
                         "patient_id": patients if patients is not None else [f"p{k}" for k in range(n)],
                         "true_label": true, "predicted_label": predicted, "prob_COVID-19": prob,
                         "prob_Normal": [1 - p for p in prob]})  # fmt: skip


def test_no_shortcut_needs_evidence_not_its_absence() -> None:
    """Model perfect, control 75% right on 8 patients: formerly 'no shortcut' on the point difference."""
    true = ["COVID-19"] * 4 + ["Normal"] * 4
    control = ["COVID-19", "COVID-19", "COVID-19", "Normal", "Normal", "Normal", "Normal", "COVID-19"]
    result = shortcut_audit(table(true, true), table(true, control), CLASSES, SETTINGS, BOOTSTRAP)
    assert result["verdict"] == "inconclusive" and result["flag"] is False
    assert "too few test patients: 8" in result["sentence"]


def test_one_class_test_set_refuses_macro_f1_and_the_verdict() -> None:
    """A COVID-only external set: macro F1 was 0.5 with the interval [1, 1]."""
    true = ["COVID-19"] * 12
    result = shortcut_audit(table(true, true), table(true, ["COVID-19"] * 6 + ["Normal"] * 6), CLASSES, SETTINGS,
                            BOOTSTRAP)  # fmt: skip
    assert result["verdict"] == "inconclusive" and "absent from the test set" in result["sentence"]
    assert np.isnan(result["full"]["macro_f1"]["estimate"]) and np.isnan(result["full"]["macro_f1"]["low"])
    ci = metric_intervals(table(true, true), CLASSES, n_boot=1000, seed=0, level=0.95)
    assert np.isnan(ci["macro_f1"]["estimate"]) and "Normal absent" in ci["macro_f1"]["refused"]
    # Where defined, no estimate lies outside its own interval, paired differences included.
    rng = np.random.default_rng(0)
    true = list(rng.choice(CLASSES, 30))
    a, b = list(rng.choice(CLASSES, 30)), list(rng.choice(CLASSES, 30))
    paired = paired_bootstrap({"a": table(true, a), "b": table(true, b)}, CLASSES, n_boot=1000, seed=0, level=0.95)
    for intervals in paired.values():
        for iv in intervals.values():
            assert iv["low"] <= iv["estimate"] <= iv["high"]
    assert paired["a"]["macro_f1"]["estimate"] == pytest.approx(f1_score(true, a, average="macro"))


def test_few_patients_give_honest_intervals() -> None:
    """A perfect model on 6 patients: the percentile bootstrap said 1.00 [1.00, 1.00]."""
    true = ["COVID-19"] * 3 + ["Normal"] * 3
    ci = metric_intervals(table(true, true), CLASSES, n_boot=1000, seed=0, level=0.95)
    acc = ci["accuracy"]
    assert acc["estimate"] == 1.0 and acc["high"] == 1.0
    assert acc["low"] == pytest.approx(beta.ppf(0.025, 6, 1))  # Clopper-Pearson of 6 of 6: 0.54
    assert acc["low"] < 0.6
    for cls in CLASSES:
        for metric in ("precision", "recall", "f1", "roc_auc"):
            iv = ci["per_class"][cls][metric]
            assert iv["high"] - iv["low"] > 0.1, (cls, metric, iv)
    # a 7-image patient weighs as one unit when all its images agree (design effect at its cap)
    low = proportion_interval(np.array([7, 0]), np.array([7, 1]), 0.95)[1]
    assert low < 0.2


def test_the_split_group_is_the_resampling_unit() -> None:
    """Near-duplicate copies under two patient ids share a split group: one unit, not two."""
    true = ["COVID-19"] * 10 + ["Normal"] * 10
    preds = table(true, true, patients=[f"p{k}" for k in range(20)])
    grouped = preds.assign(group=[f"g{k // 2}" for k in range(20)])  # pairs of copies
    assert metric_intervals(preds, CLASSES, n_boot=1000, seed=0, level=0.95)["n_units"] == 20
    ci = metric_intervals(grouped, CLASSES, n_boot=1000, seed=0, level=0.95)
    assert ci["n_units"] == 10
    assert ci["accuracy"]["low"] < metric_intervals(preds, CLASSES, n_boot=1000, seed=0, level=0.95)["accuracy"]["low"]


def test_missing_patient_ids_are_their_own_units_everywhere() -> None:
    """An empty patient id crashed the shortcut audit while the evaluation mapped it to its own unit."""
    true = ["COVID-19"] * 10 + ["Normal"] * 10
    patients = [f"p{k}" for k in range(18)] + [None, ""]
    full, border = table(true, true, patients), table(true, true[::-1], patients)
    result = shortcut_audit(full, border, CLASSES, SETTINGS, BOOTSTRAP)
    assert result["n_units"] == 20
    assert confidence_intervals(full, CLASSES, BOOTSTRAP)["n_units"] == 20


def test_summary_prints_the_pooled_estimate_with_its_interval() -> None:
    """Folds 0.0/1.0/0.95 ...: the pooled interval sat beside the folds' mean ± sd."""
    rng = np.random.default_rng(1)
    preds, folds = [], []
    for k in range(3):
        true = list(rng.choice(CLASSES, 20))
        pred = [t if rng.random() < 0.9 else CLASSES[1 - CLASSES.index(t)] for t in true]
        p = table(true, pred).assign(patient_id=[f"f{k}p{i}" for i in range(20)])
        preds.append(p)
        folds.append({"fold": str(k), "metrics": compute_metrics(p, CLASSES),
                      "ci": confidence_intervals(p, CLASSES, BOOTSTRAP)})  # fmt: skip
    summary = experiment_summary(folds, preds, CLASSES, BOOTSTRAP)
    text = summary_text(summary, CLASSES)
    pooled = pd.concat(preds)
    estimate = accuracy_score(pooled["true_label"], pooled["predicted_label"])
    line = next(x for x in text.splitlines() if x.strip().startswith("all") and "accuracy" in x)
    assert f"{estimate:.2f} [" in line
    assert "conditional on the 3 fitted models" in text and "test prevalence per fold" in text
    external = summarize_folds([f["metrics"] for f in folds], shared_test_set=True)
    assert "once per fold" in external["confusion_matrix_counts"]


def test_source_aligned_with_label_is_confounded_without_the_thumbnails(tmp_path: Path) -> None:
    """One source per class is flagged even when the thumbnail classifier cannot tell the sources apart."""
    rows = []
    rng = np.random.default_rng(0)
    for k in range(20):
        path = tmp_path / f"x{k}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (16, 16), dtype=np.uint8))
        rows.append({"image_id": f"x{k}", "source": "A" if k % 2 else "B", "label": CLASSES[k % 2],
                     "output_path": str(path)})  # fmt: skip
    frame = pd.DataFrame(rows)
    settings = {"folds": 2, "seed": 0, "flag_cramers_v": 0.5, "flag_balanced_accuracy": 0.8}
    result = source_check(frame, frame["image_id"], 4, settings)
    assert result["flag"] is True and result["confounded"] is True
    assert result["balanced_accuracy"] < 0.8 and result["cramers_v_corrected"] > 0.9
    # Bergsma's correction: labels nearly independent of 6 sources: the corrected V is the smaller, near 0
    counts = np.array([[5, 5], [4, 6], [6, 4], [5, 5], [5, 5], [6, 4]]) * 6
    chi2 = chi2_contingency(counts, correction=False)[0]
    assert np.sqrt(chi2 / counts.sum()) > bias_corrected_cramers_v(counts)
    assert bias_corrected_cramers_v(counts) < 0.1


def test_comparisons_carry_intervals_and_the_schema_states_the_rules() -> None:
    true = ["COVID-19"] * 10 + ["Normal"] * 10
    internal, external = table(true, true), table(true, true[:15] + ["COVID-19"] * 5)
    folds = [{"metrics": compute_metrics(p, CLASSES), "ci": confidence_intervals(p, CLASSES, BOOTSTRAP)}
             for p in (internal, external)]  # fmt: skip
    rows = side_by_side(folds[:1], folds[1:], CLASSES)
    macro = rows[rows["class"] == "macro avg"].iloc[0]
    assert np.isfinite(macro["internal_low"]) and macro["difference_low"] < macro["external_minus_internal"]
    assert macro["difference_high"] > macro["external_minus_internal"]
    # a baseline margin (model - baseline, same test units) is a paired interval, not a bare difference
    baseline = table(true, true[:12] + ["COVID-19"] * 8)
    margin = margin_intervals(internal, baseline, CLASSES, BOOTSTRAP)
    model_f1 = f1_score(true, true, average="macro")
    base_f1 = f1_score(baseline["true_label"], baseline["predicted_label"], average="macro")
    assert margin["macro_f1"]["estimate"] == pytest.approx(model_f1 - base_f1)
    assert margin["macro_f1"]["low"] < margin["macro_f1"]["estimate"] < margin["macro_f1"]["high"]
    assert margin["macro_f1"]["n_used"] == 1000
    schema = yaml.safe_load(SCHEMA.read_text())
    audit = schema["properties"]["audit"]["properties"]
    assert audit["bootstrap"]["properties"]["n"]["minimum"] >= 1000
    assert "chance_tolerance" in audit["border_only"]["properties"]
    assert "lower bound" in audit["border_only"]["properties"]["flag_margin"]["description"]


def test_a_warning_when_fewer_resamples_than_asked_define_a_difference(caplog: pytest.LogCaptureFixture) -> None:
    """One COVID-19 patient among 10: resamples without it leave the COVID-19 F1 (and its difference) undefined."""
    true = ["COVID-19"] + ["Normal"] * 9
    with caplog.at_level("WARNING", logger="cxrflow.uncertainty"):
        ci = paired_bootstrap({"a": table(true, true), "b": table(true, ["Normal"] * 10)}, CLASSES, n_boot=1000,
                              seed=0, level=0.95)  # fmt: skip
    used = ci["a - b"]["positive_f1"]["n_used"]
    assert 500 < used < 1000  # about 1 - (9/10)^10 = 65% of resamples draw the patient
    assert any("positive_f1 of a - b" in r.message and f"only {used} of 1000" in r.message for r in caplog.records)
