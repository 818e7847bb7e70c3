"""Grad-CAM on every installed Keras backend: it looks where the evidence is.

Each backend runs in its own subprocess (KERAS_BACKEND is fixed at import); the
three run in parallel to stay fast. A backend that is not importable is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workflow_helpers import read_figure

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# Trains a tiny nested CNN (base model called as a layer, like model.build_model) whose
# class is decided by a bright square in the top-left corner; then Grad-CAM on class 1.
# Also: a Flatten head with fixed pseudo-random weights (no training) whose maps must be
# identical across backends, i.e. the three gradient implementations agree.
CHILD = r"""
import json
import numpy as np
import keras
from cxrflow.gradcam import gradcam, last_conv_layer_name

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
n, s = 64, 16
x = (rng.random((n, s, s, 1)) * 0.3).astype("float32")
y = np.arange(n) % 2
x[y == 1, 1:6, 1:6, 0] = 1.0

def nested(head):
    inp = keras.Input((s, s, 1))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(h)
    if head == "flatten":
        h = keras.layers.MaxPooling2D(name="pool")(h)
    base = keras.Model(inp, h, name="base")
    image = keras.Input((s, s, 1), name="image")
    f = base(image, training=False)
    f = keras.layers.Flatten()(f) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(f)
    f = keras.layers.Dropout(0.2)(f)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(f)
    return keras.Model(image, out)

