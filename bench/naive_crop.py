"""REPRODUCTION of the original blog post's black-bar crop, bugs included. Timing only.

Never imported by the package and never used for data: it exists so that
``bench/crop_kernel.py`` can show what the vectorised ``cxrflow.crop`` replaced.
Kept deliberately faithful to the original:
  * per-pixel Python loops computing each pixel's mean channel value;
  * protected rows/columns hard-coded to 200..800 (1,024-pixel images);
  * deleting from the list being iterated, so the row after a removed one is skipped (bug 1);
  * symmetric trim ``img[d // 2 : -(d // 2)]``, empty when the difference is 1 (bug 2);
  * square computed from the counts of removed rows/columns, not the shape (bug 3);
  * columns scanned with the row count and row length: square images only (bug 4).
"""

from __future__ import annotations

import cv2
import numpy as np

THRESHOLD = 40
FRACTION = 0.5
PROTECT_LO, PROTECT_HI = 200, 800  # hard-coded for 1,024-pixel images


def pixel_mean(px: np.ndarray) -> float:
    """One numpy call per pixel, as a notebook writes it (`np.mean(img[i][j])`).

    A hand-unrolled `(int(px[0]) + int(px[1]) + int(px[2])) / 3` runs ~7x faster
    (about 1.2 s per image here) but is not what the article timed at 14 s.
    """
    return float(np.mean(px))


def naive_crop(img: np.ndarray, size: int = 224) -> np.ndarray:
    """The original algorithm, step by step (about 14 s for a 1024x1024 image in the post)."""
    n_rows = len(img)
    row_len = len(img[0])

    black_rows = []
    for i in range(n_rows):
        dark = 0
        for j in range(row_len):
            if pixel_mean(img[i][j]) < THRESHOLD:
                dark += 1
        if dark > FRACTION * row_len and not PROTECT_LO <= i <= PROTECT_HI:
            black_rows.append(i)

    black_cols = []
    for j in range(n_rows):  # bug 4: the row count
        dark = 0
        for i in range(row_len):  # bug 4: the row length
            if pixel_mean(img[i][j]) < THRESHOLD:
                dark += 1
        if dark > FRACTION * row_len and not PROTECT_LO <= j <= PROTECT_HI:
            black_cols.append(j)

    rows = list(range(n_rows))
    for i in rows:  # bug 1: removing while iterating skips the next row
        if i in black_rows:
            rows.remove(i)
    cols = list(range(row_len))
    for j in cols:
        if j in black_cols:
            cols.remove(j)
    img = img[rows][:, cols]

    # bug 3: the square is computed from how many lines were removed, not from the shape
    d = (n_rows - len(rows)) - (row_len - len(cols))
    if d > 0:  # more rows removed: the image is wider, trim columns
        img = img[:, d // 2 : -(d // 2)]  # bug 2: d == 1 gives [0:-0], an empty image
    elif d < 0:
        d = -d
        img = img[d // 2 : -(d // 2)]
    if img.size == 0 or img.shape[0] != img.shape[1]:
        raise ValueError("not square")  # the original silently dropped such images
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
