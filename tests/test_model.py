"""Model building, weights handling (incl. the real offline ImageNet failure), preprocessing, augmentation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

from cxrflow.augment import AugmentedBatches, augment_batch, random_affine  # noqa: E402
from cxrflow.data import load_split  # noqa: E402
from cxrflow.model import IMAGENET_NOTOP_FILES, build_base, build_model, preprocess_batch  # noqa: E402

NO_AUG = {"rotation": 0, "width_shift": 0.0, "height_shift": 0.0, "horizontal_flip": False, "zoom": 0.0}


def experiment(**changes) -> dict:
    """A complete validated-experiment dict at test size (every key the schema fills)."""
    base = {
        "arch": "vgg19", "weights": "none", "freeze_base": True, "image_size": 32, "epochs": 1, "batch_size": 4,
        "optimizer": "adam", "learning_rate": 1e-3, "dropout": 0.5,
        "augmentation": {"rotation": 20, "width_shift": 0.2, "height_shift": 0.2, "horizontal_flip": True,
                         "zoom": 0.0},
        "backend": keras.backend.backend(), "checkpoint_every": 1, "save_optimizer": False, "seed": 0,
    }
    return {**base, **changes}


@pytest.fixture(scope="module")
def vgg_base() -> keras.Model:
    keras.utils.set_random_seed(1)
    return build_base(experiment())


def test_build_model_head_and_frozen_base() -> None:
    model = build_model(experiment(arch="vgg19"), n_classes=3)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)
    assert [layer.name for layer in model.layers[-3:]] == ["flatten", "dropout", "predictions"]
    assert model.get_layer("dropout").rate == 0.5
    assert len(model.trainable_weights) == 2  # only the Dense head: base frozen
    probs = np.asarray(model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet50_unfrozen_trains_base() -> None:
    model = build_model(experiment(arch="resnet50", freeze_base=False, dropout=0.2), n_classes=2)
    assert model.output_shape == (None, 2)
    assert len(model.trainable_weights) > 100


def test_weights_file_loads_into_base(tmp_path: Path, vgg_base: keras.Model) -> None:
    path = tmp_path / "base.weights.h5"
    vgg_base.save_weights(path)
    keras.utils.set_random_seed(2)  # a different random init, overwritten by the file
    loaded = build_model(experiment(weights=str(path)), n_classes=2).get_layer(vgg_base.name)
    for expected, got in zip(vgg_base.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, got)


def test_legacy_h5_weights_file_by_name(tmp_path: Path, vgg_base: keras.Model) -> None:
    """The format of Keras' ImageNet files (a with-top file fits too: extra layers are ignored)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "vgg19_weights.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg_base)
    keras.utils.set_random_seed(3)
    loaded = build_base(experiment(weights=str(path)))
    for expected, got in zip(vgg_base.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, got)


def test_weights_file_errors(tmp_path: Path) -> None:
    import h5py

    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_model(experiment(weights=str(tmp_path / "missing.h5")), n_classes=2)
    wrong = tmp_path / "other.h5"
    with h5py.File(wrong, "w") as f:
        f.attrs["layer_names"] = [b"some_other_layer"]
    with pytest.raises(ValueError, match="no weights for"):
        build_model(experiment(weights=str(wrong)), n_classes=2)


@pytest.mark.slow
def test_imagenet_offline_raises_weights_unavailable(tmp_path: Path) -> None:
    """Real download attempts with an empty KERAS_HOME (no network here): a clear error, never random weights."""
    code = textwrap.dedent("""
        from cxrflow.model import build_model, WeightsUnavailable
        for arch in ("vgg19", "resnet50"):
            exp = dict(arch=arch, weights="imagenet", freeze_base=True, image_size=32, dropout=0.5)
            try:
                build_model(exp, 2)
            except WeightsUnavailable as e:
                print("RAISED", e)
            else:
                print("BUILT")
    """)
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "KERAS_BACKEND": keras.backend.backend()}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if "BUILT" in done.stdout:
        pytest.skip("network reachable: the ImageNet file downloaded, the offline error cannot be shown")
    messages = [line for line in done.stdout.splitlines() if line.startswith("RAISED")]
    assert len(messages) == 2, done.stdout + done.stderr
    for arch, message in zip(("vgg19", "resnet50"), messages):
        assert IMAGENET_NOTOP_FILES[arch] in message
        assert str(tmp_path / "models") in message
        assert "`weights:`" in message and "`none`" in message
    assert not any((tmp_path / "models").glob("*.h5"))  # no partial file left behind


def test_preprocess_batch_matches_keras() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    x = preprocess_batch("vgg19", gray)
    assert x.shape == (2, 8, 8, 3) and x.dtype == np.float32
    expected = keras.applications.vgg19.preprocess_input(np.repeat(gray.astype(np.float32), 3, axis=-1))
    np.testing.assert_allclose(x, expected)


