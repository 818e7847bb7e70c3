"""Augmented-view bank: the frozen base's features of K seeded augmented views per image, once.

With the base frozen, every epoch of the original experiment pushes the same images
through the same fixed base; only the augmentation differs. The bank computes the
base's features for K augmented views of each training image (OpenCV warps drawn from
``numpy.random.default_rng([seed, BANK_STREAM, view])``, so view k is the same in every
run and whatever K is), and the validation images once, unaugmented. The head then
trains all epochs on features, each epoch drawing one view per image
(:class:`BankBatches`). About K x N forward passes instead of epochs x N.

It approximates on-the-fly augmentation (K views, not a fresh draw every epoch), so it
is opt-in (``bank_views``) and ``bench/train_speed.py`` measures what it costs in F1.

Each view is saved as its own ``.npy`` (written under a temporary name, then renamed)
beside a fingerprint of what the features depend on: a killed build resumes at the
first missing view, a changed setting or split rebuilds.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .augment import draw_batch, warp_batch

BANK_STREAM = 0xBA2C  # keeps the views' random stream apart from the epochs' [seed, epoch, batch]
Features = Callable[[np.ndarray], np.ndarray]  # uint8 gray [B,S,S,1] -> float32 features [B,...]


def view_draws(seed: int, view: int, n: int, size: int, augmentation: Mapping[str, Any] | None) -> np.ndarray:
    """The [n,5] transforms of view ``view`` of every image, in image order."""
    return draw_batch(np.random.default_rng([seed, BANK_STREAM, view]), n, size, augmentation)


def view_images(images: np.ndarray, seed: int, view: int, augmentation: Mapping[str, Any] | None) -> np.ndarray:
    """View ``view`` of every uint8 [N,S,S,1] image (OpenCV warp; the originals without augmentation)."""
    if augmentation is None:
        return images
    return warp_batch(images, view_draws(seed, view, len(images), images.shape[1], augmentation))


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class FeatureBank:
    """One run's bank folder: ``view<k>.npy`` per view, ``val.npy``, and the ``fingerprint``."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def view_path(self, view: int) -> Path:
        return self.folder / f"view{view:03d}.npy"

    def prepare(self, log: logging.Logger) -> None:
        """Keep the folder when its fingerprint matches, else start it afresh."""
        stamp = self.folder / "fingerprint"
        if self.folder.exists() and not (stamp.is_file() and stamp.read_text() == self.fingerprint):
            log.warning("discarding feature bank %s (settings or training split changed)", self.folder)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(self.fingerprint)

    def build(
        self,
        features: Features,
        images: np.ndarray,
        val_images: np.ndarray,
        views: int,
        seed: int,
        augmentation: Mapping[str, Any] | None,
        batch_size: int,
        log: logging.Logger,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Train features [views, N, ...] and validation features [M, ...], computing only what is missing."""
        self.prepare(log)

        def forward(batch_images: np.ndarray) -> np.ndarray:
            parts = [features(batch_images[i : i + batch_size]) for i in range(0, len(batch_images), batch_size)]
            return np.concatenate(parts).astype(np.float32)

        done = sum(self.view_path(k).is_file() for k in range(views))
        if done:
            log.info("feature bank: %d of %d views already built in %s", done, views, self.folder)
        start = time.perf_counter()
        for k in range(views):
            path = self.view_path(k)
            if not path.is_file():
                t0 = time.perf_counter()
                _save_atomic(path, forward(view_images(images, seed, k, augmentation)))
                log.info(
                    "feature bank: view %d/%d of %d images in %.1f s",
                    k + 1,
                    views,
                    len(images),
                    time.perf_counter() - t0,
                )
        val_path = self.folder / "val.npy"
        if len(val_images) and not val_path.is_file():
            _save_atomic(val_path, forward(val_images))
        train = np.stack([np.load(self.view_path(k)) for k in range(views)])
        val = np.load(val_path) if len(val_images) else np.zeros((0, *train.shape[2:]), np.float32)
        log.info(
            "feature bank ready: %d views x %d images, features %s, %.1f s in this run",
            views,
            len(images),
            train.shape[2:],
            time.perf_counter() - start,
        )
        return train, val


class BankBatches(keras.utils.PyDataset):
    """(features [B,...], one-hot [B,C]) batches, one bank view per image per epoch.

    The order and the views of epoch e come from ``default_rng([seed, epoch])`` and
    ``default_rng([seed, epoch, BANK_STREAM])``: the same after a resume.
    """

    def __init__(
        self, features: np.ndarray, labels: np.ndarray, n_classes: int, batch_size: int, seed: int, epoch: int = 0
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if features.ndim < 3 or features.shape[1] != len(labels):
            raise ValueError(f"expected features [views, {len(labels)}, ...], got {features.shape}")
        self.features = features
        self.targets = keras.utils.to_categorical(labels, n_classes).astype(np.float32)
        self.batch_size, self.seed = batch_size, seed
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        n, views = self.features.shape[1], self.features.shape[0]
        self.order = np.random.default_rng([self.seed, epoch]).permutation(n)
        self.views = np.random.default_rng([self.seed, epoch, BANK_STREAM]).integers(0, views, n)

    def __len__(self) -> int:
        return math.ceil(self.features.shape[1] / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range [0, {len(self)})")
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.features[self.views[rows], rows], self.targets[rows]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
