"""Compile and fit one experiment on one fold, resumable after a kill.

Checkpoints are whole ``.keras`` models (weights + optimizer state) written
atomically every ``checkpoint_every`` epochs into ``checkpoint_dir``, beside
``state.json`` (epochs done + a fingerprint of the settings) and the running
``history.csv``. They live outside Snakemake's outputs because Snakemake deletes
the outputs of a killed job before rerunning it. A rerun loads the checkpoint
and continues with ``fit(initial_epoch=...)``: only public, backend-neutral Keras.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import pandas as pd

from .archive import normalise_keras_archive
from .augment import AugmentedBatches
from .data import load_split
from .joblog import open_log
from .model import build_model, preprocess_batch

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
HISTORY_ORDER = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# Settings that may change without invalidating a checkpoint (more epochs continue the run).
_RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "save_optimizer")


def compile_model(model: keras.Model, experiment: Mapping[str, Any]) -> keras.Model:
    """Optimizer by name and learning rate, categorical cross-entropy, accuracy (the article's setup)."""
    optimizer = _OPTIMIZERS[experiment["optimizer"]](learning_rate=experiment["learning_rate"])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def fingerprint(
    experiment: Mapping[str, Any], classes: Sequence[str], train_csv: str | Path, mask: Mapping[str, Any] | None = None
) -> str:
    """Hash of what a checkpoint depends on, so a changed config or split never resumes a stale run."""
    settings = {k: v for k, v in experiment.items() if k not in _RESUMABLE_CHANGES}
    content = {"experiment": settings, "classes": list(classes)}
    if mask is not None:  # only then: existing full-image checkpoints keep their fingerprint
        content["mask"] = dict(mask)
    payload = json.dumps(content, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode())
    digest.update(Path(train_csv).read_bytes())
    return digest.hexdigest()


class Checkpoints:
    """File layout of one run's checkpoint folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.model = self.folder / "checkpoint.keras"
        self.state = self.folder / "state.json"
        self.history = self.folder / "history.csv"

    def load_state(self) -> dict[str, Any] | None:
        if not (self.state.is_file() and self.model.is_file()):
            return None
        return json.loads(self.state.read_text())

    def save(self, model: keras.Model, epochs_done: int, fingerprint: str) -> None:
        """Model first, state last, each via rename: a kill mid-save leaves the previous checkpoint whole."""
        tmp_model = self.folder / "checkpoint.tmp.keras"
        model.save(tmp_model)
        os.replace(tmp_model, self.model)
        tmp_state = self.folder / "state.json.tmp"
        tmp_state.write_text(json.dumps({"epochs_done": epochs_done, "fingerprint": fingerprint}))
        os.replace(tmp_state, self.state)

    def truncate_history(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint: they are trained again, and must appear once."""
        if not self.history.is_file():
            return
        history = pd.read_csv(self.history)
        history[history["epoch"] <= epochs_done].to_csv(self.history, index=False)

    def append_history(self, row: Mapping[str, float]) -> None:
        new = not self.history.is_file()
        with self.history.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


class CheckpointEvery(keras.callbacks.Callback):
    """Log each epoch (1-based) into history.csv and checkpoint every N epochs and at the end."""

    def __init__(self, store: Checkpoints, every: int, epochs: int, fingerprint: str) -> None:
        super().__init__()
        self.store, self.every, self.epochs, self.fingerprint = store, every, epochs, fingerprint

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        row.update({k: float(logs[k]) for k in HISTORY_ORDER[1:] if k in logs})
        row.update({k: float(v) for k, v in logs.items() if k not in row})
        self.store.append_history(row)
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.store.save(self.model, epoch + 1, self.fingerprint)


class ThroughputLog(keras.callbacks.Callback):
    """Log per-epoch metrics and training images/s (train batches only; the first epoch includes compilation)."""

    def __init__(self, log: logging.Logger, n_images: int, epochs: int) -> None:
        super().__init__()
        self.log, self.n_images, self.epochs = log, n_images, epochs
        self.rates: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.start = self.last_batch = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: Mapping[str, float] | None = None) -> None:
        self.last_batch = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        rate = self.n_images / max(self.last_batch - self.start, 1e-9)
        self.rates.append(rate)
        metrics = " ".join(f"{k}={float(v):.4f}" for k, v in (logs or {}).items())
        self.log.info("epoch %d/%d %s train_images/s=%.1f", epoch + 1, self.epochs, metrics, rate)

    def steady_rate(self) -> float | None:
        """Mean images/s without the first (warm-up) epoch of this process, None if too few epochs."""
        return sum(self.rates[1:]) / len(self.rates[1:]) if len(self.rates) > 1 else None


def resume_or_build(
    experiment: Mapping[str, Any], n_classes: int, store: Checkpoints, settings_print: str, log: logging.Logger
) -> tuple[keras.Model, int]:
    """Return (compiled model, epochs already done): the checkpoint when it matches, else a fresh model."""
    state = store.load_state()
    if state is not None and state["fingerprint"] == settings_print:
        log.info("resumed from epoch %d (checkpoint %s)", state["epochs_done"], store.model)
        store.truncate_history(state["epochs_done"])
        return keras.saving.load_model(store.model), int(state["epochs_done"])
    if store.folder.exists():
        reason = "settings or training split changed" if state else "no complete checkpoint"
        log.warning("discarding %s (%s); starting from epoch 0", store.folder, reason)
        shutil.rmtree(store.folder)
    store.folder.mkdir(parents=True)
    log.info("starting from epoch 0 (no checkpoint)")
    return compile_model(build_model(experiment, n_classes), experiment), 0


