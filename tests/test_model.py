"""Model building, weights handling (incl. the real offline ImageNet failure and the fetch from a local
file), preprocessing, augmentation (OpenCV and in-step Keras ops: the same geometry), the view bank."""

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

from cxrflow.augment import AffineWarp, AugmentedBatches, affine_matrix, augment_batch, draw_affine, warp_batch  # noqa: E402
from cxrflow.bank import BankBatches, FeatureBank, view_images  # noqa: E402
from cxrflow.data import load_split  # noqa: E402
from cxrflow.model import (  # noqa: E402
    IMAGENET_NOTOP_FILES,
    IMAGENET_NOTOP_MD5,
    IMAGENET_NOTOP_ORIGINS,
    BaseInput,
    WeightsUnavailable,
    build_base,
    build_model,
    fetch_imagenet,
    md5_of,
    preprocess_batch,
)

NO_AUG = {"rotation": 0, "width_shift": 0.0, "height_shift": 0.0, "horizontal_flip": False, "zoom": 0.0}


def experiment(**changes) -> dict:
    """A complete validated-experiment dict at test size (every key the schema fills)."""
    base = {
        "arch": "vgg19",
        "weights": "none",
        "freeze_base": True,
        "image_size": 32,
        "epochs": 1,
        "batch_size": 4,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "dropout": 0.5,
        "augmentation": {"rotation": 20, "width_shift": 0.2, "height_shift": 0.2, "horizontal_flip": True, "zoom": 0.0},
        "backend": keras.backend.backend(),
        "checkpoint_every": 1,
        "save_optimizer": False,
        "seed": 0,
        "bank_views": 0,
        "augment_in_step": False,
        "steps_per_execution": 1,
        "precision": "float32",
        "select_epoch": "last",
        "select_monitor": "val_loss",
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
    np.testing.assert_allclose(affine_matrix(draw_affine(rng, 16, NO_AUG), 16), np.eye(3)[:2], atol=1e-12)
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
    rows = {
        "image_id": ["a", "b"],
        "label": ["Normal", "COVID-19"],
        "patient_id": ["p1", "p2"],
        "path": [str(p) for p in paths],
        "source": ["s", "s"],
    }
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


def blobs(n: int, size: int) -> np.ndarray:
    """Smooth uint8 test images (bilinear interpolation error stays at rounding level on them)."""
    import cv2

    rng = np.random.default_rng(3)
    out = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        image = np.zeros((size, size), np.uint8)
        for _ in range(4):
            x, y = rng.integers(0, size - 12, 2)
            image[y : y + 12, x : x + 8] = rng.integers(60, 255)
        out[i, ..., 0] = cv2.GaussianBlur(image, (5, 5), 1.5)
    return out


@pytest.mark.parametrize(
    "params",
    [
        [20, 0, 0, 1, 0],
        [-13.5, 0, 0, 1, 0],  # rotations about the centre, both ways
        [0, 7.3, -4.6, 1, 0],  # shifts
        [0, 0, 0, 1, 1],  # horizontal flip
        [0, 0, 0, 1.15, 0],  # zoom
        [-17, 5.2, 3.1, 0.9, 1],  # all at once
    ],
    ids=["rot+", "rot-", "shift", "flip", "zoom", "all"],
)
def test_in_step_warp_matches_opencv_geometry(params: list[float]) -> None:
    """keras.ops warp (in the step) vs cv2.warpAffine (host) for the same draw: equal up to the
    host's rounding to uint8 (0.5) and interpolation error."""
    images = blobs(4, 48)
    draws = np.tile(np.asarray(params, float), (4, 1))
    host = warp_batch(images, draws).astype(np.float32)
    step = np.asarray(keras.ops.convert_to_numpy(AffineWarp()([images, draws.astype(np.float32)])))
    assert step.shape == host.shape
    assert np.abs(step - host).max() <= 0.51
    assert np.abs(step - host).mean() < 0.1
    if params != [0, 0, 0, 1, 0]:
        assert not np.array_equal(host, images)


def test_in_step_batches_carry_the_host_draws() -> None:
    """in_step=True yields uint8 pixels and the very draws the OpenCV path warps with."""
    images = blobs(10, 32)
    labels = np.arange(10) % 2
    aug = experiment()["augmentation"]

    def preprocess(x):
        return preprocess_batch("vgg19", x)

    host = AugmentedBatches(images, labels, 2, 4, preprocess, aug, seed=7, shuffle=True, epoch=3)
    step = AugmentedBatches(images, labels, 2, 4, preprocess, aug, seed=7, shuffle=True, epoch=3, in_step=True)
    x, y = step[1]
    assert x["pixels"].dtype == np.uint8 and x["affine"].shape == (4, 5)
    np.testing.assert_array_equal(y, host[1][1])
    warped = np.asarray(keras.ops.convert_to_numpy(AffineWarp()([x["pixels"], x["affine"]])))
    np.testing.assert_allclose(BaseInputNumpy(warped), host[1][0], atol=0.51)


def BaseInputNumpy(gray: np.ndarray) -> np.ndarray:  # noqa: N802 (reads as the layer it calls)
    return np.asarray(keras.ops.convert_to_numpy(BaseInput("vgg19")(gray)))


def test_base_input_layer_is_the_host_preprocessing() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    for arch in ("vgg19", "resnet50"):
        got = np.asarray(keras.ops.convert_to_numpy(BaseInput(arch)(gray.astype(np.float32))))
        np.testing.assert_allclose(got, preprocess_batch(arch, gray), atol=1e-4)


def test_bank_views_are_seeded_and_reproducible(tmp_path: Path) -> None:
    """View k is the same in every run and whatever K is; views differ; a lost view is rebuilt alone."""
    images = blobs(6, 32)
    aug = experiment()["augmentation"]
    np.testing.assert_array_equal(view_images(images, 5, 2, aug), view_images(images, 5, 2, aug))
    assert not np.array_equal(view_images(images, 5, 0, aug), view_images(images, 5, 1, aug))
    assert not np.array_equal(view_images(images, 5, 0, aug), view_images(images, 6, 0, aug))
    calls = []

    def features(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :16].astype(np.float32)

    import logging

    log = logging.getLogger("bank-test")
    bank = FeatureBank(tmp_path / "bank", "print-1")
    train, val = bank.build(features, images, images[:2], 3, 5, aug, 4, log)
    assert train.shape == (3, 6, 16) and val.shape == (2, 16) and sum(calls) == 3 * 6 + 2
    np.testing.assert_array_equal(train[1], features(view_images(images, 5, 1, aug)))
    calls.clear()
    bank.view_path(1).unlink()  # as if killed before view 1 was written
    again, _ = bank.build(features, images, images[:2], 4, 5, aug, 4, log)
    assert sum(calls) == 2 * 6  # view 1 and the new view 3 only
    np.testing.assert_array_equal(again[:3], train)
    calls.clear()
    FeatureBank(tmp_path / "bank", "print-2").build(features, images, images[:2], 2, 5, aug, 4, log)
    assert sum(calls) == 2 * 6 + 2  # other settings: everything again
    batches = BankBatches(train, np.arange(6) % 2, 2, 4, seed=1, epoch=0)
    x0, y0 = batches[0]
    assert x0.shape == (4, 16) and y0.shape == (4, 2)
    np.testing.assert_array_equal(x0, BankBatches(train, np.arange(6) % 2, 2, 4, seed=1, epoch=0)[0][0])
    rows = batches.order[:4]
    np.testing.assert_array_equal(x0, train[batches.views[rows], rows])
    draws = {tuple(BankBatches(train, np.arange(6) % 2, 2, 4, seed=1, epoch=e).views) for e in range(8)}
    assert len(draws) > 1  # each epoch its own views


def test_imagenet_origins_and_hashes_are_keras_own() -> None:
    import inspect

    sources = inspect.getsource(inspect.getmodule(keras.applications.VGG19)) + inspect.getsource(
        inspect.getmodule(keras.applications.ResNet50)
    )
    for arch in ("vgg19", "resnet50"):
        assert IMAGENET_NOTOP_MD5[arch] in sources
        assert IMAGENET_NOTOP_ORIGINS[arch].split("keras-applications/")[1] in sources


def test_fetch_imagenet_from_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vgg_base: keras.Model
) -> None:
    """Never the network: a file:// origin stands in for Keras' server. Checked against the md5, placed
    whole, then loaded by a `weights: imagenet` build from that file."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-cache"))
    served = tmp_path / "server" / IMAGENET_NOTOP_FILES["vgg19"]
    served.parent.mkdir()
    with h5py.File(served, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, vgg_base)
    dest = tmp_path / "resources" / "weights" / "vgg19_imagenet_notop.h5"
    with pytest.raises(ValueError, match="md5"):
        fetch_imagenet("vgg19", dest, origin=served.as_uri(), md5="0" * 32)
    assert not dest.exists() and not list(dest.parent.iterdir())
    with pytest.raises(WeightsUnavailable, match=IMAGENET_NOTOP_FILES["vgg19"]):
        fetch_imagenet("vgg19", dest, origin=(tmp_path / "nowhere.h5").as_uri(), md5=md5_of(served))
    fetch_imagenet("vgg19", dest, origin=served.as_uri(), md5=md5_of(served))
    assert dest.read_bytes() == served.read_bytes()
    keras.utils.set_random_seed(4)
    loaded = build_base(experiment(weights="imagenet"), weights_file=dest)
    for expected, got in zip(vgg_base.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(expected, got)
