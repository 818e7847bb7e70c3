"""Training speed of the original experiment on this machine's CPU, and what the view bank costs in F1.

    .venv/bin/python bench/train_speed.py                 # everything, one run (15-40 min on 2 cores)
    .venv/bin/python bench/train_speed.py --quick         # smoke run: tiny sizes, minutes

Data: the original experiment's own cropped 224x224 images (../shared/data/seed-covid19-detection:
all COVID-19 images and the first 99 normal rows), split per class with a fixed seed into
train / validation / test (20 % test, 10 % validation). Weights `none`: no network here, and
ImageNet weights change no timing (they do change F1: see the F1 part's note).
Every other setting is the schema's default experiment (VGG19 frozen, batch 32, Adam, the
article's augmentation, 500 epochs).

Prints, each figure with the 1-minute load average before and after it:
  1. forward-only img/s of the frozen base (predict_on_batch, preprocessed batch of 32), fp32 and bf16;
  2. training img/s of today's loop (OpenCV warp on the host, 2 worker threads) and of the new step
     (warp as Keras ops in the compiled step, uint8 in, steps_per_execution 2), fp32 and bf16;
  3. the original experiment's training job with the view bank (cxrflow.train.main in a fresh process,
     as the rule runs it): measured wall time, bank build time, head time; beside it the projected
     wall time of the 500 epochs on the fly at the rates of 2.;
  4. test F1 (per class and macro, with 95 % bootstrap intervals, each image its own unit: the
     folder gives no patient ids) of the bank vs on-the-fly augmentation on the same split at a
     CPU-sized setting (64 px, 50 epochs).
Results also go to bench/out/train_speed.json (``--json``); ``--skip`` leaves parts out, so the parts
can run one after another on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "seed-covid19-detection"
CLASSES = ["COVID-19", "Normal"]
OUT = REPO / "bench" / "out"
# The dtype policies measured: full precision and mixed bfloat16.
PRECISIONS = ("float32", "mixed_bfloat16")


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def schema_experiment(**changes) -> dict:
    """The schema's default experiment (the original one), with ``changes``."""
    from cxrflow.config import with_defaults

    config = with_defaults({"sources": {"x": {"format": "folders", "path": "."}}, "experiments": {"e": {}}})
    return {**config["experiments"]["e"], "weights": "none", **changes}


def write_split(folder: Path, seed: int = 0) -> dict[str, str]:
    """The original experiment's images: all COVID-19, the first 99 normal rows; 20 % test, 10 % val per class."""
    import numpy as np
    import pandas as pd

    covid = pd.read_csv(DATA / "covid_dataset.csv")
    normal = pd.read_csv(DATA / "normal_xray_dataset.csv").head(99)
    rows = [(f, "COVID-19", DATA / "covid_adjusted" / f) for f in covid["filename"]]
    rows += [(f, "Normal", DATA / "normal_dataset" / f) for f in normal["filename"]]
    rows = [r for r in rows if r[2].is_file()]
    rng = np.random.default_rng(seed)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for label in CLASSES:
        mine = [r for r in rows if r[1] == label]
        order = rng.permutation(len(mine))
        n_test, n_val = round(0.2 * len(mine)), round(0.1 * len(mine))
        for rank, i in enumerate(order):
            name = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            splits[name].append(mine[i])
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, items in splits.items():
        table = pd.DataFrame(
            [
                {"image_id": f, "label": label, "patient_id": f, "path": str(path), "source": "seed"}
                for f, label, path in items
            ]
        )
        paths[name] = str(folder / f"{name}.csv")
        table.to_csv(paths[name], index=False)
    return paths


def timed_fit(model, data, epochs: int, n_images: int) -> float:
    """Mean train img/s over epochs 2..epochs (the first compiles)."""
    from cxrflow.train import ThroughputLog

    class Quiet:
        def info(self, *args) -> None:
            pass

    throughput = ThroughputLog(Quiet(), n_images, epochs)
    model.fit(data, epochs=epochs, callbacks=[throughput], verbose=0)
    return throughput.steady_rate()


