"""Near-duplicate search: a re-published copy is found, unrelated images are not."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.dedup import (
    duplicate_groups,
    hamming,
    near_duplicate_pairs,
    perceptual_hashes,
    phash,
)


def _radiograph_like(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """Smooth random structure (what pHash sees of a chest film), uint8."""
    noise = rng.random((size // 8, size // 8)).astype(np.float32)
    img = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 6)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


@pytest.fixture()
def image_files(tmp_path: Path) -> tuple[list[str], list[Path]]:
    rng = np.random.default_rng(0)
    ids, paths = [], []
    for k in range(12):
        p = tmp_path / f"src_a_patient{k}.png"
        cv2.imwrite(str(p), _radiograph_like(rng))
        ids.append(f"a/{k}")
        paths.append(p)
    # Planted duplicate of image 3: another collection re-published it smaller, as
    # a JPEG, a little brighter, under another patient id.
    original = cv2.imread(str(paths[3]), cv2.IMREAD_GRAYSCALE)
    copy = cv2.resize(original, (197, 197), interpolation=cv2.INTER_AREA)
    copy = cv2.convertScaleAbs(copy, alpha=1.05, beta=6)
    p = tmp_path / "src_b_other_patient.jpg"
    cv2.imwrite(str(p), copy, [cv2.IMWRITE_JPEG_QUALITY, 70])
    ids.append("b/x")
    paths.append(p)
    return ids, paths


def test_planted_duplicate_found_and_unrelated_not(image_files: tuple[list[str], list[Path]]) -> None:
    ids, paths = image_files
    hashes = perceptual_hashes(paths)
    assert hashes.dtype == np.uint64 and hashes.shape == (13,)
    pairs = near_duplicate_pairs(ids, hashes, max_distance=8)
    assert list(pairs.columns) == ["image_id_a", "image_id_b", "distance"]
    assert set(zip(pairs.image_id_a, pairs.image_id_b)) == {("a/3", "b/x")}
    # unrelated images are far apart (random 64-bit hashes: ~32 bits)
    d = hamming(hashes[:12, None], hashes[None, :12])
    assert d[np.triu_indices(12, 1)].min() > 16


def test_duplicate_groups_are_connected_components() -> None:
    pairs = pd.DataFrame(
        {"image_id_a": ["c", "b", "x"], "image_id_b": ["b", "a", "y"], "distance": [1, 2, 0]}
    )
    groups = duplicate_groups(pairs)
    assert groups == {"a": "dup:a", "b": "dup:a", "c": "dup:a", "x": "dup:x", "y": "dup:x"}
    assert duplicate_groups(pairs.iloc[::-1]) == groups  # order-independent keys
    assert duplicate_groups(pairs.iloc[:0]) == {}


def test_pairs_match_brute_force_and_scale() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, size=1500, dtype=np.uint64)
    # plant near copies: flip 0..5 bits of some hashes
    copies = base[:40].copy()
    for i in range(40):
        for bit in rng.choice(64, size=i % 6, replace=False):
            copies[i] ^= np.uint64(1) << np.uint64(bit)
    hashes = np.concatenate([base, copies])
    ids = [f"i{k}" for k in range(len(hashes))]
    pairs = near_duplicate_pairs(ids, hashes, max_distance=5)
    d = hamming(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(d <= 5, k=1))
    assert set(zip(pairs.image_id_a, pairs.image_id_b)) == {(ids[a], ids[b]) for a, b in zip(i, j)}
    assert len(pairs) >= 40
    # 30k hashes (the brief's scale) in well under a minute
    big = rng.integers(0, 2**63, size=30_000, dtype=np.uint64)
    t = time.perf_counter()
    near_duplicate_pairs([str(k) for k in range(len(big))], big, max_distance=4)
    assert time.perf_counter() - t < 60


def test_bad_input_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        perceptual_hashes([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="unique"):
        near_duplicate_pairs(["a", "a"], np.zeros(2, np.uint64), 3)
    with pytest.raises(ValueError, match="ids but"):
        near_duplicate_pairs(["a"], np.zeros(2, np.uint64), 3)
    with pytest.raises(ValueError, match="2-D"):
        phash(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.shared_data
def test_real_cross_collection_copies(shared_data: Path) -> None:
    """The seed's covid_adjusted/ images are cropped, resized re-encodings of ieee8023 files.

    Cropping the black border moves the frame, so not every copy stays within 4 bits
    (measured: 42 of 72), while unrelated normal radiographs almost never do.
    """
    seed_dir = shared_data / "seed-covid19-detection"
    ieee = shared_data / "ieee8023-covid-chestxray-2020-03-24" / "images"
    covid = pd.read_csv(seed_dir / "covid_dataset.csv").filename
    copies = [(f, f[: -len(".jpg")]) for f in covid if (ieee / f[: -len(".jpg")]).is_file()]
    normal = pd.read_csv(seed_dir / "normal_xray_dataset.csv").filename.head(99)
    ids = (
        [f"seed/{a}" for a, _ in copies] + [f"ieee/{b}" for _, b in copies] + [f"normal/{n}" for n in normal]
    )
    paths = (
        [seed_dir / "covid_adjusted" / a for a, _ in copies]
        + [ieee / b for _, b in copies]
        + [seed_dir / "normal_dataset" / n for n in normal]
    )
    pairs = near_duplicate_pairs(ids, perceptual_hashes(paths), max_distance=4)
    found = {(a, b) for a, b in zip(pairs.image_id_a, pairs.image_id_b)}
    recall = sum((f"seed/{a}", f"ieee/{b}") in found for a, b in copies) / len(copies)
    normal_pairs = sum(a.startswith("normal/") and b.startswith("normal/") for a, b in found)
    print(f"copies {len(copies)}, found {recall:.2f}, normal-normal pairs {normal_pairs}")
    assert len(copies) == 72
    assert recall >= 0.5
    assert normal_pairs <= 2