model = nested("gap")
model.compile(optimizer=keras.optimizers.Adam(2e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
hist = model.fit(x, y, epochs=12, batch_size=16, verbose=0)
maps = gradcam(model, x[y == 1][:8], 1)
q = maps.shape[1] // 2

fixed = nested("flatten")
w_rng = np.random.default_rng(1)
fixed.set_weights([w_rng.normal(0, 0.3, w.shape).astype("float32") for w in fixed.get_weights()])
fixed_maps = gradcam(fixed, x[:6], 1)

print("RESULT " + json.dumps({
    "layer": last_conv_layer_name(model),
    "fixed_layer": last_conv_layer_name(fixed),
    "accuracy": float(hist.history["accuracy"][-1]),
    "shape": list(maps.shape),
    "min": float(maps.min()), "max": float(maps.max()),
    "top_left": float(maps[:, :q, :q].sum()), "bottom_right": float(maps[:, q:, q:].sum()),
    "bare_name_equal": bool(np.allclose(gradcam(model, x[y == 1][:8], 1, "c2"), maps)),
    "fixed_maps": fixed_maps.round(5).tolist(),
}))
"""


# One CPU thread per child: three children share the CI's two cores without thrashing.
ONE_THREAD = {
    "CUDA_VISIBLE_DEVICES": "",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _available() -> list[str]:
    return [b for b, module in BACKENDS.items() if importlib.util.find_spec(module) is not None]


def _wanted(request: pytest.FixtureRequest) -> list[str]:
    """Installed backends a selected test of this module reads: a lane that selects only the
    jax and torch cases starts no tensorflow child."""
    wanted = set()
    for item in request.session.items:
        if item.module is request.module and item.originalname == "test_heat_map_finds_the_corner":
            wanted.add(item.callspec.params["backend"])
        elif item.module is request.module and item.originalname == "test_backends_agree":
            wanted.update(BACKENDS)
    return [b for b in _available() if b in wanted]


@pytest.fixture(scope="module")
def backend_results(request: pytest.FixtureRequest) -> dict[str, dict]:
    """Run the child script on every wanted, importable backend at once; collect its JSON."""
    procs = {}
    for backend in _wanted(request):
        env = {
            **os.environ,
            **ONE_THREAD,
            "KERAS_BACKEND": backend,
            "PYTHONPATH": os.pathsep.join([str(SCRIPTS), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }  # keep a caller's (GPU check: carried keras)
        procs[backend] = subprocess.Popen(
            [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    results = {}
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, f"{backend} child failed:\n{err[-3000:]}"
        results[backend] = json.loads(lines[-1][len("RESULT ") :])
    return results


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", [pytest.param(b, marks=getattr(pytest.mark, b)) if b != "tensorflow" else b for b in BACKENDS]
)
def test_heat_map_finds_the_corner(backend: str, backend_results: dict[str, dict]) -> None:
    if backend not in backend_results:
        pytest.skip(f"Keras backend {backend} is not installed (README Tests: the extra lanes)")
    res = backend_results[backend]
    assert res["layer"] == "base/c2" and res["fixed_layer"] == "base/c2"
    assert res["accuracy"] > 0.9
    assert res["shape"] == [8, 16, 16]
    assert res["min"] >= 0 and res["max"] == pytest.approx(1.0)
    assert res["top_left"] > 5 * res["bottom_right"]
    assert res["bare_name_equal"]


@pytest.mark.slow
@pytest.mark.jax
@pytest.mark.torch
def test_backends_agree(backend_results: dict[str, dict]) -> None:
    if len(backend_results) < 2:
        pytest.skip("fewer than two Keras backends installed (README Tests: the extra lanes)")
    maps = {b: np.array(r["fixed_maps"]) for b, r in backend_results.items()}
    ref_name, ref = next(iter(maps.items()))
    assert ref.shape == (6, 16, 16) and ref.max() > 0 and ref.std() > 0
    for name, m in maps.items():
        np.testing.assert_allclose(m, ref, atol=2e-3, err_msg=f"{name} differs from {ref_name}")


# In-process tests on the default backend: layer naming, overlay, panel, example selection.


def test_last_conv_layer_of_applications_bases() -> None:
    import keras

    from cxrflow.gradcam import _resolve_path, gradcam, last_conv_layer_name

    for arch, expected in (
        (keras.applications.VGG19, "block5_conv4"),
        (keras.applications.ResNet50, "conv5_block3_out"),
    ):
        base = arch(include_top=False, weights=None, input_shape=(32, 32, 3))
        assert last_conv_layer_name(base) == expected
        image = keras.Input((32, 32, 3))
        x = keras.layers.Flatten()(base(image, training=False))
        model = keras.Model(image, keras.layers.Dense(2, activation="softmax")(x))
        assert last_conv_layer_name(model) == f"{base.name}/{expected}"
        assert _resolve_path(model, expected) == [base.name, expected]
    maps = gradcam(model, np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32"), 0)
    assert maps.shape == (2, 1, 1) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ValueError, match="not found"):
        _resolve_path(model, "no_such_layer")
    with pytest.raises(ValueError, match="class_idx"):
        gradcam(model, np.zeros((1, 32, 32, 3), "float32"), 5)
    dense_only = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="rank-4"):
        last_conv_layer_name(dense_only)


def test_overlay_and_panel(tmp_path: Path) -> None:
    from cxrflow.gradcam import gradcam_panel, overlay

    gray = np.tile(np.arange(64, dtype=np.uint8)[None, :] * 4, (64, 1))
    heat = np.zeros((8, 8), np.float32)
    heat[:2, :2] = 1.0
    out = overlay(gray, heat, alpha=0.5)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[2, 2], out[60, 60])  # hot corner coloured differently
    with pytest.raises(ValueError, match="heatmap"):
        overlay(gray, heat * 2, alpha=0.5)
    with pytest.raises(ValueError, match="uint8"):
        overlay(gray.astype(float), heat, alpha=0.5)
    fig = gradcam_panel([("COVID-19: correct (2)", [out, out]), ("COVID-19: wrong (0)", [])])
    assert len(fig.axes) == 4
    fig.savefig(tmp_path / "panel.png")
    read_figure(tmp_path / "panel.png")


def test_select_examples() -> None:
    from cxrflow.gradcam import select_examples

    preds = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d", "e"],
            "true_label": ["COVID-19", "COVID-19", "COVID-19", "Normal", "Normal"],
            "predicted_label": ["COVID-19", "COVID-19", "Normal", "Normal", "Normal"],
            "prob_COVID-19": [0.6, 0.9, 0.2, 0.1, 0.3],
            "prob_Normal": [0.4, 0.1, 0.8, 0.9, 0.7],
        }
    )
    rows = select_examples(preds, ["COVID-19", "Normal"], per_cell=1)
    assert rows == [
        ("COVID-19: correct (2)", ["b"]),
        ("COVID-19: wrong (1)", ["c"]),
        ("Normal: correct (2)", ["d"]),
        ("Normal: wrong (0)", []),
    ]


def test_select_examples_seeded_sample() -> None:
    from cxrflow.gradcam import select_examples

    n = 12
    preds = pd.DataFrame(
        {
            "image_id": [f"x{i:02d}" for i in range(n)],
            "true_label": ["COVID-19"] * 6 + ["Normal"] * 6,
            "predicted_label": ["COVID-19"] * 4 + ["Normal"] * 8,
            "prob_COVID-19": np.linspace(0.05, 0.95, n),
            "prob_Normal": 1 - np.linspace(0.05, 0.95, n),
        }
    )
    rows = select_examples(preds, ["COVID-19", "Normal"], per_cell=3, seed=1)
    assert rows == select_examples(preds.sample(frac=1, random_state=0), ["COVID-19", "Normal"], 3, seed=1)
    assert [title for title, _ in rows] == [
        "COVID-19: correct (4)",
        "COVID-19: wrong (2)",
        "Normal: correct (6)",
        "Normal: wrong (0)",
    ]
    assert [len(ids) for _, ids in rows] == [3, 2, 3, 0]
    assert set(rows[0][1]) <= {"x00", "x01", "x02", "x03"} and set(rows[2][1]) <= {f"x{i:02d}" for i in range(6, 12)}
    others = [select_examples(preds, ["COVID-19", "Normal"], 3, seed=s)[2][1] for s in range(2, 8)]
    assert any(o != rows[2][1] for o in others)  # the seed decides the sample


def test_sequential_and_shared_base() -> None:
    """A Sequential head, and one base shared by two classifiers (two calls, one per model)."""
    import keras

    from cxrflow.gradcam import gradcam, last_conv_layer_name

    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    flat = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Conv2D(4, 3, name="sc"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    assert last_conv_layer_name(flat) == "sc"
    assert gradcam(flat, x, 1).shape == (2, 14, 14)
    inp = keras.Input((16, 16, 1))
    base = keras.Model(inp, keras.layers.Conv2D(4, 3, name="bc")(inp), name="base")
    first = keras.Sequential(
        [
            keras.Input((16, 16, 1)),
            keras.layers.Rescaling(2.0),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    second = keras.Sequential(
        [keras.Input((16, 16, 1)), base, keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]
    )
    for model, n_classes in ((first, 3), (second, 2)):
        assert last_conv_layer_name(model) == "base/bc"
        maps = gradcam(model, x, n_classes - 1)
        assert maps.shape == (2, 14, 14) and 0 <= maps.min() and maps.max() <= 1
