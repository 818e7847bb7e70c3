"""Copy detection (cxrflow.copies): precision/recall per transformation on planted copies, the shared twins, speed.

Two measurements on real images from ../shared/data:

1. ``planted``: every ieee8023 X-ray is an original (hard negatives: the collection's other
   films, several of them of the same patient); each of the first ``--originals`` gets
   ``--copies`` copies, each by one transformation class drawn in turn (crop up to 25 % per side,
   resize to another size and aspect ratio, JPEG at a random quality, contrast/brightness,
   rotation of a few degrees, grey -> RGB, and all of them at once). Copies are written as files
   and found by ``copies.find_copies`` like any image. A copy counts as found when it ends in its
   original's duplicate group; a pair is false when its two images come from different originals.
2. ``twins``: the ieee8023 images against the original experiment's covid_adjusted/ (the same
   images cropped by its buggy crop, squashed to 224 and re-encoded): recall of the 72 twins by
   file name and the false pairs among the first 100 pairs.

Times are wall-clock of the whole ``find_copies`` (decode, index, search, verify), per 1,000 images.

    PYTHONPATH=scripts .venv/bin/python bench/copy_detection.py
"""

from __future__ import annotations

import json

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from cxrflow import copies, copy_groups, copy_index
from cxrflow.decode import decode_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IEEE = DATA / "ieee8023-covid-chestxray-2020-03-24"
SEED = DATA / "seed-covid19-detection" / "covid_adjusted"
# ieee8023 files that are one radiograph under two names (judged by eye on the side-by-side
# figure, docs/audits.md): pairs among them or their seed copies are true duplicates.
KNOWN_SAME = [
    set(names)
    for names in json.loads(
        (Path(__file__).resolve().parents[1] / "tests" / "data" / "ieee8023_known_same.json").read_text()
    )
]
OUT = Path(__file__).resolve().parent / "out"
CLASSES = ("crop", "resize_aspect", "jpeg", "contrast", "rotate", "grey_rgb", "all")


def original_name(image_id: str) -> str:
    """ieee8023 file name behind an id of either source ('seed/X.jpg' -> 'X')."""
    name = image_id.split("/", 1)[1]
    return name[:-4] if image_id.startswith("seed/") else name


def same_radiograph(a: str, b: str) -> bool:
    na, nb = original_name(a), original_name(b)
    return na == nb or any(na in s and nb in s for s in KNOWN_SAME)


def transform(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """One planted copy of a grey image and the imwrite parameters to save it with."""
    out, params = img, [cv2.IMWRITE_PNG_COMPRESSION, 1]
    h, w = img.shape[:2]
    if kind in ("crop", "all"):
        l, r, t, b = rng.uniform(0, 0.25, 4)
        out = out[int(t * h) : h - int(b * h), int(l * w) : w - int(r * w)]
    if kind in ("rotate", "all"):
        angle = rng.choice([-1, 1]) * rng.uniform(1, 4)
        hh, ww = out.shape[:2]
        m = cv2.getRotationMatrix2D((ww / 2, hh / 2), angle, 1.0)
        out = cv2.warpAffine(out, m, (ww, hh), borderMode=cv2.BORDER_CONSTANT)
    if kind in ("contrast", "all"):
        alpha, beta, gamma = rng.uniform(0.75, 1.25), rng.uniform(-25, 25), rng.uniform(0.8, 1.25)
        x = np.clip(out.astype(np.float32) * alpha + beta, 0, 255) / 255.0
        out = np.clip(255 * x**gamma, 0, 255).astype(np.uint8)
    if kind in ("resize_aspect", "all"):
        side = int(rng.integers(224, 1025))
        aspect = rng.uniform(0.75, 1.33)
        out = cv2.resize(out, (side, max(224, int(side * aspect))), interpolation=cv2.INTER_AREA)
    if kind in ("grey_rgb", "all"):
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    if kind in ("jpeg", "all"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(10, 96))]
    return out, params


