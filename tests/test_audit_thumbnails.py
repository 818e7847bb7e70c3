"""The data audit's thumbnails, remembered between runs: the same features as read from scratch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrflow import baselines
from cxrflow.data_audit import thumbnail_rows


def _write(path: Path, seed: int, side: int = 32) -> str:
    img = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return str(path)


def test_remembered_thumbnails_equal_a_fresh_read(tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{i}.png", i) for i in range(5)]
    cache = tmp_path / "cache"
    fresh = baselines.thumbnail_features(baselines.load_gray_images(paths), 8)
    np.testing.assert_array_equal(thumbnail_rows(paths, 8), fresh)
    np.testing.assert_array_equal(thumbnail_rows(paths, 8, cache), fresh)  # cache written
    _write(tmp_path / "2.png", 99)  # one image rewritten, one added, one removed
    paths = [*paths[1:], _write(tmp_path / "5.png", 5)]
    expected = baselines.thumbnail_features(baselines.load_gray_images(paths), 8)
    np.testing.assert_array_equal(thumbnail_rows(paths, 8, cache), expected)
    np.testing.assert_array_equal(thumbnail_rows(paths, 8, cache), expected)  # all from the cache
    (cache / "thumbnails_8.npz").write_bytes(b"cut short")  # a damaged cache is only a slower run
    np.testing.assert_array_equal(thumbnail_rows(paths, 8, cache), expected)
    with pytest.raises(ValueError, match="preprocess first"):
        thumbnail_rows([*paths, _write(tmp_path / "big.png", 7, side=40)], 8, cache)
