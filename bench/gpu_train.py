"""GPU check of the real training path: build_model + AugmentedBatches + model.fit.

    .venv/bin/python bench/gpu_train.py jax                       # on the GPU machine, original sizes
    .venv/bin/python bench/gpu_train.py jax --feed in_step --precision mixed_bfloat16 --steps-per-execution 4
    .venv/bin/python bench/gpu_train.py jax --image-size 64 --images 32 --epochs 2   # CPU smoke run

``--feed host`` warps with OpenCV in worker threads (the default experiment); ``--feed in_step``
sends uint8 images and the drawn transforms to the device, where the warp runs in the compiled step.

Synthetic uint8 images (no network, `weights: none`: ImageNet weights change no timing). Every other
setting is the schema's default experiment (VGG19, frozen base, batch 32, Adam, the article's
augmentation). Prints the device, train img/s after a warm-up epoch, forward-only img/s, and the
projected wall time of the original experiment (500 epochs over 152 training images).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_TRAIN_IMAGES = 152  # the article's training set


def schema_default_experiment() -> dict:
    """The original experiment = the config schema's defaults (read, not repeated here)."""
    from cxrflow.config import schema_defaults

    return schema_defaults()["experiments"]["default"]


def device_lines(backend: str) -> list[str]:
    """nvidia-smi's view plus the backend's own device list (bench only: backend calls are fine here)."""
    lines = []
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        )
        lines.append(f"nvidia-smi: {smi.stdout.strip() or smi.stderr.strip()}")
    else:
        lines.append("nvidia-smi: not found (no NVIDIA driver)")
    if backend == "jax":
        import jax

        lines.append(f"jax devices: {jax.devices()}")
    elif backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (CUDA unavailable)"
        lines.append(f"torch device: {name}, torch {torch.__version__}")
    elif backend == "tensorflow":
        import tensorflow as tf

        lines.append(f"tensorflow devices: {[d.name for d in tf.config.list_physical_devices()]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=["jax", "torch", "tensorflow"])
    parser.add_argument("--arch", choices=["vgg19", "resnet50"], default=None, help="default: the schema's")
    parser.add_argument("--image-size", type=int, default=None, help="default: the schema's")
    parser.add_argument("--images", type=int, default=ORIGINAL_TRAIN_IMAGES * 4)
    parser.add_argument("--epochs", type=int, default=4, help="the first is warm-up (compilation)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument(
        "--no-augmentation",
        action="store_true",
        help="all augmentation off: does the augmentation limit the training rate?",
    )
    parser.add_argument("--feed", choices=["host", "in_step"], default="host")
    parser.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"], default="float32")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend  # before keras' first import
    sys.path.insert(0, str(REPO / "scripts"))

    import keras
    import numpy as np

    from cxrflow.augment import AugmentedBatches
    from cxrflow.model import build_model, build_step_model, preprocess_batch
    from cxrflow.train import ThroughputLog, compile_model

    original = schema_default_experiment()
    experiment = {
        **original,
        "weights": "none",
        "backend": args.backend,
        "epochs": args.epochs,
        "precision": args.precision,
        "steps_per_execution": args.steps_per_execution,
    }
    experiment["arch"] = args.arch or original["arch"]
    experiment["image_size"] = args.image_size or original["image_size"]
    augmentation = None if args.no_augmentation else experiment["augmentation"]  # None: no warp at all
    size, batch_size = experiment["image_size"], experiment["batch_size"]
    print("\n".join(device_lines(args.backend)))
    print(
        f"keras {keras.__version__} backend={keras.backend.backend()} arch={experiment['arch']} "
        f"image_size={size} batch={batch_size} images={args.images} workers={args.workers} "
        f"augmentation={augmentation} feed={args.feed} precision={args.precision} "
        f"steps_per_execution={args.steps_per_execution}"
    )

    keras.config.set_dtype_policy(args.precision)
    keras.utils.set_random_seed(experiment["seed"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, size, size, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, args.images)
    model = build_model(experiment, 2)
    trained = compile_model(
        build_step_model(model, experiment["arch"]) if args.feed == "in_step" else model, experiment
    )

    def preprocess(x):
        return preprocess_batch(experiment["arch"], x)

    data = AugmentedBatches(
        images,
        labels,
        2,
        batch_size,
        preprocess,
        augmentation,
        seed=experiment["seed"],
        shuffle=True,
        workers=args.workers,
        in_step=args.feed == "in_step",
    )

    class PrintLog:
        def info(self, message: str, *values) -> None:
            print(message % values)

    throughput = ThroughputLog(PrintLog(), args.images, args.epochs)
    trained.fit(data, epochs=args.epochs, callbacks=[throughput], verbose=0)
    train_rate = throughput.steady_rate()

    x = preprocess(images[:batch_size])
    model.predict_on_batch(x)  # warm-up / compile
    n_batches = max(1, args.images // batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        keras.ops.convert_to_numpy(model.predict_on_batch(x))
    forward_rate = n_batches * batch_size / (time.perf_counter() - start)

    print(
        f"train images/s (mean of epochs 2..{args.epochs}, {'augmentation on' if augmentation else 'no augmentation'}): "
        + (f"{train_rate:.1f}" if train_rate else "n/a (need --epochs >= 2)")
    )
    print(f"forward-only images/s (predict_on_batch, preprocessed batch of {batch_size}): {forward_rate:.1f}")
    if train_rate:
        seconds = original["epochs"] * ORIGINAL_TRAIN_IMAGES / train_rate
        print(
            f"projected original experiment ({original['epochs']} epochs x {ORIGINAL_TRAIN_IMAGES} images, "
            f"{experiment['arch']} {size}px, validation not counted): {seconds / 60:.1f} min"
        )


if __name__ == "__main__":
    main()