def planted(args: argparse.Namespace, settings: dict) -> None:
    rng = np.random.default_rng(args.seed)
    meta = pd.read_csv(IEEE / "metadata.csv")
    xray = meta[meta["modality"].str.strip() == "X-ray"]["filename"].astype(str)
    files = [IEEE / "images" / f for f in xray if (IEEE / "images" / f).is_file()]
    skip = {sorted(s)[1] for s in KNOWN_SAME}  # one film of each known ieee8023 duplicate
    files = [f for f in files if f.name not in skip]
    with tempfile.TemporaryDirectory() as tmp:
        ids, paths, origin, kinds = [], [], [], []
        for k, f in enumerate(files):
            ids.append(f"orig/{f.name}")
            paths.append(f)
            origin.append(f.name)
            kinds.append("original")
            if k >= args.originals:
                continue
            img = decode_image(f).pixels
            img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            for c in range(args.copies):
                kind = CLASSES[(k * args.copies + c) % len(CLASSES)]
                out, params = transform(img, kind, rng)
                p = Path(tmp) / f"{k}_{c}_{kind}.{'jpg' if params[0] == cv2.IMWRITE_JPEG_QUALITY else 'png'}"
                cv2.imwrite(str(p), out, params)
                ids.append(f"copy/{p.name}")
                paths.append(p)
                origin.append(f.name)
                kinds.append(kind)
        start = time.perf_counter()
        pairs = copies.find_copies(
            ids,
            paths,
            [None] * len(ids),
            {**settings, "min_score": min(args.sweep + [settings["min_score"]])},
            args.workers,
        )
        seconds = time.perf_counter() - start
    org = dict(zip(ids, origin))
    OUT.mkdir(parents=True, exist_ok=True)
    pairs.assign(kind_a=pairs["image_id_a"].map(dict(zip(ids, kinds))), kind_b=pairs["image_id_b"].map(
        dict(zip(ids, kinds)))).to_csv(OUT / "copy_pairs_planted.csv", index=False)  # fmt: skip
    sweep = []
    for threshold in args.sweep:
        kept = pairs[pairs["score"] >= threshold]
        g = copy_groups.duplicate_groups(kept)
        hit = [g.get(i) is not None and g.get(i) == g.get(f"orig/{org[i]}") for i, k in zip(ids, kinds)
               if k != "original"]  # fmt: skip
        bad = sum(org[a] != org[b] for a, b in zip(kept["image_id_a"], kept["image_id_b"]))
        sweep.append({"min_score": threshold, "recall": np.mean(hit), "pairs": len(kept), "false": bad,
                      "precision": 1 - bad / max(1, len(kept))})  # fmt: skip
    pairs = pairs[pairs["score"] >= settings["min_score"]]
    false = pairs[[org[a] != org[b] for a, b in zip(pairs["image_id_a"], pairs["image_id_b"])]]
    groups = copy_groups.duplicate_groups(pairs)
    rows = []
    for kind in CLASSES:
        sel = [i for i, k in zip(ids, kinds) if k == kind]
        found = [groups.get(i) is not None and groups.get(i) == groups.get(f"orig/{org[i]}") for i in sel]
        rows.append({"transformation": kind, "copies": len(sel), "recall": np.mean(found) if sel else np.nan})
    table = pd.DataFrame(rows)
    n_copies = int(table["copies"].sum())
    total_recall = float((table["recall"] * table["copies"]).sum() / n_copies)
    print(f"\n## planted: {len(files)} originals (ieee8023 X-rays), {n_copies} copies, {len(ids)} images")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print(f"all copies: recall {total_recall:.3f}; pairs {len(pairs)}, false pairs {len(false)}, "
          f"precision {1 - len(false) / max(1, len(pairs)):.4f}")  # fmt: skip
    if len(false):
        print(false.head(10).to_string())
    print(f"time: {seconds:.1f} s for {len(ids)} images = {1000 * seconds / len(ids):.1f} s per 1,000 images")
    print("\nthreshold sweep (all copies):")
    print(pd.DataFrame(sweep).to_markdown(index=False, floatfmt=".3f"))


def twins(settings: dict, sweep: list[float], workers: int) -> None:
    min_score = settings["min_score"]
    settings = {**settings, "min_score": min(sweep + [min_score])}
    ieee = sorted((IEEE / "images").iterdir())
    seed = sorted(SEED.iterdir())
    ids = [f"ieee/{p.name}" for p in ieee] + [f"seed/{p.name}" for p in seed]
    start = time.perf_counter()
    pairs = copies.find_copies(ids, ieee + seed, [None] * len(ids), settings, workers)
    seconds = time.perf_counter() - start
    names = {p.name for p in ieee}
    truth = {(f"ieee/{p.name[:-4]}", f"seed/{p.name}") for p in seed if p.name[:-4] in names}
    OUT.mkdir(parents=True, exist_ok=True)
    pairs.to_csv(OUT / "copy_pairs_twins.csv", index=False)
    rows = []
    for threshold in sweep:
        kept = pairs[pairs["score"] >= threshold]
        top = kept.head(100)
        rows.append({"min_score": threshold, "twins": len(truth & set(zip(kept["image_id_a"], kept["image_id_b"]))),
                     "pairs": len(kept), "false_in_first_100": sum(
                         not same_radiograph(a, b) for a, b in zip(top["image_id_a"], top["image_id_b"]))})  # fmt: skip
    pairs = pairs[pairs["score"] >= min_score]
    found = truth & set(zip(pairs["image_id_a"], pairs["image_id_b"]))
    top = pairs.head(100)
    false = top[[not same_radiograph(a, b) for a, b in zip(top["image_id_a"], top["image_id_b"])]]
    all_false = pairs[[not same_radiograph(a, b) for a, b in zip(pairs["image_id_a"], pairs["image_id_b"])]]
    print(f"\n## twins: {len(ieee)} ieee8023 + {len(seed)} covid_adjusted images")
    print(f"twins found {len(found)} / {len(truth)} = {len(found) / len(truth):.3f}; pairs {len(pairs)}; "
          f"false among first 100: {len(false)}; false overall: {len(all_false)}")  # fmt: skip
    for a, b in sorted(truth - found):
        print("  missed:", a, b)
    if len(all_false):
        print(all_false[["image_id_a", "image_id_b", "score", "overlap", "scale", "rotation_deg"]].to_string())
    print(f"time: {seconds:.1f} s = {1000 * seconds / len(ids):.1f} s per 1,000 images")
    print("\nthreshold sweep:")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