def rates(
    size: int,
    n_images: int,
    epochs: int,
    forward_batches: int,
    precisions: tuple[str, ...] = PRECISIONS,
) -> list[dict]:
    """Forward and training img/s at ``size`` px, fp32 and bf16; today's loop (host) in fp32 only."""
    import keras
    import numpy as np

    from cxrflow.augment import AugmentedBatches
    from cxrflow.model import build_model, build_step_model, preprocess_batch
    from cxrflow.train import compile_model

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, size, size, 1), dtype=np.uint8)
    labels = rng.integers(0, 2, n_images)
    results = []
    for precision in precisions:
        keras.config.set_dtype_policy(precision)
        exp = schema_experiment(image_size=size, precision=precision, steps_per_execution=2)
        bs = exp["batch_size"]

        def preprocess(x, arch=exp["arch"]):
            return preprocess_batch(arch, x)

        keras.utils.set_random_seed(0)
        model = build_model(exp, 2)
        x = preprocess(images[:bs])
        before = load()
        model.predict_on_batch(x)  # compile
        start = time.perf_counter()
        for _ in range(forward_batches):
            keras.ops.convert_to_numpy(model.predict_on_batch(x))
        forward = forward_batches * bs / (time.perf_counter() - start)
        results.append(
            {
                "what": "forward (base + head, predict_on_batch)",
                "precision": precision,
                "img_s": forward,
                "load": f"{before} / {load()}",
            }
        )
        print(results[-1], flush=True)
        feeds = ["host", "in_step"] if precision == "float32" else ["in_step"]
        for feed in feeds:
            keras.utils.set_random_seed(0)
            classifier = build_model(exp, 2)
            if feed == "host":
                trained = compile_model(classifier, {**exp, "steps_per_execution": 1})
            else:
                trained = compile_model(build_step_model(classifier, exp["arch"]), exp)
            data = AugmentedBatches(
                images,
                labels,
                2,
                bs,
                preprocess,
                exp["augmentation"],
                seed=0,
                shuffle=True,
                workers=2,
                in_step=feed == "in_step",
            )
            before = load()
            rate = timed_fit(trained, data, epochs, n_images)
            what = (
                "today's loop (OpenCV on the host, 2 threads)"
                if feed == "host"
                else "new step (Keras-op warp in the step, uint8 in, steps_per_execution 2)"
            )
            results.append(
                {
                    "what": what,
                    "precision": precision,
                    "img_s": rate,
                    "ratio_to_forward": rate / forward,
                    "load": f"{before} / {load()}",
                }
            )
            print(results[-1], flush=True)
    keras.config.set_dtype_policy("float32")
    return results


RUNNER = """
import json, os, sys
args = json.loads(sys.argv[1])
os.environ["KERAS_BACKEND"] = args["experiment"]["backend"]
from cxrflow.train import TrainingSettings, main
main(TrainingSettings(args["experiment"], ("COVID-19", "Normal"), args["checkpoints"]), args["train"], args["val"],
     args["model"], args["history"], args["log"], workers=2, training_path=args["training"])
"""


def training_job(splits: dict[str, str], out: Path, experiment: dict) -> dict:
    """The train rule's work in a fresh process (import, data loading, bank, 500 epochs, save): wall time."""
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.iterdir():
        if leftover.is_file():
            leftover.unlink()
    args = {
        "experiment": experiment,
        **splits,
        "checkpoints": str(out / "checkpoint"),
        "model": str(out / "model.keras"),
        "history": str(out / "history.csv"),
        "log": str(out / "train.log"),
        "training": str(out / "training.json"),
    }
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    before = load()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(args)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    log = (out / "train.log").read_text()
    bank = re.search(r"feature bank ready: .*?([\d.]+) s in this run", log)
    head = re.search(r"trained epochs \d+\.\.\d+ on \w+ in ([\d.]+) s", log)
    return {
        "wall_s": wall,
        "bank_build_s": float(bank.group(1)) if bank else None,
        "fit_s": float(head.group(1)) if head else None,
        "load": f"{before} / {load()}",
        "train_images": int(re.search(r"train=(\d+)", log).group(1)),
    }


