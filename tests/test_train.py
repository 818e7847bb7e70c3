"""Train + evaluate end to end on each installed Keras backend, and resume after SIGKILL.

Every run is a subprocess because KERAS_BACKEND is read once, at keras' first import.
The three backends start together (one module fixture) so the file stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from workflow_helpers import epochs_checkpointed, read_figure

pytestmark = pytest.mark.slow

CLASSES = ["COVID-19", "Normal"]
BACKENDS = ["tensorflow", "jax", "torch"]
RUNNER = """
import json, os, sys
args = json.loads(sys.argv[1])
os.environ["KERAS_BACKEND"] = args["experiment"]["backend"]
from cxrflow.train import TrainingSettings, main
main(TrainingSettings(args["experiment"], tuple(args["classes"]), args["checkpoints"]), args["train"], args["val"],
     args["model"], args["history"], args["log"], workers=1, training_path=args["training"])
if args.get("evaluate"):
    from cxrflow.evaluate import EvaluationSettings, evaluate_main
    o = args["out"]
    files = {"predictions": "predictions.csv", "report": "classification_report.txt", "metrics": "metrics.json",
             "history_plot": "history.png", "confusion": "confusion_matrix.png", "roc": "roc.png"}
    evaluate_main(args["model"], {s: args[s] for s in ("train", "val", "test")},
                  {name: f"{o}/{file}" for name, file in files.items()},
                  EvaluationSettings(tuple(args["classes"]), args["experiment"]), {"experiment": "tiny", "fold": 0},
                  args["log"], history_csv=args["history"])
"""


def write_splits(root: Path, sizes: dict[str, int]) -> dict[str, str]:
    """Tiny 32x32 grayscale PNGs (COVID-19 = bright square) and their split CSVs."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            label = CLASSES[i % 2]
            image = rng.integers(0, 60, (32, 32), dtype=np.uint8)
            if label == "COVID-19":
                image[8:24, 8:24] += 150
            path = root / f"{split}_{i}.png"
            cv2.imwrite(str(path), image)
            rows.append(
                {
                    "image_id": f"{split}{i}",
                    "label": label,
                    "patient_id": f"{split}p{i // 2}",
                    "path": str(path),
                    "source": "synthetic",
                }
            )
        paths[split] = str(root / f"{split}.csv")
        pd.DataFrame(rows, columns=["image_id", "label", "patient_id", "path", "source"]).to_csv(
            paths[split], index=False
        )
    return paths


def experiment(backend: str, **changes) -> dict:
    """A complete experiment dict (all schema keys), tiny: random weights, 32 px, few epochs."""
    return {
        "arch": "vgg19",
        "weights": "none",
        "freeze_base": True,
        "image_size": 32,
        "epochs": 2,
        "batch_size": 8,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "dropout": 0.5,
        "augmentation": {"rotation": 20, "width_shift": 0.2, "height_shift": 0.2, "horizontal_flip": True, "zoom": 0.1},
        "backend": backend,
        "checkpoint_every": 1,
        "save_optimizer": False,
        "seed": 0,
        "bank_views": 0,
        "augment_in_step": False,
        "steps_per_execution": 1,
        "precision": "float32",
        "select_epoch": "last",
        "select_monitor": "val_loss",
        **changes,
    }


