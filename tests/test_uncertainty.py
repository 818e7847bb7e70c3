"""Patient-level bootstrap CIs: reproducible, contain the estimate, resample patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from cxrflow.uncertainty import bootstrap_auc, ci_table, metric_intervals

CLASSES = ["COVID-19", "Normal"]


def _predictions(n_patients: int = 60, seed: int = 0, classes: list[str] = CLASSES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for pat in range(n_patients):
        true = classes[pat % len(classes)]
        for img in range(rng.integers(1, 4)):
            logits = rng.normal(size=len(classes))
            logits[classes.index(true)] += 1.5
            prob = np.exp(logits) / np.exp(logits).sum()
            rows.append(
                {
                    "image_id": f"p{pat}_{img}",
                    "patient_id": f"p{pat}",
                    "true_label": true,
                    "predicted_label": classes[int(prob.argmax())],
                    **{f"prob_{c}": round(float(v), 2) for c, v in zip(classes, prob)},  # rounded: ties
                }
            )
    return pd.DataFrame(rows)


def test_reproducible_and_estimate_inside_ci() -> None:
    preds = _predictions()
    a = metric_intervals(preds, CLASSES, n_boot=1000, seed=7, level=0.95)
    b = metric_intervals(preds, CLASSES, n_boot=1000, seed=7, level=0.95)
    c = metric_intervals(preds, CLASSES, n_boot=1000, seed=8, level=0.95)
    assert a == b
    # one model's intervals are analytic: the resampling seed is recorded, and changes nothing else
    assert a != c and {k: v for k, v in a.items() if k != "seed"} == {k: v for k, v in c.items() if k != "seed"}
    assert a["n_patients"] == 60 and a["unit"] == "split group" and a["level"] == 0.95
    table = ci_table(a)
    assert len(table) == 2 + 4 * len(CLASSES)
    assert (table.low <= table.estimate).all() and (table.estimate <= table.high).all()
    assert (table.high - table.low > 0).all()
    # estimates are sklearn's on the full data
    y, p = preds.true_label, preds.predicted_label
    assert a["per_class"]["COVID-19"]["f1"]["estimate"] == pytest.approx(f1_score(y, p, pos_label="COVID-19"))
    assert a["per_class"]["COVID-19"]["roc_auc"]["estimate"] == pytest.approx(
        roc_auc_score(y == "COVID-19", preds["prob_COVID-19"])
    )
    narrow = metric_intervals(preds, CLASSES, n_boot=1000, seed=7, level=0.5)
    assert narrow["accuracy"]["high"] - narrow["accuracy"]["low"] < a["accuracy"]["high"] - a["accuracy"]["low"]


def testbootstrap_auc_equals_weighted_sklearn() -> None:
    preds = _predictions(30, seed=3)
    patients, pat_of_img = np.unique(preds.patient_id, return_inverse=True)
    draws = np.random.default_rng(0).multinomial(len(patients), np.full(len(patients), 1 / len(patients)), size=5)
    positive = (preds.true_label == "COVID-19").to_numpy()
    score = preds["prob_COVID-19"].to_numpy()
    ours = bootstrap_auc(positive, score, pat_of_img, draws.astype(float))
    for b, draw in enumerate(draws):
        w = draw[pat_of_img].astype(float)
        keep = w > 0
        assert ours[b] == pytest.approx(roc_auc_score(positive[keep], score[keep], sample_weight=w[keep]))


def test_patients_are_the_resampling_unit() -> None:
    # 10 patients x 10 identical images: patient-level bootstrap has n = 10, not 100
    rows = []
    for pat in range(10):
        correct = pat < 7
        for _img in range(10):
            rows.append(
                {
                    "patient_id": f"p{pat}",
                    "true_label": "COVID-19",
                    "predicted_label": "COVID-19" if correct else "Normal",
                    "prob_COVID-19": 0.9 if correct else 0.1,
                    "prob_Normal": 0.1 if correct else 0.9,
                }
            )
    res = metric_intervals(pd.DataFrame(rows), CLASSES, n_boot=500, seed=0, level=0.95)
    acc = res["accuracy"]
    assert acc["estimate"] == pytest.approx(0.7)
    assert acc["high"] - acc["low"] > 0.4  # image-level resampling would give ~0.18
    # only COVID-19 is true: its AUC, Normal's recall and the macro F1 are undefined, with no interval
    assert np.isnan(res["per_class"]["COVID-19"]["roc_auc"]["estimate"])
    assert np.isnan(res["per_class"]["Normal"]["recall"]["low"])
    assert np.isnan(res["macro_f1"]["estimate"]) and "absent" in res["macro_f1"]["refused"]


def test_three_classes() -> None:
    classes = ["COVID-19", "Pneumonia", "Normal"]
    preds = _predictions(45, seed=5, classes=classes)
    res = metric_intervals(preds, classes, n_boot=200, seed=1, level=0.9)
    assert set(res["per_class"]) == set(classes)
    est = metric_intervals(preds, classes, n_boot=0, seed=0, level=0.95)  # the point estimates alone
    assert res["accuracy"]["estimate"] == est["accuracy"]["estimate"]


def test_bad_input_raises() -> None:
    preds = _predictions(10)
    with pytest.raises(ValueError, match="lack columns"):
        metric_intervals(preds.drop(columns="prob_Normal"), CLASSES, n_boot=10, seed=0, level=0.95)
    bad = preds.copy()
    bad.loc[0, "true_label"] = "Flu"
    with pytest.raises(ValueError, match="outside classes"):
        metric_intervals(bad, CLASSES, n_boot=10, seed=0, level=0.95)
    with pytest.raises(ValueError, match="level"):
        metric_intervals(preds, CLASSES, n_boot=10, seed=0, level=95)