def f1_with_intervals(model_path: Path, splits: dict[str, str], experiment: dict) -> dict:
    """Test-split F1 per class and macro, with 95 % image-bootstrap intervals (cxrflow.uncertainty)."""
    import keras
    import numpy as np
    from sklearn.metrics import f1_score

    from cxrflow.data import load_split
    from cxrflow.evaluate import predict, predictions_table
    from cxrflow.uncertainty import bootstrap_ci

    images, _, table = load_split(splits["test"], CLASSES, experiment["image_size"])
    probs = predict(keras.saving.load_model(model_path), images, experiment["arch"], experiment["batch_size"])
    predictions = predictions_table(table, probs, CLASSES)
    ci = bootstrap_ci(predictions, CLASSES, n_boot=2000, seed=0, level=0.95)
    y, p = predictions["true_label"], predictions["predicted_label"]
    rng = np.random.default_rng(0)
    macro = [
        f1_score(y.iloc[i], p.iloc[i], labels=CLASSES, average="macro", zero_division=0)
        for i in (rng.integers(0, len(y), len(y)) for _ in range(2000))
    ]
    return {
        "per_class": {c: {k: ci["per_class"][c]["f1"][k] for k in ("estimate", "low", "high")} for c in CLASSES},
        "macro": {
            "estimate": float(f1_score(y, p, labels=CLASSES, average="macro", zero_division=0)),
            "low": float(np.quantile(macro, 0.025)),
            "high": float(np.quantile(macro, 0.975)),
        },
        "n_test": int(len(y)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 px rates, 20 epochs, few views")
    parser.add_argument("--views", type=int, default=8, help="bank_views of the bank runs")
    precisions = list(PRECISIONS)
    parser.add_argument(
        "--job-precision",
        nargs="+",
        default=precisions,
        choices=precisions,
        help="precisions of the measured 500-epoch bank jobs",
    )
    parser.add_argument("--f1-size", type=int, default=64)
    parser.add_argument("--f1-epochs", type=int, default=50)
    parser.add_argument(
        "--f1-learning-rate",
        type=float,
        default=None,
        help="default: the schema's; both runs of the F1 part use the same",
    )
    parser.add_argument(
        "--f1-precision", default="float32", choices=precisions, help="precision of both runs of the F1 part"
    )
    parser.add_argument("--f1-feeds", nargs="+", default=["bank", "on the fly"], choices=["bank", "on the fly"])
    parser.add_argument(
        "--rates-precision", nargs="+", default=precisions, choices=precisions, help="precisions of the rates part"
    )
    parser.add_argument("--rates-epochs", type=int, default=3, help="epochs per training rate (the first compiles)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["rates", "job", "f1"])
    parser.add_argument("--json", default="train_speed.json", help="file name under bench/out/")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO / "scripts"))
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: this benchmark needs the original experiment's images")
    import keras

    OUT.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "nproc": os.cpu_count(),
    }
    print(result, flush=True)
    splits = write_split(OUT / "train_speed" / "split")
    size = 64 if args.quick else 224
    if "rates" not in args.skip:
        result["rates"] = rates(
            size, 32 if args.quick else 64, args.rates_epochs, 2 if args.quick else 4, tuple(args.rates_precision)
        )
    if "job" not in args.skip:
        epochs = 20 if args.quick else schema_experiment()["epochs"]
        host = next((r for r in result.get("rates", []) if r["what"].startswith("today")), None)
        steps = [r for r in result.get("rates", []) if r["what"].startswith("new step")]
        result["jobs"] = []
        for precision in args.job_precision:
            exp = schema_experiment(
                image_size=size,
                epochs=epochs,
                bank_views=2 if args.quick else args.views,
                precision=precision,
                checkpoint_every=50,
            )
            job = training_job(splits, OUT / "train_speed" / f"job_bank_{precision}", exp)
            job.update(views=exp["bank_views"], epochs=epochs, image_size=size, precision=precision)
            n = job["train_images"]
            if host:
                job["projected_on_the_fly_today_s"] = epochs * n / host["img_s"]
            for r in steps:
                job[f"projected_new_step_{r['precision']}_s"] = epochs * n / r["img_s"]
            result["jobs"].append(job)
            print(job, flush=True)
    if "f1" not in args.skip:
        f1s = {}
        lr = {"learning_rate": args.f1_learning_rate} if args.f1_learning_rate else {}
        for name, changes in (("bank", {"bank_views": args.views}), ("on the fly", {})):
            if name not in args.f1_feeds:
                continue
            exp = schema_experiment(
                image_size=args.f1_size,
                epochs=args.f1_epochs,
                checkpoint_every=50,
                **lr,
                precision=args.f1_precision,
                **changes,
            )
            out = OUT / "train_speed" / f"f1_{name.replace(' ', '_')}"
            job = training_job(splits, out, exp)
            f1s[name] = {
                **f1_with_intervals(out / "model.keras", splits, exp),
                "wall_s": job["wall_s"],
                "load": job["load"],
            }
            print(name, f1s[name], flush=True)
        result["f1"] = {
            "image_size": args.f1_size,
            "epochs": args.f1_epochs,
            "views": args.views,
            "learning_rate": exp["learning_rate"],
            "precision": args.f1_precision,
            **f1s,
        }
    (OUT / args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    main()
