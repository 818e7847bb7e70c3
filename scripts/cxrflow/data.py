"""Load a split CSV into memory once, as uint8, so training never re-reads disk; mask it for the border-only control.

The split files (``results/splits/fold{k}/{train,val,test}.csv``) carry the
columns in :data:`SPLIT_COLUMNS`; ``path`` is an 8-bit grayscale PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

SPLIT_COLUMNS = ("image_id", "label", "patient_id", "path", "source")


def read_split_table(csv_path: str | Path, classes: Sequence[str]) -> pd.DataFrame:
    """Read a split CSV and refuse unknown labels: a typo must not become a silent class drop."""
    table = pd.read_csv(csv_path, dtype={"image_id": str, "patient_id": str, "label": str})
    missing = [c for c in SPLIT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing} (expected {list(SPLIT_COLUMNS)})")
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise ValueError(f"{csv_path}: labels {unknown} are not among the configured classes {list(classes)}")
    return table


def read_gray(path: str | Path, image_size: int | None = None) -> np.ndarray:
    """One image file as uint8 [H,W], resized to [S,S] when ``image_size`` is given.

    The one place an image file is read back after preprocessing (training, audits,
    duplicate search): a missing or undecodable file raises ValueError naming it.
    INTER_AREA because it is the alias-free choice for shrinking.
    """
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing or not an image)")
    if image_size is not None and image.shape != (image_size, image_size):
        image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return image


def load_split(
    csv_path: str | Path, classes: Sequence[str], image_size: int, mask: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Return (images uint8 [N,S,S,1], labels int [N] indexing ``classes``, table).

    An empty split (e.g. no validation set) yields zero-length arrays, not an error.
    ``mask`` ({fraction, fill}: the border-only control, :func:`mask_centre`)
    blanks the centre of every image here, at loading, so train, validation and
    test images of the control are masked alike.
    """
    table = read_split_table(csv_path, classes)
    images = np.zeros((len(table), image_size, image_size, 1), dtype=np.uint8)
    for i, path in enumerate(table["path"]):
        images[i, ..., 0] = read_gray(path, image_size)
    if mask is not None and len(images):
        images = mask_centre(images, mask["fraction"], mask["fill"])
    class_index = {name: i for i, name in enumerate(classes)}
    labels = table["label"].map(class_index).to_numpy(dtype=np.int64)
    return images, labels, table


def centre_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the central ``fraction`` of each side; at least one pixel of border stays.

    Rounded outwards so the masked share is never smaller than asked at small sizes.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"mask fraction must be in (0, 1), got {fraction}")
    border_y = math.floor(height * (1 - fraction) / 2 + 1e-9)  # 1e-9: 10 * (1 - 0.6) / 2 is 1.999...
    border_x = math.floor(width * (1 - fraction) / 2 + 1e-9)
    if border_y < 1 or border_x < 1:
        raise ValueError(
            f"masking the central {fraction:.0%} of {height}x{width} images leaves no border: "
            "lower the fraction or raise the image size"
        )
    return border_y, height - border_y, border_x, width - border_x


def mask_centre(images: np.ndarray, fraction: float, fill: int) -> np.ndarray:
    """A copy of ``images`` [N,H,W] or [N,H,W,C] with the central ``fraction`` of height and width set to ``fill``.

    The fill is one constant for every image: anything computed from the image
    itself (its mean, say) would carry the hidden lungs' brightness back in.
    Applied after resizing to the model input, so the fraction is of what the
    model sees, and before augmentation, which then moves frame and mask together.
    """
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected images [N,H,W] or [N,H,W,C], got shape {arr.shape}")
    y0, y1, x0, x1 = centre_box(arr.shape[1], arr.shape[2], fraction)
    out = arr.copy()
    out[:, y0:y1, x0:x1] = fill
    return out