def test_random_affine_identity_and_flip() -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(random_affine(rng, 16, NO_AUG), np.eye(3)[:2], atol=1e-12)
    image = np.arange(16 * 16, dtype=np.uint8).reshape(1, 16, 16, 1)
    flips = {"mirror": 0, "same": 0}
    for seed in range(20):
        out = augment_batch(image, np.random.default_rng(seed), {**NO_AUG, "horizontal_flip": True})
        if np.array_equal(out, image[:, :, ::-1]):
            flips["mirror"] += 1
        elif np.array_equal(out, image):
            flips["same"] += 1
    assert flips["mirror"] > 0 and flips["same"] > 0 and sum(flips.values()) == 20


def test_augmentation_is_seeded_and_moves_pixels() -> None:
    images = np.random.default_rng(1).integers(1, 256, (3, 32, 32, 1), dtype=np.uint8)
    aug = experiment()["augmentation"]
    a = augment_batch(images, np.random.default_rng([5, 0, 0]), aug)
    b = augment_batch(images, np.random.default_rng([5, 0, 0]), aug)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, images)
    assert (a == 0).any()  # constant-0 border where the shift/rotation uncovered the frame


def test_augmented_batches(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 256, (10, 32, 32, 1), dtype=np.uint8)
    labels = np.arange(10) % 3

    def preprocess(x):
        return preprocess_batch("vgg19", x)

    train = AugmentedBatches(images, labels, 3, 4, preprocess, experiment()["augmentation"], seed=7, shuffle=True)
    assert len(train) == 3
    x, y = train[2]
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32 and y.shape == (2, 3)
    first = train[0][0]
    np.testing.assert_array_equal(first, train[0][0])  # same batch, same epoch: identical
    train.on_epoch_end()
    assert not np.array_equal(first, train[0][0])  # next epoch: new order and draws
    plain = AugmentedBatches(images, None, 3, 4, preprocess, None, seed=0, shuffle=False)
    np.testing.assert_allclose(plain[0], preprocess(images[:4]))
    with pytest.raises(ValueError, match="uint8"):
        AugmentedBatches(images.astype(np.float32), labels, 3, 4, preprocess, None, seed=0, shuffle=False)


def test_load_split_resizes_and_checks_labels(tmp_path: Path) -> None:
    import cv2
    import pandas as pd

    paths = []
    for i, size in enumerate((40, 32)):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), np.full((size, size), 100 + i, np.uint8))
    rows = {"image_id": ["a", "b"], "label": ["Normal", "COVID-19"], "patient_id": ["p1", "p2"],
            "path": [str(p) for p in paths], "source": ["s", "s"]}
    pd.DataFrame(rows).to_csv(tmp_path / "split.csv", index=False)
    images, labels, table = load_split(tmp_path / "split.csv", ["COVID-19", "Normal"], 32)
    assert images.shape == (2, 32, 32, 1) and images.dtype == np.uint8
    assert labels.tolist() == [1, 0] and images[0].max() == 100 and images[1].max() == 101
    pd.DataFrame({k: [] for k in rows}).to_csv(tmp_path / "empty.csv", index=False)
    empty, empty_labels, _ = load_split(tmp_path / "empty.csv", ["COVID-19", "Normal"], 32)
    assert empty.shape == (0, 32, 32, 1) and empty_labels.shape == (0,)
    with pytest.raises(ValueError, match="not among the configured classes"):
        load_split(tmp_path / "split.csv", ["COVID-19", "Pneumonia"], 32)
    pd.DataFrame({**rows, "path": [str(tmp_path / "gone.png")] * 2}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="gone.png"):
        load_split(tmp_path / "bad.csv", ["COVID-19", "Normal"], 32)


def test_final_model_saved_without_optimizer_state_loads_and_predicts_the_same(tmp_path: Path) -> None:
    from cxrflow.train import compile_model, save_final

    keras.utils.set_random_seed(0)
    model = compile_model(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                            keras.layers.Dense(64), keras.layers.Dense(2, activation="softmax")]),
                          experiment())  # fmt: skip
    x, y = np.random.default_rng(0).random((8, 8, 8, 1)), np.eye(2)[[0, 1] * 4]
    model.fit(x, y, epochs=1, verbose=0)  # Adam now holds two moments per weight
    save_final(model, tmp_path / "slim.keras")
    save_final(model, tmp_path / "full.keras", with_optimizer=True)
    slim, full = (tmp_path / "slim.keras").stat().st_size, (tmp_path / "full.keras").stat().st_size
    assert slim < 0.6 * full
    loaded = keras.saving.load_model(tmp_path / "slim.keras")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert keras.saving.load_model(tmp_path / "full.keras").optimizer is not None