def launch(args: dict) -> subprocess.Popen:
    env = {**os.environ, "KERAS_BACKEND": args["experiment"]["backend"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_args(out: Path, splits: dict[str, str], exp: dict, evaluate: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    return {
        "experiment": exp,
        "classes": CLASSES,
        **splits,
        "out": str(out),
        "model": str(out / "model.keras"),
        "history": str(out / "history.csv"),
        "checkpoints": str(out / "checkpoints"),
        "training": str(out / "training.json"),
        "log": str(out / "train.log"),
        "evaluate": evaluate,
    }


def kill_stages(records: dict) -> None:
    """SIGKILL each run at each of its stages, all runs watched at once, and relaunch it after each kill.

    A stage is ("view", path): the bank's first view is written, the build going on; or
    ("epochs", n): the checkpoint of epoch >= n exists. Each kill is recorded as
    (returncode, output, epochs checkpointed) under the stage's name.
    """
    pending = {key: list(r["stages"]) for key, r in records.items() if r.get("stages")}
    deadline = time.monotonic() + 480
    while pending and time.monotonic() < deadline:
        for key in list(pending):
            record, (name, target) = records[key], pending[key][0]
            state = Path(record["args"]["checkpoints"]) / "state.json"
            proc = record["proc"]
            ready = Path(target).is_file() if name == "view" else epochs_checkpointed(state) >= target
            if not ready and proc.poll() is None:
                continue
            if ready:
                proc.send_signal(signal.SIGKILL)
            output, _ = proc.communicate(timeout=60)
            record[f"killed_{name}"] = (proc.returncode, output, epochs_checkpointed(state))
            if proc.returncode != -signal.SIGKILL:  # ended before its stage: nothing to resume
                record["proc"] = launch(record["args"])
                del pending[key]
                continue
            record["proc"] = launch(record["args"])
            pending[key].pop(0)
            if not pending[key]:
                del pending[key]
        time.sleep(0.01)


# The checks of resuming, stale checkpoints and empty validation splits run on the
# backend the README's set-up installs (tensorflow); jax and torch, where installed,
# each train and evaluate end to end.
ROLE_TESTS = {
    "test_killed_training_resumes_from_last_checkpoint": "resume",
    "test_stale_checkpoint_is_discarded": "stale",
    "test_empty_validation_split_is_logged": "empty_val",
    "test_killed_bank_build_and_head_training_resume": "bank",
    "test_in_step_augmentation_bf16_resumes_and_keeps_best_epoch": "step",
}
# The fast feeds, each killed and resumed: the bank (killed while building, then while training
# the head) and the in-step warp (steps_per_execution 2, bfloat16, best validation epoch kept).
FEED_SETTINGS = {
    "bank": {"bank_views": 12, "epochs": 6},
    "step": {
        "augment_in_step": True,
        "steps_per_execution": 2,
        "precision": "mixed_bfloat16",
        "select_epoch": "best_val",
        "select_monitor": "val_loss",
        "epochs": 6,
    },
}
DEFAULT_BACKEND = "tensorflow"


def installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def wanted_runs(request: pytest.FixtureRequest) -> set[tuple[str, str]]:
    """(role, backend) of every run a selected test of this module reads, and only those:
    a lane that selects the jax and torch cases starts no tensorflow run."""
    wanted = set()
    for item in request.session.items:
        if item.module is not request.module:
            continue
        if item.originalname == "test_train_and_evaluate_end_to_end":
            backend = item.callspec.params["backend"]
            wanted.add(("resume" if backend == DEFAULT_BACKEND else "plain", backend))
        elif item.originalname in ROLE_TESTS:
            wanted.add((ROLE_TESTS[item.originalname], DEFAULT_BACKEND))
    return {(role, backend) for role, backend in wanted if installed(backend)}


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """The wanted subprocess runs at once (2 cores stay busy).

    - resume: 6 epochs, checkpoint every epoch, SIGKILLed after epoch 2's checkpoint, rerun;
    - stale: starts beside a checkpoint of other settings, which must be discarded;
    - empty_val: an empty validation split;
    - plain: 2 epochs on another backend;
    - bank, step: the fast feeds (FEED_SETTINGS), killed and resumed like ``resume``.
    Every final run also evaluates, so each backend and feed is checked end to end.
    """
    root = tmp_path_factory.mktemp("runs")
    splits = write_splits(root / "data", {"train": 16, "val": 4, "test": 6})
    no_val = write_splits(root / "data_noval", {"train": 16, "val": 0, "test": 6})
    records: dict[tuple[str, str], dict] = {}
    for role, backend in sorted(wanted_runs(request)):
        exp = experiment(backend, epochs=6) if role == "resume" else experiment(backend, **FEED_SETTINGS.get(role, {}))
        args = run_args(root / f"{role}-{backend}", no_val if role == "empty_val" else splits, exp, evaluate=True)
        if role == "stale":
            ckpt = Path(args["checkpoints"])
            ckpt.mkdir()
            (ckpt / "state.json").write_text(json.dumps({"epochs_done": 1, "fingerprint": "other settings"}))
            (ckpt / "checkpoint.keras").write_bytes(b"stale")
        records[(role, backend)] = {"role": role, "backend": backend, "args": args, "proc": launch(args)}
    for record in records.values():
        if record["role"] == "bank":
            record["stages"] = [("view", Path(record["args"]["checkpoints"]) / "bank" / "view000.npy")]
        if record["role"] in ("resume", "bank", "step"):
            record["stages"] = record.get("stages", []) + [("epochs", 2)]
    kill_stages(records)
    for record in records.values():
        output, _ = record["proc"].communicate(timeout=300)
        record.update(returncode=record["proc"].returncode, output=output, log=Path(record["args"]["log"]).read_text())
    return records


BACKEND_PARAMS = [pytest.param(b, marks=getattr(pytest.mark, b)) if b != DEFAULT_BACKEND else b for b in BACKENDS]


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_train_and_evaluate_end_to_end(backend: str, runs: dict) -> None:
    if not installed(backend):
        pytest.skip(f"Keras backend {backend!r} is not installed (pip install -e '.[{backend}]', README Tests)")
    run = runs[("resume" if backend == DEFAULT_BACKEND else "plain", backend)]
    args, log = run["args"], run["log"]
    assert run["returncode"] == 0, run["output"][-3000:] + log
    out = Path(args["out"])
    history = pd.read_csv(args["history"])
    has_val = run["role"] != "empty_val"
    assert list(history.columns) == ["epoch", "loss", "accuracy"] + (["val_loss", "val_accuracy"] if has_val else [])
    assert history["epoch"].tolist() == list(range(1, args["experiment"]["epochs"] + 1))
    assert not Path(args["checkpoints"]).exists()  # removed after success
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 6 and list(predictions.columns)[-2:] == ["prob_COVID-19", "prob_Normal"]
    np.testing.assert_allclose(predictions[["prob_COVID-19", "prob_Normal"]].sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == backend and metrics["experiment"] == "tiny"
    assert metrics["counts"]["test"] == {"images": 6, "patients": 3, "images_per_class": {"COVID-19": 3, "Normal": 3}}
    assert metrics["metrics"]["per_class"]["Normal"]["support"] == 3
    assert "precision" in (out / "classification_report.txt").read_text()
    for png in ("history.png", "confusion_matrix.png", "roc.png"):
        read_figure(out / png)
    assert f"backend={backend}" in log and "train_images/s=" in log
    record = json.loads(Path(args["training"]).read_text())
    assert record["select_epoch"] == "last" and record["chosen_epoch"] == args["experiment"]["epochs"]
    assert record["feed"] == "host"


def role(runs: dict, name: str) -> dict:
    return runs[(name, DEFAULT_BACKEND)]


def test_killed_training_resumes_from_last_checkpoint(runs: dict) -> None:
    """SIGKILL after the epoch-2 checkpoint, rerun: it resumes and every epoch is in history.csv once."""
    run = role(runs, "resume")
    killed_rc, killed_output, done = run["killed_epochs"]
    assert killed_rc == -signal.SIGKILL, f"not killed mid-run (rc {killed_rc}): {killed_output[-2000:]}"
    assert 2 <= done < 6
    assert run["returncode"] == 0, run["output"][-3000:]
    assert f"resumed from epoch {done}" in run["log"]
    assert f"trained epochs {done + 1}..6" in run["log"]
    assert pd.read_csv(run["args"]["history"])["epoch"].tolist() == [1, 2, 3, 4, 5, 6]


def test_stale_checkpoint_is_discarded(runs: dict) -> None:
    run = role(runs, "stale")
    assert "settings or training split changed" in run["log"] and "resumed" not in run["log"]


def test_empty_validation_split_is_logged(runs: dict) -> None:
    run = role(runs, "empty_val")
    assert "validation split" in run["log"] and "is empty" in run["log"]


def check_resumed(run: dict) -> int:
    killed_rc, killed_output, done = run["killed_epochs"]
    assert killed_rc == -signal.SIGKILL, f"not killed mid-run (rc {killed_rc}): {killed_output[-2000:]}"
    assert 2 <= done < 6
    assert run["returncode"] == 0, run["output"][-3000:] + run["log"][-3000:]
    assert f"resumed from epoch {done}" in run["log"]
    assert pd.read_csv(run["args"]["history"])["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    return done


def test_killed_bank_build_and_head_training_resume(runs: dict) -> None:
    """Killed after the first bank view, the rerun keeps the views built; killed again in the head's
    training, it resumes from the checkpoint; the saved full model evaluates like any other."""
    run = role(runs, "bank")
    build_rc, build_output, _ = run["killed_view"]
    assert build_rc == -signal.SIGKILL, f"bank build not killed (rc {build_rc}): {build_output[-2000:]}"
    check_resumed(run)
    assert "views already built" in run["log"] and "feature bank ready: 12 views x 16 images" in run["log"]
    record = json.loads(Path(run["args"]["training"]).read_text())
    assert record == {
        "select_epoch": "last",
        "monitor": "val_loss",
        "chosen_epoch": 6,
        "value": pytest.approx(pd.read_csv(run["args"]["history"])["val_loss"].iloc[-1]),
        "epochs": 6,
        "feed": "bank",
        "bank_views": 12,
        "precision": "float32",
    }
    assert (Path(run["args"]["out"]) / "metrics.json").is_file()
    assert not Path(run["args"]["checkpoints"]).exists()


def test_in_step_augmentation_bf16_resumes_and_keeps_best_epoch(runs: dict) -> None:
    """training.json's epoch is history.csv's lowest val_loss (first on ties), chosen on validation data."""
    run = role(runs, "step")
    check_resumed(run)
    history = pd.read_csv(run["args"]["history"])
    record = json.loads(Path(run["args"]["training"]).read_text())
    best = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    assert record["chosen_epoch"] == best and record["monitor"] == "val_loss" and record["feed"] == "in_step"
    assert record["value"] == history["val_loss"].min() and record["precision"] == "mixed_bfloat16"
    assert f"kept epoch {best} of 6" in run["log"] and "feed=in_step" in run["log"]
    predictions = pd.read_csv(Path(run["args"]["out"]) / "predictions.csv")
    np.testing.assert_allclose(predictions[["prob_COVID-19", "prob_Normal"]].sum(axis=1), 1.0, atol=1e-5)
