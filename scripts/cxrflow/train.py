"""Compile and fit one experiment on one fold, resumable after a kill.

Checkpoints are whole ``.keras`` models (weights + optimizer state) written
atomically every ``checkpoint_every`` epochs into ``checkpoint_dir``, beside
``state.json`` (epochs done + a fingerprint of the settings) and the running
``history.csv``. They live outside Snakemake's outputs because Snakemake deletes
the outputs of a killed job before rerunning it. A rerun loads the checkpoint
and continues with ``fit(initial_epoch=...)``: only public, backend-neutral Keras.

Three ways to feed the same training (experiment keys, all off by default):

* on the fly, on the host (the original experiment): OpenCV warps each batch;
* ``augment_in_step``: uint8 images and the drawn transforms go to the device and
  the warp, the conversion and the base run in one compiled step
  (``steps_per_execution`` steps per call, ``precision`` mixed where set);
* ``bank_views: K`` (frozen base only): the base's features of K seeded augmented
  views of each training image are computed once (:mod:`cxrflow.bank`), then the
  head alone trains every epoch on one view per image. An approximation (finite
  views) that turns the 500 epochs of the original experiment into minutes on a CPU.

``select_epoch: best_val`` keeps the weights of the epoch with the best monitored
validation value instead of the last; ``training.json`` records which epoch was kept.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from .archive import normalise_keras_archive
from .augment import AugmentedBatches
from .bank import BankBatches, FeatureBank
from .data import load_split
from .rule_log import open_log
from .model import build_head, build_model, build_step_model, classifier_name, preprocess_batch

_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
HISTORY_ORDER = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# Settings that may change without invalidating a checkpoint (more epochs continue the run).
_RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "save_optimizer", "steps_per_execution")
MONITOR_MODES = {"val_loss": "min", "val_accuracy": "max"}


def compile_model(model: keras.Model, experiment: Mapping[str, Any]) -> keras.Model:
    """Optimizer by name and learning rate, categorical cross-entropy, accuracy (the article's setup)."""
    optimizer = _OPTIMIZERS[experiment["optimizer"]](learning_rate=experiment["learning_rate"])
    model.compile(
        optimizer=optimizer,
        loss="categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=experiment["steps_per_execution"],
    )
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
    """File layout of one run's checkpoint folder (the feature bank, if any, in ``bank/``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.model = self.folder / "checkpoint.keras"
        self.state = self.folder / "state.json"
        self.history = self.folder / "history.csv"
        self.best = self.folder / "best.npz"
        self.bank = self.folder / "bank"

    def load_state(self) -> dict[str, Any] | None:
        if not (self.state.is_file() and self.model.is_file()):
            return None
        return json.loads(self.state.read_text())

    def save(self, model: keras.Model, epochs_done: int, fingerprint: str, best: BestEpoch | None = None) -> None:
        """Model (and best weights) first, state last, each via rename: a kill mid-save leaves the previous
        checkpoint whole."""
        tmp_model = self.folder / "checkpoint.tmp.keras"
        model.save(tmp_model)
        os.replace(tmp_model, self.model)
        state: dict[str, Any] = {"epochs_done": epochs_done, "fingerprint": fingerprint}
        if best is not None:
            if best.weights is not None and not best.weights_saved:
                tmp_best = self.folder / "best.tmp.npz"
                with tmp_best.open("wb") as f:
                    np.savez(f, *best.weights)
                os.replace(tmp_best, self.best)
                best.weights_saved = True
            state["best"] = {"epoch": best.epoch, "value": best.value}
        tmp_state = self.folder / "state.json.tmp"
        tmp_state.write_text(json.dumps(state))
        os.replace(tmp_state, self.state)

    def clear(self) -> None:
        """Remove every file of the folder but the bank (which checks its own fingerprint)."""
        for path in self.folder.iterdir():
            if path.is_dir() and path != self.bank:
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()

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


class BestEpoch:
    """The epoch with the best monitored validation value so far (first one on ties), and its weights.

    The weights live in memory until the next checkpoint writes them beside the model, so
    the best kept on disk never belongs to an epoch after the checkpoint.
    """

    def __init__(self, monitor: str, epoch: int | None = None, value: float | None = None) -> None:
        if monitor not in MONITOR_MODES:
            raise ValueError(f"unknown monitor {monitor!r}; expected one of {sorted(MONITOR_MODES)}")
        self.monitor, self.mode = monitor, MONITOR_MODES[monitor]
        self.epoch, self.value = epoch, value
        self.weights: list[np.ndarray] | None = None
        self.weights_saved = epoch is not None

    def update(self, epoch: int, logs: Mapping[str, float], model: keras.Model) -> None:
        if self.monitor not in logs:
            raise ValueError(f"select_epoch best_val: {self.monitor} is not among the logged metrics {sorted(logs)}")
        value = float(logs[self.monitor])
        better = self.value is None or (value < self.value if self.mode == "min" else value > self.value)
        if better:
            self.epoch, self.value = epoch, value
            self.weights = [np.array(w) for w in model.get_weights()]
            self.weights_saved = False

    def restore(self, model: keras.Model, store: Checkpoints) -> None:
        """Put the best epoch's weights into ``model`` (from memory, else from the checkpoint folder)."""
        if self.weights is None:
            with np.load(store.best) as saved:
                self.weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        model.set_weights(self.weights)


class CheckpointEvery(keras.callbacks.Callback):
    """Log each epoch (1-based) into history.csv, follow the best epoch, checkpoint every N epochs and at the end."""

    def __init__(
        self, store: Checkpoints, every: int, epochs: int, fingerprint: str, best: BestEpoch | None = None
    ) -> None:
        super().__init__()
        self.store, self.every, self.epochs, self.fingerprint = store, every, epochs, fingerprint
        self.best = best

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        row.update({k: float(logs[k]) for k in HISTORY_ORDER[1:] if k in logs})
        row.update({k: float(v) for k, v in logs.items() if k not in row})
        self.store.append_history(row)
        if self.best is not None:
            self.best.update(epoch + 1, logs, self.model)
        if (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.store.save(self.model, epoch + 1, self.fingerprint, self.best)


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


def feed(experiment: Mapping[str, Any]) -> str:
    """How batches reach the model: ``bank`` (features), ``in_step`` (device-side warp) or ``host`` (OpenCV)."""
    if experiment["bank_views"]:
        if not experiment["freeze_base"]:
            raise ValueError("bank_views needs freeze_base: true (the bank holds the features of a fixed base)")
        return "bank"
    return "in_step" if experiment["augment_in_step"] else "host"


def resume_or_build(
    store: Checkpoints, settings_print: str, log: logging.Logger, build: Callable[[], keras.Model]
) -> tuple[keras.Model, int, dict[str, Any] | None]:
    """Return (compiled model, epochs already done, the checkpoint's best epoch): the checkpoint when it
    matches, else ``build()``'s fresh model."""
    state = store.load_state()
    if state is not None and state["fingerprint"] == settings_print:
        log.info("resumed from epoch %d (checkpoint %s)", state["epochs_done"], store.model)
        store.truncate_history(state["epochs_done"])
        return keras.saving.load_model(store.model), int(state["epochs_done"]), state.get("best")
    if store.folder.exists() and any(p != store.bank for p in store.folder.iterdir()):
        reason = "settings or training split changed" if state else "no complete checkpoint"
        log.warning("discarding checkpoint in %s (%s); starting from epoch 0", store.folder, reason)
        store.clear()
    store.folder.mkdir(parents=True, exist_ok=True)
    log.info("starting from epoch 0 (no checkpoint)")
    return build(), 0, None


def bank_fingerprint(
    experiment: Mapping[str, Any],
    classes: Sequence[str],
    train_csv: str | Path,
    val_csv: str | Path,
    mask: Mapping[str, Any] | None,
    base: keras.Model,
) -> str:
    """What the bank's features depend on: the settings of input, augmentation, seed and precision, both
    splits, and the base's weights themselves (a base built otherwise than the bank's never pairs with it)."""
    keys = ("arch", "weights", "image_size", "augmentation", "seed", "precision")
    digest = hashlib.sha256(fingerprint({k: experiment[k] for k in keys}, classes, train_csv, mask).encode())
    digest.update(Path(val_csv).read_bytes())
    for weight in base.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def _in_experiment_precision(fn: Any) -> Any:
    """Run ``fn(experiment, ...)`` under the experiment's Keras dtype policy, restored afterwards."""

    @functools.wraps(fn)
    def wrapper(experiment: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(experiment["precision"])
        try:
            return fn(experiment, *args, **kwargs)
        finally:
            keras.config.set_dtype_policy(previous_policy)

    return wrapper


@_in_experiment_precision
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
    weights_file: str | Path | None = None,
    training_path: str | Path | None = None,
) -> pd.DataFrame:
    """Train, save the final ``.keras`` model, history.csv (every epoch, resumed ones included) and,
    where ``training_path`` is given, training.json (the kept epoch); return the history.

    ``mask`` ({fraction, fill}) trains the border-only control: every image's centre is blanked at loading.
    ``weights_file``: the fetched ImageNet file of a ``weights: imagenet`` experiment (no download here).
    """
    backend = keras.backend.backend()
    if backend != experiment["backend"]:
        raise RuntimeError(
            f"experiment asks for backend {experiment['backend']!r} but keras was imported with {backend!r}: "
            "set KERAS_BACKEND before the first keras import"
        )
    how = feed(experiment)
    keras.utils.set_random_seed(experiment["seed"])
    size, arch = experiment["image_size"], experiment["arch"]
    x_train, y_train, _ = load_split(train_csv, classes, size, mask)
    x_val, y_val, _ = load_split(val_csv, classes, size, mask)
    if len(x_train) == 0:
        raise ValueError(f"{train_csv}: the training split is empty")
    select, monitor = experiment["select_epoch"], experiment["select_monitor"]
    if select == "best_val" and len(x_val) == 0:
        raise ValueError(f"select_epoch: best_val needs validation images, but {val_csv} is empty")
    log.info(
        "backend=%s arch=%s weights=%s train=%d val=%d images of %dpx, workers=%d",
        backend,
        arch,
        experiment["weights"],
        len(x_train),
        len(x_val),
        size,
        workers,
    )
    log.info(
        "feed=%s bank_views=%d precision=%s steps_per_execution=%d select_epoch=%s (monitor %s)",
        how,
        experiment["bank_views"],
        experiment["precision"],
        experiment["steps_per_execution"],
        select,
        monitor,
    )
    # What the scheduler gave this job: on a cluster the GPU shows up here or nowhere.
    log.info(
        "devices: CUDA_VISIBLE_DEVICES=%s SLURM_JOB_ID=%s SLURM_JOB_GPUS=%s",
        os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
        os.environ.get("SLURM_JOB_ID", "none"),
        os.environ.get("SLURM_JOB_GPUS", "none"),
    )
    if mask is not None:
        log.info("border-only control: central %.0f%% of each side set to %d", 100 * mask["fraction"], mask["fill"])

    store = Checkpoints(checkpoint_dir)
    settings_print = fingerprint(experiment, classes, train_csv, mask)
    n_classes, batch_size, seed = len(classes), experiment["batch_size"], experiment["seed"]
    # Built first, right after the seed: a rerun rebuilds the same (random or loaded) base.
    classifier = build_model(experiment, n_classes, weights_file)

    def preprocess(x):
        return preprocess_batch(arch, x)

    if how == "bank":
        extractor = keras.Model(classifier.inputs, classifier.get_layer("flatten").input)

        def features(images: np.ndarray) -> np.ndarray:
            return keras.ops.convert_to_numpy(extractor.predict_on_batch(preprocess(images)))

        store.folder.mkdir(parents=True, exist_ok=True)
        bank = FeatureBank(store.bank, bank_fingerprint(experiment, classes, train_csv, val_csv, mask, extractor))
        f_train, f_val = bank.build(
            features, x_train, x_val, experiment["bank_views"], seed, experiment["augmentation"], batch_size, log
        )

        def build() -> keras.Model:
            return compile_model(build_head(f_train.shape[2:], n_classes, experiment["dropout"]), experiment)
    elif how == "in_step":

        def build() -> keras.Model:
            return compile_model(build_step_model(classifier, arch), experiment)
    else:

        def build() -> keras.Model:
            return compile_model(classifier, experiment)

    model, initial_epoch, best_state = resume_or_build(store, settings_print, log, build)
    best = None
    if select == "best_val":
        best = BestEpoch(monitor, **(best_state or {}))

    if how == "bank":
        train_data = BankBatches(f_train, y_train, n_classes, batch_size, seed, epoch=initial_epoch)
        val_data = (f_val, keras.utils.to_categorical(y_val, n_classes).astype(np.float32)) if len(x_val) else None
    else:
        batches = dict(
            n_classes=n_classes,
            batch_size=batch_size,
            preprocess=preprocess,
            seed=seed,
            workers=workers,
            in_step=how == "in_step",
        )
        train_data = AugmentedBatches(
            x_train, y_train, augmentation=experiment["augmentation"], shuffle=True, epoch=initial_epoch, **batches
        )
        val_data = AugmentedBatches(x_val, y_val, augmentation=None, shuffle=False, **batches) if len(x_val) else None
    if val_data is None:
        log.warning("validation split %s is empty: no val_loss/val_accuracy are monitored", val_csv)

    epochs = experiment["epochs"]
    throughput = ThroughputLog(log, len(x_train), epochs)
    checkpoints = CheckpointEvery(store, experiment["checkpoint_every"], epochs, settings_print, best)
    fit_start = time.perf_counter()
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=[checkpoints, throughput],
        verbose=0,
        validation_batch_size=batch_size,
    )
    rate = throughput.steady_rate()
    log.info(
        "trained epochs %d..%d on %s in %.1f s; steady train images/s=%s",
        initial_epoch + 1,
        epochs,
        backend,
        time.perf_counter() - fit_start,
        f"{rate:.1f}" if rate else "n/a (fewer than 2 epochs in this run)",
    )

    if best is not None:
        best.restore(model, store)
        log.info("kept epoch %d of %d (best %s %.6g)", best.epoch, epochs, monitor, best.value)
    if how == "bank":
        classifier.get_layer("predictions").set_weights(model.get_layer("predictions").get_weights())
    elif how == "in_step":
        classifier = model.get_layer(classifier_name(experiment))
    else:
        classifier = model
    save_final(classifier, model_path, experiment["save_optimizer"])
    shutil.copyfile(store.history, history_path)
    history = pd.read_csv(history_path)
    if training_path is not None:
        write_training_record(training_path, experiment, history, best, how)
    shutil.rmtree(store.folder)
    log.info("saved %s and %s; removed checkpoints %s", model_path, history_path, store.folder)
    return history


def chosen_epoch(history: pd.DataFrame, select: str, monitor: str) -> int:
    """The epoch ``select_epoch`` keeps, from history.csv alone: the last, or the first best of ``monitor``."""
    if select == "last":
        return int(history["epoch"].iloc[-1])
    values = history[monitor]
    best = values.idxmin() if MONITOR_MODES[monitor] == "min" else values.idxmax()
    return int(history.loc[best, "epoch"])


def write_training_record(
    path: str | Path, experiment: Mapping[str, Any], history: pd.DataFrame, best: BestEpoch | None, how: str
) -> dict[str, Any]:
    """training.json: which epoch's weights model.keras holds, chosen on validation data only, and how it trained."""
    select, monitor = experiment["select_epoch"], experiment["select_monitor"]
    epoch = chosen_epoch(history, select, monitor)
    if best is not None and best.epoch != epoch:
        raise RuntimeError(f"kept epoch {best.epoch} but history.csv's best {monitor} is at epoch {epoch}")
    row = history[history["epoch"] == epoch]
    value = float(row[monitor].iloc[0]) if monitor in history else None
    record = {
        "select_epoch": select,
        "monitor": monitor if monitor in history else None,
        "chosen_epoch": epoch,
        "value": value,
        "epochs": int(history["epoch"].iloc[-1]),
        "feed": how,
        "bank_views": experiment["bank_views"],
        "precision": experiment["precision"],
    }
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return record


def save_final(model: keras.Model, path: str | Path, with_optimizer: bool = False) -> None:
    """The trained model as evaluation needs it: architecture and weights, by default without the
    optimizer's state (Adam's two moments per weight made the file three times its size). The
    copy is uncompiled; ``keras.saving.load_model`` returns it ready to predict. The file is made
    byte-reproducible (cxrflow.archive): the same weights give the same bytes and the same hash.

    Every feed (host, in-step, bank) saves its final model here and nowhere else. With
    ``with_optimizer`` the model is saved as it is: compiled (host feed) with its optimizer."""
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


def main(
    settings: TrainingSettings,
    train_csv: str,
    val_csv: str,
    model_path: str,
    history_path: str,
    log_path: str,
    workers: int = 1,
    weights_file: str | None = None,
    training_path: str | None = None,
) -> None:
    """Entry point for scripts/train.py: KERAS_BACKEND must already be set by the caller."""
    log = open_log(log_path)
    train(settings.experiment, list(settings.classes), train_csv, val_csv, model_path, history_path,
          settings.checkpoint_dir, log, workers, settings.mask, weights_file, training_path)  # fmt: skip
