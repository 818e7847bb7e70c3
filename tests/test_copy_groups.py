"""The pHash distance reported per pair, and duplicate pairs turned into split groups."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.copy_groups import (
    duplicate_groups,
    hamming,
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


def test_planted_copy_is_near_and_unrelated_images_far(image_files: tuple[list[str], list[Path]]) -> None:
    _, paths = image_files
    hashes = perceptual_hashes(paths)
    assert hashes.dtype == np.uint64 and hashes.shape == (13,)
    assert hamming(hashes[3], hashes[12]) <= 8  # the re-published copy of image 3
    # unrelated images are far apart (random 64-bit hashes: ~32 bits)
    d = hamming(hashes[:12, None], hashes[None, :12])
    assert d[np.triu_indices(12, 1)].min() > 16


def test_duplicate_groups_are_connected_components() -> None:
    pairs = pd.DataFrame({"image_id_a": ["c", "b", "x"], "image_id_b": ["b", "a", "y"], "distance": [1, 2, 0]})
    groups = duplicate_groups(pairs)
    assert groups == {"a": "dup:a", "b": "dup:a", "c": "dup:a", "x": "dup:x", "y": "dup:x"}
    assert duplicate_groups(pairs.iloc[::-1]) == groups  # order-independent keys
    assert duplicate_groups(pairs.iloc[:0]) == {}


def test_hamming_matches_bit_counts() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2**63, size=(2, 200), dtype=np.uint64)
    expected = [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b)]
    assert hamming(a, b).tolist() == expected


def test_bad_input_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        perceptual_hashes([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="2-D"):
        phash(np.zeros((4, 4, 3), np.uint8))


def test_remembered_hashes_equal_fresh_ones(tmp_path: Path) -> None:
    """The pHash column reads each cropped image once: later runs take it from the cache, unchanged."""
    from cxrflow.copy_cache import CopyCache
    from cxrflow.copy_groups import perceptual_hashes, remembered_hashes

    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"{k}.png"))
        cv2.imwrite(paths[-1], np.random.default_rng(k).integers(0, 255, (40, 40), dtype=np.uint8))
    first = CopyCache(tmp_path / "cache")
    assert remembered_hashes(paths, first) == list(perceptual_hashes(paths))
    first.save()
    again = CopyCache(tmp_path / "cache")
    assert [again.get("phash", again.file_digest(p)) for p in paths] == list(perceptual_hashes(paths))
    assert remembered_hashes(paths, again) == list(perceptual_hashes(paths))
