"""Transfer-learning classifier: an ImageNet base from keras.applications plus the article's head.

Head: Flatten -> Dropout -> Dense(n, softmax). Weights are never silently
replaced by random ones: an unreachable ImageNet download raises
:class:`WeightsUnavailable`, a weights file that does not fit raises too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

# arch -> (builder, preprocess_input module); both from keras.applications.
_ARCHS = {
    "vgg19": (keras.applications.VGG19, keras.applications.vgg19),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50),
}
# The file Keras downloads for include_top=False, as named in its cache.
IMAGENET_NOTOP_FILES = {
    "vgg19": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be obtained; training on random weights instead would be a different experiment."""


def _arch(arch: str) -> tuple[Any, Any]:
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(_ARCHS)}")
    return _ARCHS[arch]


def keras_models_dir() -> Path:
    """Where keras.utils.get_file caches application weights (mirrors Keras' own rule)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def preprocess_batch(arch: str, images: np.ndarray) -> np.ndarray:
    """uint8/float gray or RGB batch -> float32 3-channel input scaled as the base was trained (ImageNet)."""
    x = np.asarray(images, dtype=np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return _arch(arch)[1].preprocess_input(x)


def _imagenet_base(arch: str, input_shape: tuple[int, int, int]) -> keras.Model:
    builder = _arch(arch)[0]
    try:
        return builder(include_top=False, weights="imagenet", input_shape=input_shape)
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure on ...")
        if "URL fetch failure" not in str(error):
            raise
        raise WeightsUnavailable(
            f"ImageNet weights for {arch} could not be downloaded ({error}). Offline? "
            f"Put the file {IMAGENET_NOTOP_FILES[arch]} into {keras_models_dir()} "
            f"(set KERAS_HOME to use another cache folder than ~/.keras), or set the "
            f"experiment's `weights:` to the path of a weights file, or to `none` for random "
            f"weights (a different experiment from the ImageNet transfer learning)."
        ) from error


def _h5_layer_names(path: Path) -> set[str]:
    """Layer names stored in a legacy Keras .h5 weights file (the format of Keras' ImageNet files)."""
    import h5py  # a Keras dependency; only this legacy format needs it

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
        return {n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("layer_names", [])}


def _load_base_file(base: keras.Model, path: Path) -> None:
    """Load base weights from a file; legacy .h5 by layer name so a with-top ImageNet file also fits.

    Loading by name ignores layers the file lacks, so their absence is checked
    first: a partly loaded base must not pass for a pre-trained one.
    """
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (experiment `weights:`)")
    name = path.name
    if name.endswith((".h5", ".hdf5")) and not name.endswith(".weights.h5"):
        missing = sorted({layer.name for layer in base.layers if layer.weights} - _h5_layer_names(path))
        if missing:
            raise ValueError(
                f"weights file {path} has no weights for {len(missing)} layers of the {base.name} "
                f"base (e.g. {missing[:3]}): not a weights file for this architecture"
            )
        base.load_weights(str(path), by_name=True)
    else:
        base.load_weights(str(path))


def build_base(experiment: Mapping[str, Any]) -> keras.Model:
    """The convolutional base with the experiment's weights: imagenet, none (random) or a file."""
    size = experiment["image_size"]
    shape = (size, size, 3)
    weights = experiment["weights"]
    if weights == "imagenet":
        return _imagenet_base(experiment["arch"], shape)
    base = _arch(experiment["arch"])[0](include_top=False, weights=None, input_shape=shape)
    if weights != "none":
        _load_base_file(base, Path(weights))
    return base


def build_model(experiment: Mapping[str, Any], n_classes: int) -> keras.Model:
    """Base (frozen when freeze_base) -> Flatten -> Dropout -> Dense(n_classes, softmax); not compiled."""
    base = build_base(experiment)
    base.trainable = not experiment["freeze_base"]
    size = experiment["image_size"]
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # training=False keeps BatchNorm (ResNet50) in inference mode while the base is frozen.
    features = base(inputs, training=False) if experiment["freeze_base"] else base(inputs)
    x = keras.layers.Flatten(name="flatten")(features)
    x = keras.layers.Dropout(experiment["dropout"], name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{experiment['arch']}_classifier")
