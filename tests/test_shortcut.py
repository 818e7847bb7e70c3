"""The shortcut audit: the border-only mask, chance, the paired bootstrap and the verdict (fast),
and, through the real `snakemake`, the flag on demo data whose Normal images carry black bars
and no flag on a variant with bars (and framing) alike in both classes (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.data import centre_box, load_split, mask_centre
from cxrflow.shortcut import (
    audit_text,
    chance_f1,
    experiment_audit,
    experiment_audit_text,
    paired_bootstrap,
    shortcut_audit,
    verdict,
)
from workflow_helpers import run_snakemake, shipped_demo, shipped_demo_config

CLASSES = ["COVID-19", "Normal"]
SETTINGS = {
    "enabled": True,
    "mask": 0.8,
    "fill": 128,
    "metric": "macro_f1",
    "flag_margin": 0.1,
    "chance_tolerance": 0.1,
}
BOOTSTRAP = {"n": 1000, "seed": 0, "level": 0.95}


def predictions(true: list[str], predicted: list[str]) -> pd.DataFrame:
    """A predictions.csv table, one patient per image."""
    n = len(true)
    prob = [0.9 if p == CLASSES[0] else 0.1 for p in predicted]
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "patient_id": [f"p{k}" for k in range(n)],
                         "true_label": true, "predicted_label": predicted, "prob_COVID-19": prob,
                         "prob_Normal": [1 - p for p in prob]})  # fmt: skip


def test_mask_centre_keeps_only_the_frame() -> None:
    images = np.full((2, 32, 32, 1), 7, np.uint8)
    out = mask_centre(images, 0.8, 128)
    assert images.max() == 7 and out.shape == images.shape  # input untouched
    assert centre_box(32, 32, 0.8) == (3, 29, 3, 29)
    assert (out[:, 3:29, 3:29] == 128).all()
    assert (out[:, :3] == 7).all() and (out[:, 29:] == 7).all() and (out[:, :, :3] == 7).all()
    assert centre_box(10, 10, 0.6) == (2, 8, 2, 8)  # 10 * 0.4 / 2 is 1.999..., still a 2-pixel frame
    np.testing.assert_array_equal(mask_centre(images[..., 0], 0.8, 128), out[..., 0])
    with pytest.raises(ValueError, match="leaves no border"):
        mask_centre(np.zeros((1, 8, 8), np.uint8), 0.9, 0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        centre_box(32, 32, 1.0)


def test_load_split_masks_every_image(tmp_path: Path) -> None:
    rows = []
    for i in range(3):
        path = tmp_path / f"x{i}.png"
        cv2.imwrite(str(path), np.full((40, 40), 200, np.uint8))
        rows.append((f"x{i}", CLASSES[i % 2], f"p{i}", str(path), "src"))
    pd.DataFrame(rows, columns=["image_id", "label", "patient_id", "path", "source"]).to_csv(
        tmp_path / "split.csv", index=False
    )
    plain, _, _ = load_split(tmp_path / "split.csv", CLASSES, 20)
    masked, labels, _ = load_split(tmp_path / "split.csv", CLASSES, 20, {"fraction": 0.5, "fill": 0})
    assert (plain == 200).all() and list(labels) == [0, 1, 0]
    assert (masked[:, 5:15, 5:15] == 0).all() and (masked[:, :5] == 200).all()


def test_chance_is_the_best_label_blind_f1() -> None:
    chance = chance_f1(["COVID-19"] * 4 + ["Normal"] * 6, CLASSES)
    assert chance["macro_f1"] == pytest.approx(0.5)  # a guess with the class frequencies
    assert chance["positive_f1"] == pytest.approx(2 * 0.4 / 1.4)  # always COVID-19
    three = chance_f1(["a", "a", "b", "c"], ["a", "b", "c"])
    assert three["macro_f1"] == pytest.approx(1 / 3) and three["positive_f1"] == pytest.approx(2 / 3)


def test_paired_bootstrap() -> None:
    true = ["COVID-19"] * 10 + ["Normal"] * 10
    perfect = predictions(true, true)
    half = predictions(true, ["COVID-19"] * 5 + ["Normal"] * 10 + ["COVID-19"] * 5)
    ci = paired_bootstrap({"full": perfect, "border_only": half}, CLASSES, n_boot=500, seed=0, level=0.95)
    full = ci["full"]["macro_f1"]
    assert full["estimate"] == 1.0 and full["high"] == 1.0 and 0.5 < full["low"] < 1.0  # 20 patients prove no 1.0
    assert ci["border_only"]["macro_f1"]["estimate"] == pytest.approx(0.5)
    diff = ci["full - border_only"]["macro_f1"]
    assert diff["estimate"] == pytest.approx(0.5) and 0 < diff["low"] < 0.5 < diff["high"]
    again = paired_bootstrap({"full": perfect, "border_only": half}, CLASSES, n_boot=500, seed=0, level=0.95)
    assert again == ci
    with pytest.raises(ValueError, match="same test units"):
        paired_bootstrap({"a": perfect, "b": perfect.iloc[:5]}, CLASSES, n_boot=10, seed=0, level=0.95)


def interval(estimate: float, low: float, high: float) -> dict[str, float]:
    return {"estimate": estimate, "low": low, "high": high}


@pytest.mark.parametrize(
    ("full", "border", "difference", "expected"),
    [
        (interval(0.89, 0.72, 1.0), interval(0.78, 0.58, 0.94), interval(0.11, 0.0, 0.25), "shortcut"),
        (interval(0.6, 0.3, 0.8), interval(0.9, 0.7, 1.0), interval(-0.3, -0.5, 0.0), "shortcut"),
        (interval(1.0, 1.0, 1.0), interval(0.75, 0.6, 0.9), interval(0.25, 0.12, 0.4), "borders informative"),
        (interval(0.95, 0.83, 1.0), interval(0.33, 0.23, 0.43), interval(0.62, 0.45, 0.75), "no shortcut"),
        (interval(0.5, 0.3, 0.7), interval(0.5, 0.3, 0.7), interval(0.0, -0.2, 0.2), "inconclusive"),
        (interval(0.7, 0.55, 0.85), interval(0.65, 0.45, 0.8), interval(0.05, -0.1, 0.2), "inconclusive"),
    ],
)
def test_verdict(full: dict, border: dict, difference: dict, expected: str) -> None:
    name, flag, sentence = verdict(
        full, border, difference, 0.5, flag_margin=0.1, chance_tolerance=0.1, metric="macro F1", n_units=20
    )
    assert name == expected and flag == (expected == "shortcut")
    assert sentence.startswith(
        "Shortcut flagged" if flag else ("Shortcut audit inconclusive" if expected == "inconclusive" else "No shortcut")
    )


def test_a_model_that_learns_nothing_never_flags() -> None:
    """Full and border-only models both predicting one class are 'close', but at chance: no flag."""
    true = ["COVID-19"] * 8 + ["Normal"] * 12
    constant = predictions(true, ["Normal"] * 20)
    result = shortcut_audit(constant, constant, CLASSES, SETTINGS, BOOTSTRAP)
    assert result["verdict"] == "inconclusive" and result["flag"] is False
    assert "not clearly above chance" in result["sentence"]
    learned = predictions(true, true)
    result = shortcut_audit(learned, constant, CLASSES, SETTINGS, BOOTSTRAP)
    assert result["verdict"] == "inconclusive" and "too few test patients: 20" in result["sentence"]
    many = ["COVID-19"] * 32 + ["Normal"] * 48  # 80 patients show the constant control near chance
    result = shortcut_audit(predictions(many, many), predictions(many, ["Normal"] * 80), CLASSES, SETTINGS, BOOTSTRAP)
    assert result["verdict"] == "no shortcut" and result["flag"] is False
    result = shortcut_audit(learned, learned, CLASSES, {**SETTINGS, "metric": "positive_f1"}, BOOTSTRAP)
    assert result["verdict"] == "shortcut" and result["flag"] is True
    text = audit_text({"experiment": "e", "fold": "0", **result})
    assert "Shortcut flagged" in text and "border-only control" in text and "F1 of the positive class" in text
    with pytest.raises(ValueError, match="different test images"):
        shortcut_audit(learned, learned.iloc[:5], CLASSES, SETTINGS, BOOTSTRAP)


def test_experiment_verdict_pools_the_folds() -> None:
    """Eight folds of 10 test patients, each too small to decide; pooled (each fold's patients kept apart) they flag.

    The control predicts exactly what the model does (7 of 10 right): the frame explains
    the whole score, which one fold cannot show and 80 patients can.
    """
    true = ["COVID-19"] * 5 + ["Normal"] * 5
    guess = ["Normal", *true[1:3], "Normal", *true[4:6], "COVID-19", *true[7:]]  # 3 wrong
    folds = [predictions(true, guess) for _ in range(8)]  # equal image and patient ids in every fold
    audits = [shortcut_audit(f, f, CLASSES, SETTINGS, BOOTSTRAP) | {"fold": str(k)} for k, f in enumerate(folds)]
    assert [a["verdict"] for a in audits] == ["inconclusive"] * 8
    pooled = experiment_audit(folds, folds, audits, CLASSES, SETTINGS, BOOTSTRAP)
    assert pooled["verdict"] == "shortcut" and pooled["flag"] is True
    assert pooled["n_test"] == 80 and pooled["folds"] == 8 and pooled["fold"] == "all"
    assert pooled["full"]["macro_f1"]["estimate"] == pytest.approx(audits[0]["full"]["macro_f1"]["estimate"])
    assert (
        pooled["border_only"]["macro_f1"]["low"]
        > pooled["chance"]["macro_f1"]
        >= audits[0]["border_only"]["macro_f1"]["low"]
    )
    assert pooled["per_fold"] == [{"fold": str(k), "verdict": "inconclusive", "flag": False} for k in range(8)]
    assert pooled["flagged_folds"] == 0
    text = experiment_audit_text({"experiment": "e", **pooled})
    assert "8 folds' test predictions pooled" in text and "0 of 8 flagged" in text and "fold 2: inconclusive" in text
    one = experiment_audit(folds[:1], folds[:1], audits[:1], CLASSES, SETTINGS, BOOTSTRAP)
    keys = ("full", "border_only", "difference", "verdict")
    assert {k: one[k] for k in keys} == {k: audits[0][k] for k in keys}  # one fold: that fold's audit
    with pytest.raises(ValueError, match="fold audits"):
        experiment_audit(folds, folds, audits[:1], CLASSES, SETTINGS, BOOTSTRAP)


# ------------------------------------------------------------------ through snakemake
# The shipped demo (100 + 100 images, VGG19 from scratch at 32x32) drawn small and cropped in
# batch jobs (workflow_helpers.shipped_demo_config); tests/test_demo.py runs it as shipped and
# sees the shortcut flagged. The "bars alike" variant gives the COVID-19 images the Normal
# images' bars *and* their square framing (demo.covid.size_range [1, 1]): the mixed sizes of
# the COVID-19 collection are a second shortcut, which the audit rightly sees (docs/demo.md).
# It trains 12 of the demo experiment's 20 epochs: the model has learned the images by then
# (validation accuracy 1.0 from about epoch 10), and what this variant tests is the control.
AUDIT = "results/experiments/demo_vgg19/fold0/shortcut_audit.json"
ALIKE_EPOCHS = 12


@pytest.mark.slow
def test_demo_bars_alike_in_both_classes_flag_nothing(tmp_path: Path) -> None:
    cfg = shipped_demo_config(bar_fraction=0.9, size_range=[1, 1])
    cfg["experiments"] = {name: {**exp, "epochs": ALIKE_EPOCHS} for name, exp in shipped_demo()["experiments"].items()}
    run_snakemake(tmp_path, cfg, AUDIT)
    audit = json.loads((tmp_path / AUDIT).read_text())
    assert audit["flag"] is False, audit["sentence"]
    assert audit["border_only"]["macro_f1"]["low"] <= audit["chance"]["macro_f1"]  # the frame says nothing
    assert audit["full"]["macro_f1"]["low"] > audit["chance"]["macro_f1"]  # the model did learn the images
    assert not (tmp_path / "results/trust_summary.csv").exists()  # only the audit was asked for