def train(
    experiment: Mapping[str, Any],
    classes: Sequence[str],
    train_csv: str | Path,
    val_csv: str | Path,
    model_path: str | Path,
    history_path: str | Path,
    checkpoint_dir: str | Path,
    log: logging.Logger,
    workers: int = 1,
    mask: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Train, save the final ``.keras`` model and history.csv (every epoch, resumed ones included); return the history.

    ``mask`` ({fraction, fill}) trains the border-only control: every image's centre is blanked at loading.
    """
    backend = keras.backend.backend()
    if backend != experiment["backend"]:
        raise RuntimeError(
            f"experiment asks for backend {experiment['backend']!r} but keras was imported with {backend!r}: "
            "set KERAS_BACKEND before the first keras import"
        )
    keras.utils.set_random_seed(experiment["seed"])
    size, arch = experiment["image_size"], experiment["arch"]
    x_train, y_train, _ = load_split(train_csv, classes, size, mask)
    x_val, y_val, _ = load_split(val_csv, classes, size, mask)
    if len(x_train) == 0:
        raise ValueError(f"{train_csv}: the training split is empty")
    log.info("backend=%s arch=%s weights=%s train=%d val=%d images of %dpx, workers=%d",
             backend, arch, experiment["weights"], len(x_train), len(x_val), size, workers)
    # What the scheduler gave this job: on a cluster the GPU shows up here or nowhere.
    log.info("devices: CUDA_VISIBLE_DEVICES=%s SLURM_JOB_ID=%s SLURM_JOB_GPUS=%s",
             os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), os.environ.get("SLURM_JOB_ID", "none"),
             os.environ.get("SLURM_JOB_GPUS", "none"))
    if mask is not None:
        log.info("border-only control: central %.0f%% of each side set to %d", 100 * mask["fraction"], mask["fill"])

    store = Checkpoints(checkpoint_dir)
    settings_print = fingerprint(experiment, classes, train_csv, mask)
    model, initial_epoch = resume_or_build(experiment, len(classes), store, settings_print, log)

    def preprocess(x):
        return preprocess_batch(arch, x)

    batches = dict(n_classes=len(classes), batch_size=experiment["batch_size"], preprocess=preprocess,
                   seed=experiment["seed"], workers=workers)
    train_data = AugmentedBatches(x_train, y_train, augmentation=experiment["augmentation"], shuffle=True,
                                  epoch=initial_epoch, **batches)
    val_data = AugmentedBatches(x_val, y_val, augmentation=None, shuffle=False, **batches) if len(x_val) else None
    if val_data is None:
        log.warning("validation split %s is empty: no val_loss/val_accuracy are monitored", val_csv)

    epochs = experiment["epochs"]
    throughput = ThroughputLog(log, len(x_train), epochs)
    checkpoints = CheckpointEvery(store, experiment["checkpoint_every"], epochs, settings_print)
    model.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=initial_epoch,
              callbacks=[checkpoints, throughput], verbose=0)
    rate = throughput.steady_rate()
    log.info("trained epochs %d..%d on %s; steady train images/s=%s", initial_epoch + 1, epochs, backend,
             f"{rate:.1f}" if rate else "n/a (fewer than 2 epochs in this run)")

    save_final(model, model_path, experiment["save_optimizer"])
    shutil.copyfile(store.history, history_path)
    shutil.rmtree(store.folder)
    log.info("saved %s and %s; removed checkpoints %s", model_path, history_path, store.folder)
    return pd.read_csv(history_path)


def save_final(model: keras.Model, path: str | Path, with_optimizer: bool = False) -> None:
    """The trained model as evaluation needs it: architecture and weights, by default without the
    optimizer's state (Adam's two moments per weight made the file three times its size). The
    copy is uncompiled; ``keras.saving.load_model`` returns it ready to predict. The file is made
    byte-reproducible (cxrflow.archive): the same weights give the same bytes and the same hash."""
    if with_optimizer:
        model.save(path)
    else:
        slim = model.__class__.from_config(model.get_config())  # uncompiled (clone_model would compile it)
        slim.set_weights(model.get_weights())
        slim.save(path)
    normalise_keras_archive(path)


@dataclass(frozen=True)
class TrainingSettings:
    """One training job's settings under the names the train rules' ``params:`` give them.

    ``experiment`` is the experiment's config section; ``checkpoint_dir`` is kept
    outside the outputs so a killed job resumes; ``mask`` ({fraction, fill}) trains
    the border-only control.
    """

    experiment: Mapping[str, Any]
    classes: tuple[str, ...]
    checkpoint_dir: str
    mask: Mapping[str, Any] | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainingSettings:
        """From a rule's params (a Snakemake Namedlist or a dict): experiment, classes, checkpoint_dir, mask."""
        return cls(params["experiment"], tuple(params["classes"]), params["checkpoint_dir"], params.get("mask"))


def main(settings: TrainingSettings, train_csv: str, val_csv: str, model_path: str, history_path: str,
         log_path: str, workers: int = 1) -> None:
    """Entry point for scripts/train.py: KERAS_BACKEND must already be set by the caller."""
    log = open_log(log_path)
    train(settings.experiment, list(settings.classes), train_csv, val_csv, model_path, history_path,
          settings.checkpoint_dir, log, workers, settings.mask)  # fmt: skip
