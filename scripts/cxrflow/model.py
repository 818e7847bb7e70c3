"""Transfer-learning classifier: an ImageNet base from keras.applications plus the article's head.

Head: Flatten -> Dropout -> Dense(n, softmax). Weights are never silently
replaced by random ones: an unreachable ImageNet download raises
:class:`WeightsUnavailable`, a weights file that does not fit raises too.
:func:`fetch_imagenet` downloads a base's file once, on a host with network,
checked against the hash Keras publishes, so that training jobs on nodes
without network read a file instead of downloading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .augment import AffineWarp

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
# Where Keras' applications download them from, and the md5 Keras checks them against
# (keras/src/applications/vgg19.py and resnet.py; tests/test_model.py compares).
IMAGENET_NOTOP_ORIGINS = {
    "vgg19": "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/",
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
}
IMAGENET_NOTOP_MD5 = {
    "vgg19": "253f8cb515780f3b799900260a226db6",
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
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


def _unavailable(arch: str, error: Exception) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"ImageNet weights for {arch} could not be downloaded ({error}). Offline? "
        f"Put the file {IMAGENET_NOTOP_FILES[arch]} into {keras_models_dir()} "
        f"(set KERAS_HOME to use another cache folder than ~/.keras), or set the "
        f"experiment's `weights:` to the path of a weights file, or to `none` for random "
        f"weights (a different experiment from the ImageNet transfer learning)."
    )


def _imagenet_base(arch: str, input_shape: tuple[int, int, int]) -> keras.Model:
    builder = _arch(arch)[0]
    try:
        return builder(include_top=False, weights="imagenet", input_shape=input_shape)
    except Exception as error:  # Keras raises a bare Exception("URL fetch failure on ...")
        if "URL fetch failure" not in str(error):
            raise
        raise _unavailable(arch, error) from error


def md5_of(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_imagenet(arch: str, dest: str | Path, origin: str | None = None, md5: str | None = None) -> Path:
    """Download the base's ImageNet file (include_top=False) to ``dest``, checked against Keras' md5.

    A file already in Keras' cache with the right hash is copied instead. ``origin``/``md5``
    default to Keras' own (tests pass a local ``file://`` origin). Offline: :class:`WeightsUnavailable`
    with the same advice as a training job's download; a wrong hash: ValueError; ``dest``
    appears only whole and checked.
    """
    _arch(arch)
    name, expected = IMAGENET_NOTOP_FILES[arch], md5 or IMAGENET_NOTOP_MD5[arch]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cached = keras_models_dir() / name
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        target = Path(tmp) / name
        if cached.is_file() and md5_of(cached) == expected:
            shutil.copyfile(cached, target)
        else:
            try:
                keras.utils.get_file(
                    name, origin or IMAGENET_NOTOP_ORIGINS[arch] + name, cache_dir=tmp, cache_subdir="."
                )
            except Exception as error:  # Keras raises a bare Exception("URL fetch failure on ...")
                if "URL fetch failure" not in str(error):
                    raise
                raise _unavailable(arch, error) from error
        got = md5_of(target)
        if got != expected:
            raise ValueError(
                f"{arch} ImageNet file from {origin or IMAGENET_NOTOP_ORIGINS[arch]} has md5 {got}, "
                f"not Keras' published {expected}: a corrupted or different file"
            )
        os.replace(target, dest)
    return dest


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


def build_base(experiment: Mapping[str, Any], weights_file: str | Path | None = None) -> keras.Model:
    """The convolutional base with the experiment's weights: imagenet, none (random) or a file.

    ``weights_file``: the ImageNet file :func:`fetch_imagenet` put in place (no download then).
    """
    size = experiment["image_size"]
    shape = (size, size, 3)
    weights = experiment["weights"]
    if weights == "imagenet" and weights_file is not None:
        weights = str(weights_file)
    elif weights == "imagenet":
        return _imagenet_base(experiment["arch"], shape)
    base = _arch(experiment["arch"])[0](include_top=False, weights=None, input_shape=shape)
    if weights != "none":
        _load_base_file(base, Path(weights))
    return base


def head(features: Any, n_classes: int, dropout: float) -> Any:
    """The article's head: Flatten -> Dropout -> Dense softmax (kept in float32 under mixed precision)."""
    x = keras.layers.Flatten(name="flatten")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="predictions", dtype="float32")(x)


def classifier_name(experiment: Mapping[str, Any]) -> str:
    return f"{experiment['arch']}_classifier"


def build_model(experiment: Mapping[str, Any], n_classes: int, weights_file: str | Path | None = None) -> keras.Model:
    """Base (frozen when freeze_base) -> Flatten -> Dropout -> Dense(n_classes, softmax); not compiled."""
    base = build_base(experiment, weights_file)
    base.trainable = not experiment["freeze_base"]
    size = experiment["image_size"]
    inputs = keras.Input(shape=(size, size, 3), name="image")
    # training=False keeps BatchNorm (ResNet50) in inference mode while the base is frozen.
    features = base(inputs, training=False) if experiment["freeze_base"] else base(inputs)
    return keras.Model(inputs, head(features, n_classes, experiment["dropout"]), name=classifier_name(experiment))


def build_head(feature_shape: tuple[int, ...], n_classes: int, dropout: float) -> keras.Model:
    """The head alone, on the frozen base's features (the augmented-view bank trains this)."""
    inputs = keras.Input(shape=feature_shape, name="features")
    return keras.Model(inputs, head(inputs, n_classes, dropout), name="head")


@keras.saving.register_keras_serializable(package="cxrflow")
class BaseInput(keras.layers.Layer):
    """float32 gray [B,S,S,1] -> the base's input: three channels scaled as for ImageNet (in the step)."""

    def __init__(self, arch: str, **kwargs: Any) -> None:
        super().__init__(dtype="float32", **{k: v for k, v in kwargs.items() if k != "dtype"})
        _arch(arch)
        self.arch = arch

    def call(self, images: Any) -> Any:
        rgb = keras.ops.repeat(keras.ops.cast(images, "float32"), 3, axis=-1)
        return _arch(self.arch)[1].preprocess_input(rgb)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], 3)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "arch": self.arch}


def build_step_model(classifier: keras.Model, arch: str) -> keras.Model:
    """Training wrapper: uint8 pixels + affine draws -> warp -> base input -> ``classifier``.

    Augmentation and the uint8 -> float conversion run in the compiled step on the
    device; the saved model stays ``classifier`` (preprocessed RGB in, as evaluation expects).
    """
    size = classifier.input_shape[1]
    pixels = keras.Input(shape=(size, size, 1), dtype="uint8", name="pixels")
    params = keras.Input(shape=(5,), name="affine")
    x = AffineWarp(name="augment")([pixels, params])
    x = BaseInput(arch, name="base_input")(x)
    return keras.Model({"pixels": pixels, "affine": params}, classifier(x), name="step")
