"""Seeded per-image OpenCV augmentation feeding Keras through a PyDataset.

Why OpenCV and not Keras' RandomRotation/RandomTranslation/RandomFlip layers:
on one H100 the Keras layers held VGG19 training to 268-298 img/s, while one
``cv2.warpAffine`` per image (rotation, shifts, zoom and flip composed into a
single matrix) runs at ~1,770 img/s per CPU core and scales with worker threads
(OpenCV releases the GIL), above VGG19's ~3,200 img/s forward pass once a few
workers run. ``bench/augment_speed.py`` measures both here.

Randomness comes from ``numpy.random.default_rng([seed, epoch, batch])``, so a
batch is the same whichever worker thread builds it and whether or not the run
was resumed from a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import keras
import numpy as np

Preprocess = Callable[[np.ndarray], np.ndarray]


def random_affine(rng: np.random.Generator, size: int, augmentation: Mapping[str, Any]) -> np.ndarray:
    """Draw one 2x3 matrix = shift . rotate/zoom about the centre . flip (ImageDataGenerator ranges).

    rotation: uniform in +-degrees; width/height_shift: uniform fraction of the side;
    zoom: scale uniform in [1-zoom, 1+zoom]; horizontal_flip: mirrored with p=0.5.
    """
    angle = rng.uniform(-augmentation["rotation"], augmentation["rotation"])
    tx = rng.uniform(-augmentation["width_shift"], augmentation["width_shift"]) * size
    ty = rng.uniform(-augmentation["height_shift"], augmentation["height_shift"]) * size
    scale = rng.uniform(1.0 - augmentation["zoom"], 1.0 + augmentation["zoom"])
    flip = bool(augmentation["horizontal_flip"]) and rng.random() < 0.5
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    rotate = np.vstack([cv2.getRotationMatrix2D(centre, angle, scale), [0.0, 0.0, 1.0]])
    mirror = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    shift = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    return (shift @ rotate @ mirror)[:2]


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, augmentation: Mapping[str, Any]
) -> np.ndarray:
    """Warp each uint8 [S,S,1] image once (bilinear, constant 0 border, like a black film edge)."""
    size = images.shape[1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        matrix = random_affine(rng, size, augmentation)
        out[i, ..., 0] = cv2.warpAffine(
            image[..., 0], matrix, (size, size), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=0,
        )
    return out


def to_rgb_float(images: np.ndarray) -> np.ndarray:
    """uint8 gray [N,S,S,1] -> float32 [N,S,S,3]: ImageNet bases expect three channels."""
    return np.repeat(images.astype(np.float32), 3, axis=-1)


class AugmentedBatches(keras.utils.PyDataset):
    """Batches of (preprocessed float32 [B,S,S,3], one-hot float32 [B,C]) from in-memory uint8 images.

    ``labels=None`` yields inputs only (prediction). ``augmentation=None`` and
    ``shuffle=False`` give the plain, ordered batches used for validation and test.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        n_classes: int,
        batch_size: int,
        preprocess: Preprocess,
        augmentation: Mapping[str, Any] | None,
        seed: int,
        shuffle: bool,
        epoch: int = 0,
        workers: int = 1,
        max_queue_size: int = 10,
    ) -> None:
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        if images.ndim != 4 or images.shape[-1] != 1 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [N,S,S,1], got {images.dtype} {images.shape}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = None if labels is None else keras.utils.to_categorical(labels, n_classes).astype(np.float32)
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.augmentation = augmentation
        self.seed = seed
        self.shuffle = shuffle
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order and random draws the next batches use (resume sets it)."""
        self.epoch = epoch
        n = len(self.images)
        self.order = (
            np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        )

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range [0, {len(self)})")
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        batch = self.images[rows]
        if self.augmentation is not None:
            batch = augment_batch(batch, np.random.default_rng([self.seed, self.epoch, index]), self.augmentation)
        x = self.preprocess(to_rgb_float(batch))
        return x if self.targets is None else (x, self.targets[rows])

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
