"""Trivial baselines: feature shapes, the border-only mask, and the real-data numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from cxrflow.baselines import (
    border_ring_features,
    load_gray_images,
    logistic_baseline,
    mask_center,
    thumbnail_features,
)


def test_thumbnail_features_shape_and_range() -> None:
    imgs = np.random.default_rng(0).integers(0, 256, size=(3, 64, 48), dtype=np.uint8)
    X = thumbnail_features(imgs, 8)
    assert X.shape == (3, 64) and X.min() >= 0 and X.max() <= 1
    np.testing.assert_array_equal(X, thumbnail_features(imgs[..., None], 8))
    flat = np.full((1, 32, 32), 255, np.uint8)
    np.testing.assert_allclose(thumbnail_features(flat, 4), 1.0)
    with pytest.raises(ValueError, match="uint8"):
        thumbnail_features(imgs.astype(np.float32), 8)
    with pytest.raises(ValueError, match="grayscale"):
        thumbnail_features(np.zeros((2, 8, 8, 3), np.uint8), 4)


def test_mask_center_keeps_only_the_border() -> None:
    imgs = np.full((2, 20, 30, 3), 200, np.uint8)
    out = mask_center(imgs, 4)
    assert out.shape == imgs.shape and imgs.min() == 200  # input untouched
    assert (out[:, 4:16, 4:26] == 0).all()
    assert (out[:, :4] == 200).all() and (out[:, -4:] == 200).all()
    assert (out[:, :, :4] == 200).all() and (out[:, :, -4:] == 200).all()
    with pytest.raises(ValueError, match="no centre"):
        mask_center(imgs, 10)
    ring = border_ring_features(np.full((1, 40, 40), 255, np.uint8), 10, 4)
    # 4x4 thumbnail of a 40x40 ring 10 wide: the 2x2 centre cells are black
    np.testing.assert_allclose(ring.reshape(4, 4)[1:3, 1:3], 0)
    assert ring.reshape(4, 4)[0, 0] == pytest.approx(1)


def test_logistic_baseline_learns_a_separable_signal() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 10))
    y = np.where(X[:, 0] > 0, "COVID-19", "Normal")
    probs = logistic_baseline(X[:60], y[:60], X[60:], seed=0)
    assert probs.shape == (20, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1)
    assert (np.array(["COVID-19", "Normal"])[probs.argmax(1)] == y[60:]).mean() > 0.85
    with pytest.raises(ValueError, match="two classes"):
        logistic_baseline(X[:5], ["a"] * 5, X[5:], seed=0)


def test_load_gray_images(tmp_path: Path) -> None:
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((9, 8), np.uint8))
    assert load_gray_images([tmp_path / "a.png"]).shape == (1, 8, 8)
    with pytest.raises(ValueError, match="preprocess first"):
        load_gray_images([tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.raises(ValueError, match="cannot read"):
        load_gray_images([tmp_path / "none.png"])


@pytest.mark.shared_data
def test_seed_data_baselines(shared_data: Path) -> None:
    """The original experiment's data: 92 COVID-19 + first 99 normal, 5-fold stratified CV."""
    root = shared_data / "seed-covid19-detection"
    covid = pd.read_csv(root / "covid_dataset.csv")
    normal = pd.read_csv(root / "normal_xray_dataset.csv").head(99)
    paths = [root / "covid_adjusted" / f for f in covid.filename] + [
        root / "normal_dataset" / f for f in normal.filename
    ]
    y = np.array(["COVID-19"] * len(covid) + ["Normal"] * len(normal))
    images = load_gray_images(paths)
    assert images.shape == (191, 224, 224)
    results = {}
    for name, X in {
        "thumbnail": thumbnail_features(images, 28),
        "border_ring": border_ring_features(images, 24, 28),
    }.items():
        pred = np.empty(len(y), dtype=y.dtype)  # logistic_baseline out of fold, 5 stratified folds
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
            probs = logistic_baseline(X[train], y[train], X[test], 0)
            pred[test] = np.unique(y[train])[probs.argmax(axis=1)]
        results[name] = (f1_score(y, pred, pos_label="COVID-19"), accuracy_score(y, pred))
    print(results)
    f1, acc = results["thumbnail"]
    assert f1 == pytest.approx(0.82, abs=0.06) and acc == pytest.approx(0.83, abs=0.06)
    f1_ring, acc_ring = results["border_ring"]
    assert f1_ring == pytest.approx(0.75, abs=0.06) and acc_ring == pytest.approx(0.75, abs=0.06)
