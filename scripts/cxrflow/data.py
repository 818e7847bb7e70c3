"""Load a split CSV into memory once, as uint8, so training never re-reads disk.

The split files (``results/splits/fold{k}/{train,val,test}.csv``) carry the
columns in :data:`SPLIT_COLUMNS`; ``path`` is an 8-bit grayscale PNG.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .shortcut import mask_centre

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


def read_gray(path: str | Path, image_size: int) -> np.ndarray:
    """One image as uint8 [S,S]; INTER_AREA because it is the alias-free choice for shrinking."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or not an image)")
    if image.shape != (image_size, image_size):
        image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    return image


def load_split(
    csv_path: str | Path, classes: Sequence[str], image_size: int, mask: Mapping[str, float] | None = None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Return (images uint8 [N,S,S,1], labels int [N] indexing ``classes``, table).

    An empty split (e.g. no validation set) yields zero-length arrays, not an error.
    ``mask`` ({fraction, fill}: the border-only control, ``shortcut.mask_centre``)
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


def open_log(log_path: str | Path, name: str = "cxrflow") -> logging.Logger:
    """A logger writing to the rule's log file (appending: a resumed job keeps the first run's lines)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    target = str(Path(log_path).resolve())
    if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        return logger  # already attached (train and evaluate in one process): no doubled lines
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(handler)
    return logger
