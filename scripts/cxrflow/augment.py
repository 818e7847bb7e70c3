"""Seeded per-image affine augmentation: OpenCV on the host, or Keras ops inside the step.

Each image's transform (rotation, shifts, zoom and flip composed into a single
matrix, one interpolation) is drawn on the host from
``numpy.random.default_rng([seed, epoch, batch])``, so a batch is the same
whichever worker thread builds it and whether or not the run was resumed from a
checkpoint. It is then applied either

* on the host: one ``cv2.warpAffine`` per image in a PyDataset (the default; on one
  H100 Keras' RandomRotation/RandomTranslation/RandomFlip layers held VGG19 to
  268-298 img/s, while OpenCV warps ~1,770 img/s per core and scales with threads), or
* in the compiled step (``augment_in_step``): the uint8 images and the five drawn
  numbers go to the model, whose :class:`AffineWarp` layer warps them with
  ``keras.ops.image.affine_transform`` on the device, on any Keras backend.

``bench/augment_speed.py`` and ``bench/train_speed.py`` measure both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import keras
import numpy as np

Preprocess = Callable[[np.ndarray], np.ndarray]


def draw_affine(rng: np.random.Generator, size: int, augmentation: Mapping[str, Any]) -> np.ndarray:
    """Draw one image's (angle, tx, ty, scale, flip) in ImageDataGenerator's ranges.

    rotation: uniform in +-degrees; width/height_shift: uniform fraction of the side;
    zoom: scale uniform in [1-zoom, 1+zoom]; horizontal_flip: mirrored with p=0.5. The
    draw order is fixed: the OpenCV warp and the in-step warp see the same numbers.
    """
    angle = rng.uniform(-augmentation["rotation"], augmentation["rotation"])
    tx = rng.uniform(-augmentation["width_shift"], augmentation["width_shift"]) * size
    ty = rng.uniform(-augmentation["height_shift"], augmentation["height_shift"]) * size
    scale = rng.uniform(1.0 - augmentation["zoom"], 1.0 + augmentation["zoom"])
    flip = bool(augmentation["horizontal_flip"]) and rng.random() < 0.5
    return np.array([angle, tx, ty, scale, float(flip)])


def draw_batch(rng: np.random.Generator, n: int, size: int, augmentation: Mapping[str, Any] | None) -> np.ndarray:
    """float32 [n, 5] draws, one image after the other; identity rows without augmentation."""
    if augmentation is None:
        return np.tile(np.array([0.0, 0.0, 0.0, 1.0, 0.0]), (n, 1))
    return np.array([draw_affine(rng, size, augmentation) for _ in range(n)]).reshape(n, 5)


def affine_matrix(params: np.ndarray, size: int) -> np.ndarray:
    """2x3 matrix = shift . rotate/zoom about the centre . flip, mapping input to output pixels."""
    angle, tx, ty, scale, flip = (float(v) for v in params)
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    rotate = np.vstack([cv2.getRotationMatrix2D(centre, angle, scale), [0.0, 0.0, 1.0]])
    mirror = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    shift = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    return (shift @ rotate @ mirror)[:2]


def augment_batch(images: np.ndarray, rng: np.random.Generator, augmentation: Mapping[str, Any]) -> np.ndarray:
    """Warp each uint8 [S,S,1] image once (bilinear, constant 0 border, like a black film edge)."""
    size = images.shape[1]
    return warp_batch(images, draw_batch(rng, len(images), size, augmentation))


def warp_batch(images: np.ndarray, params: np.ndarray) -> np.ndarray:
    """OpenCV warp of uint8 [N,S,S,1] images by their [N,5] draws (the host-side augmentation)."""
    size = images.shape[1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i, ..., 0] = cv2.warpAffine(
            image[..., 0],
            affine_matrix(params[i], size),
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    return out


def inverse_transforms(params: Any, size: int) -> Any:
    """keras.ops: [B,5] draws -> [B,8] rows of ``keras.ops.image.affine_transform`` (output -> input map).

    The same matrix as :func:`affine_matrix` (shift . rotate/zoom about the centre . flip),
    inverted in closed form, so the warp runs inside the compiled step on any backend.
    """
    ops = keras.ops
    angle, tx, ty, scale, flip = (params[:, i] for i in range(5))
    theta = angle * (math.pi / 180.0)
    alpha, beta = scale * ops.cos(theta), scale * ops.sin(theta)
    c = (size - 1) / 2.0
    sx, ox = 1.0 - 2.0 * flip, flip * (size - 1.0)
    # rotate . mirror, then the shift: forward [[a, b, e], [d, g, h]]
    a, b = alpha * sx, beta
    d, g = -beta * sx, alpha
    e = alpha * ox + (1.0 - alpha) * c - beta * c + tx
    h = -beta * ox + beta * c + (1.0 - alpha) * c + ty
    det = a * g - b * d
    zero = ops.zeros_like(angle)
    rows = [g / det, -b / det, (b * h - g * e) / det, -d / det, a / det, (d * e - a * h) / det, zero, zero]
    return ops.stack(rows, axis=1)


@keras.saving.register_keras_serializable(package="cxrflow")
class AffineWarp(keras.layers.Layer):
    """uint8 gray [B,S,S,1] + draws [B,5] -> float32 warped images, inside the compiled step.

    Bilinear, constant 0 border: the geometry of :func:`warp_batch` (OpenCV), with float output.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})

    def call(self, inputs: Any) -> Any:
        images, params = inputs
        images = keras.ops.cast(images, "float32")
        transforms = inverse_transforms(keras.ops.cast(params, "float32"), images.shape[1])
        return keras.ops.image.affine_transform(
            images, transforms, interpolation="bilinear", fill_mode="constant", fill_value=0
        )

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape[0]


def to_rgb_float(images: np.ndarray) -> np.ndarray:
    """uint8 gray [N,S,S,1] -> float32 [N,S,S,3]: ImageNet bases expect three channels."""
    return np.repeat(images.astype(np.float32), 3, axis=-1)


class AugmentedBatches(keras.utils.PyDataset):
    """Batches of (preprocessed float32 [B,S,S,3], one-hot float32 [B,C]) from in-memory uint8 images.

    ``labels=None`` yields inputs only (prediction). ``augmentation=None`` and
    ``shuffle=False`` give the plain, ordered batches used for validation and test.
    ``in_step=True`` leaves the warp and the conversion to the model: inputs are then
    {"pixels": uint8 [B,S,S,1], "affine": float32 [B,5] draws} (see :class:`AffineWarp`),
    the draws being the very numbers the OpenCV path would use.
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
        in_step: bool = False,
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
        self.in_step = in_step
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch whose order and random draws the next batches use (resume sets it)."""
        self.epoch = epoch
        n = len(self.images)
        self.order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range [0, {len(self)})")
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self.images[rows]
        if self.in_step:
            params = draw_batch(
                np.random.default_rng([self.seed, self.epoch, index]), len(rows), batch.shape[1], self.augmentation
            )
            x = {"pixels": batch, "affine": params.astype(np.float32)}
            return x if self.targets is None else (x, self.targets[rows])
        if self.augmentation is not None:
            batch = augment_batch(batch, np.random.default_rng([self.seed, self.epoch, index]), self.augmentation)
        x = self.preprocess(to_rgb_float(batch))
        return x if self.targets is None else (x, self.targets[rows])

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)