def negatives(settings: dict, sweep: list[float], workers: int) -> None:
    """The 400 normal films of covid_adjusted's sibling folder (RSNA-derived, one per patient, 224 px
    JPEGs): clean adult PA films that look alike; every pair found is a false one."""
    paths = sorted((SEED.parent / "normal_dataset").iterdir())
    start = time.perf_counter()
    pairs = copies.find_copies([p.name for p in paths], paths, [None] * len(paths),
                               {**settings, "min_score": min(sweep + [settings["min_score"]])}, workers)  # fmt: skip
    seconds = time.perf_counter() - start
    pairs.to_csv(OUT / "copy_pairs_negatives.csv", index=False)
    rows = [{"min_score": th, "false_pairs": int((pairs["score"] >= th).sum()),
             "images_in_a_false_pair": len(copy_groups.duplicate_groups(pairs[pairs["score"] >= th]))} for th in sweep]  # fmt: skip
    print(f"\n## negatives: {len(paths)} distinct RSNA-derived normal films")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f"))
    print(f"time: {seconds:.1f} s = {1000 * seconds / len(paths):.1f} s per 1,000 images")


def scale(n: int, settings: dict, workers: int) -> None:
    """Time and memory at ``n`` RSNA-sized images (1024 px JPEGs), all derived from the shared images.

    Each of the shared images is the source of about n / 650 of them (each by all
    transformations at once), so every image has siblings: the share that lands with at least
    one sibling is the recall of the inverted-file search (k-means cells) at this size.
    """
    folder = OUT / f"copy_scale_{n}"
    sources = sorted((IEEE / "images").iterdir()) + sorted(SEED.iterdir()) + sorted(
        (SEED.parent / "normal_dataset").iterdir())  # fmt: skip
    paths = [folder / f"{k:06d}.jpg" for k in range(n)]
    if not all(p.is_file() for p in paths):
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(1)
        for k, path in enumerate(paths):
            img = decode_image(sources[k % len(sources)]).pixels
            img = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            out, params = transform(img, "all", rng)
            out = cv2.resize(out, (1024, 1024), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(path), out, params)
    ids = [p.name for p in paths]
    start, cpu = time.perf_counter(), _cpu_seconds()
    pairs = copies.find_copies(ids, paths, [None] * n, settings, workers)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    groups = copy_groups.duplicate_groups(pairs)
    source_of = {p.name: k % len(sources) for k, p in enumerate(paths)}
    with_sibling = sum(
        any(source_of[j] == source_of[i] for j, g in groups.items() if g == groups[i] and j != i) for i in groups
    ) if len(groups) < 20_000 else -1  # fmt: skip
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n## scale: {n} images of 1024 px from {len(sources)} shared sources, {workers} workers")
    print(f"time {seconds:.1f} s = {1000 * seconds / n:.1f} s per 1,000 images; CPU {cpu:.0f} s (all processes); "
          f"peak RSS {rss:.0f} MiB (main process); "
          f"pairs {len(pairs)}; images grouped with a sibling {with_sibling} of {n}")  # fmt: skip


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished worker processes."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=40, help="originals that get copies")
    parser.add_argument("--copies", type=int, default=5, help="copies per original")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sweep",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[0.55, 0.6, 0.65, 0.7, 0.75, 0.8],
        help="min_score values to tabulate",
    )
    parser.add_argument("--min-score", type=float, default=None, help="instead of the config default")
    parser.add_argument("--only", choices=("planted", "twins", "negatives", "scale"), default=None)
    parser.add_argument("--scale", type=int, default=3000, help="images in the timing run")
    parser.add_argument("--workers", type=int, default=2, help="processes that decode and align (find_copies)")
    args = parser.parse_args()
    settings = copy_index.schema_defaults()
    if args.min_score is not None:
        settings["min_score"] = args.min_score
    print(f"cores: {os.cpu_count()}, workers: {args.workers}, load: {os.getloadavg()[0]:.1f}, settings: {settings}")
    if args.only in (None, "planted"):
        planted(args, settings)
    if args.only in (None, "twins"):
        twins(settings, args.sweep, args.workers)
    if args.only in (None, "negatives"):
        negatives(settings, args.sweep, args.workers)
    if args.only in (None, "scale"):
        scale(args.scale, settings, args.workers)


if __name__ == "__main__":
    main()
