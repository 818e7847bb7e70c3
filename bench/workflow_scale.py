"""Preprocessing at full-dataset scale: `snakemake preprocess` against a plain process pool.

For each size N, synthetic RSNA-style images (1024x1024 gray JPEGs with black bars and
a `stage_2_detailed_class_info.csv`) are rendered once for the largest size under
--data-dir and hard-linked for the smaller ones, then preprocessed by

- `pool`: multiprocessing.Pool(2) calling cxrflow.preprocess.process_image (the floor),
  timed again right before each mode so that both see the same background load;
- each workflow mode, in a fresh working directory: `snakemake --cores 2 preprocess`
  with a config whose only source is that folder. Modes: `image` (preprocess.batch_size 1,
  one job per image), `batchB` (batch_size B); suffix `-drop` adds --drop-metadata,
  `-nock` --max-checksum-file-size 0. `--decode full,reduced` runs every mode (and its
  pool) once per `preprocess.reduced_decode` setting; the mode label gets " full-decode"
  when it is off.

Per mode it times the dry run of a fresh directory, the full run (wall and CPU time of
snakemake and its children; peak RSS of the whole process tree), the no-op rerun
(everything up to date: checked to rewrite no crop or record) and the rerun after
re-encoding 10 images with new content (checked to rewrite exactly those ten crops and
records). Rows are appended to <data-dir>/results.jsonl.

--per-image N first prints the per-image step (process_image: decode, crop, resize, PNG,
JSON; one core, best of 5, CPU time) with the full and the reduced decode on N generated
1024x1024 JPEGs (q90, RSNA size) and N 2000x2400 JPEGs (q95, hospital size).

--seed-replicas N runs preprocess, then split and the data audit, on ~N symlinks to the
real ../shared/data/seed-covid19-detection images, with the pool on the same links.

    python bench/workflow_scale.py                       # 1,000, 9,000 and 27,000, batch1000
    python bench/workflow_scale.py --sizes 1000 --modes image,batch250
    python bench/workflow_scale.py --sizes '' --seed-replicas 9000
    python bench/workflow_scale.py --per-image 12 --sizes 27000 --modes batch1000 --decode full,reduced
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from cxrflow.config import with_defaults  # noqa: E402
from cxrflow.preprocess import crop_settings, process_image  # noqa: E402

SIDE = 1024
JPEG_QUALITY = 90
IMAGE_DIR = "stage_2_train_images_jpg"
CLASS_CSV = "stage_2_detailed_class_info.csv"
STALE = 10
FLAGS = {"": [], "drop": ["--drop-metadata"], "nock": ["--max-checksum-file-size", "0"]}
WORKERS = 2


# ------------------------------------------------------------------ data
def render(seed: int, height: int = SIDE, width: int = SIDE) -> np.ndarray:
    """A smooth random 'anatomy' plus grain and black bars of random widths (JPEG ~150 KB at 1024)."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(60, 220, (24, 24), dtype=np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    img = cv2.add(base, rng.integers(0, 12, (height, width), dtype=np.uint8))
    top, bottom, left, right = rng.integers(0, 160, 4)  # at 1024 px; scaled with the image
    top, bottom, left, right = (
        top * height // SIDE,
        bottom * height // SIDE,
        left * width // SIDE,
        right * width // SIDE,
    )
    img[:top] = 0
    img[height - bottom :] = 0
    img[:, :left] = 0
    img[:, width - right :] = 0
    return img


def write_jpeg(path: Path, seed: int) -> None:
    """Write through a temporary name: a smaller set hard-links the larger one's files, and
    changing an image in one set must not change it in the other."""
    ok, buf = cv2.imencode(".jpg", render(seed), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def _write_one(args: tuple[str, int]) -> None:
    write_jpeg(Path(args[0]), args[1])


def patient_ids(n: int) -> list[str]:
    return [f"{i:08x}-bench-{i:06d}" for i in range(n)]


def make_rsna_like(root: Path, n: int, larger: Path | None = None) -> Path:
    """Write (once; a `.complete` marker caches it) n images + the RSNA class table.

    With ``larger`` (a complete set of at least n), its first n images are hard-linked
    instead of rendered again: 27,000 images take minutes of both cores to render.
    """
    if (root / ".complete").is_file():
        return root
    images = root / IMAGE_DIR
    images.mkdir(parents=True, exist_ok=True)
    ids = patient_ids(n)
    if larger is not None:
        for pid in ids:
            target = images / f"{pid}.jpg"
            if not target.exists():
                os.link(larger / IMAGE_DIR / f"{pid}.jpg", target)
    else:
        with multiprocessing.Pool(WORKERS) as pool:
            pool.map(_write_one, [(str(images / f"{pid}.jpg"), i) for i, pid in enumerate(ids)], chunksize=64)
    pd.DataFrame({"patientId": ids, "class": "Normal"}).to_csv(root / CLASS_CSV, index=False)
    (root / ".complete").write_text(f"{n}\n")
    return root


def change_content(root: Path, n: int, count: int) -> list[str]:
    """Re-encode `count` evenly spread images with new pixels (new bytes, same names)."""
    ids = patient_ids(n)
    picked = [ids[i * n // count] for i in range(count)]
    salt = time.time_ns() % 1_000_000_007
    for k, pid in enumerate(picked):
        write_jpeg(root / IMAGE_DIR / f"{pid}.jpg", salt + k)
    return picked


# ------------------------------------------------------------------ runs
def workflow_config(data: Path, batch_size: int, reduced: bool = True) -> dict[str, Any]:
    """The user's my.yaml: their one source, no experiment, the batch size and decode of the mode."""
    return {"sources": {"rsna": {"format": "rsna", "path": str(data), "filters": {"class": "Normal"}}},
            "experiments": {}, "preprocess": {"batch_size": batch_size, "reduced_decode": reduced}}  # fmt: skip


def parse_mode(mode: str) -> tuple[int, list[str]]:
    """`image`, `batch250`, each optionally `-drop` (--drop-metadata) or `-nock`
    (--max-checksum-file-size 0: mtime, not content, decides staleness) -> (batch_size, extra args)."""
    name, _, flag = mode.partition("-")
    if flag not in FLAGS:
        raise ValueError(f"unknown mode suffix in {mode!r}")
    extra = FLAGS[flag]
    if name == "image":
        return 1, extra
    if name.startswith("batch") and name[5:].isdigit():
        return int(name[5:]), extra
    raise ValueError(f"unknown mode {mode!r}")


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of root and all its descendants (snakemake and the pool workers)."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run cmd; return (wall seconds, peak MiB of its whole process tree, CPU seconds of the tree).

    The tree's RSS is summed every 0.25 s (shared library pages count once per process,
    so this is an upper bound); wait4's maxrss, the largest single process, is a floor
    that a short peak between samples cannot escape.
    """
    start = time.perf_counter()
    peak = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        root = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                peak = max(peak, tree_rss(root))
            except psutil.Error:
                pass
            time.sleep(0.25)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return wall, max(peak, usage.ru_maxrss * 1024) / 2**20, usage.ru_utime + usage.ru_stime


# The HTML report is not preprocessing, and report-after-run fails in a dry run of a
# fresh directory (its report files do not exist yet): the bench profile drops both.
REPORT_KEYS = ("report", "report-after-run")


def bench_profile(work: Path) -> Path:
    """The repo's default profile without the report settings."""
    profile = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    folder = work / "profile"
    folder.mkdir(exist_ok=True)
    kept = {k: v for k, v in profile.items() if k not in REPORT_KEYS}
    (folder / "config.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))
    return folder


def snakemake_cmd(work: Path, cfg_path: Path, extra: Sequence[str], *args: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
        "--configfile", str(cfg_path), "--workflow-profile", str(bench_profile(work)),
        "--cores", str(WORKERS), *extra, *args, "preprocess",
    ]  # fmt: skip


def run_mode(data: Path, n: int, mode: str, work_root: Path, reduced: bool = True) -> dict[str, Any]:
    batch_size, extra = parse_mode(mode)
    label = mode if reduced else f"{mode} full-decode"
    work = work_root / f"{n}-{mode}-{'reduced' if reduced else 'full'}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")  # the shipped file, as in a user's clone
    cfg_path = work / "my.yaml"
    cfg_path.write_text(yaml.safe_dump(workflow_config(data, batch_size, reduced), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    run = lambda name, *args: timed(snakemake_cmd(work, cfg_path, extra, *args), work / f"{name}.log", env)  # noqa: E731
    dry, _, _ = run("dry", "-n")
    full, peak, cpu = run("full")
    rows = len(pd.read_csv(work / "results/preprocessed/manifest.csv"))
    if rows != n:
        raise RuntimeError(f"{label}: manifest has {rows} rows, expected {n}")
    since = time.time()
    noop, noop_peak, _ = run("noop")
    if moved := written_since(work, since):
        raise RuntimeError(f"{label}: the no-op rerun rewrote {len(moved)} crops or records, e.g. {moved[:3]}")
    picked = change_content(data, n, STALE)
    since = time.time()
    stale, stale_peak, _ = run("stale")
    moved = written_since(work, since)
    expected = sorted(f"{kind}/rsna/rsna-{pid}" for pid in picked for kind in ("images", "records"))
    if moved != expected:  # exactly the changed images decoded again, nothing else moved
        raise RuntimeError(f"{label}: the {STALE}-stale rerun rewrote {moved[:6]}..., expected {expected[:6]}...")
    return {"n": n, "mode": label, "dry_s": dry, "run_s": full, "run_cpu_s": cpu, "noop_s": noop, "stale_s": stale,
            "peak_mib": max(peak, noop_peak, stale_peak)}  # fmt: skip


def written_since(work: Path, since: float) -> list[str]:
    """`images|records/<source>/<image_id>` of every crop or record written since ``since``."""
    out = []
    for kind in ("images", "records"):
        for entry in (work / "results/preprocessed" / kind).glob("*/*"):
            if entry.stat().st_mtime >= since:
                out.append(f"{kind}/{entry.parent.name}/{entry.stem}")
    return sorted(out)


# The workflow's crop settings at the schema's defaults: the pool does the same work.
CROP = crop_settings(with_defaults({"sources": {"x": {"format": "folders", "path": "."}}})["preprocess"])


def _pool_one(args: tuple[str, str, str, str], reduced: bool = True) -> None:
    process_image(*args, **{**CROP, "reduced_decode": reduced})


def run_pool(data: Path, n: int, work_root: Path, reduced: bool = True) -> tuple[float, float]:
    """The same work with no workflow engine: the time to beat."""
    out = work_root / f"{n}-pool"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(pid, str(data / IMAGE_DIR / f"{pid}.jpg"), str(out / f"{pid}.png"), str(out / f"{pid}.json"))
            for pid in patient_ids(n)]  # fmt: skip
    return pool_map(jobs, reduced)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pool_map(jobs: Sequence[tuple[str, str, str, str]], reduced: bool = True) -> tuple[float, float]:
    """(wall, CPU seconds) of process_image over jobs in a plain Pool(2), with the given
    reduced_decode. CPU time moves far less than wall time with other people's load on the
    shared cores."""
    start, cpu = time.perf_counter(), cpu_seconds()
    with multiprocessing.Pool(WORKERS) as pool:
        for _ in pool.imap_unordered(functools.partial(_pool_one, reduced=reduced), jobs, chunksize=16):
            pass
    return time.perf_counter() - start, cpu_seconds() - cpu


# ------------------------------------------------------------------ the per-image step
def per_image(count: int, work_root: Path, repeats: int = 5) -> list[dict[str, Any]]:
    """process_image ms/image on one core, full vs reduced decode, best of ``repeats`` passes.

    CPU time of this (single-threaded) process is the figure: on the shared 2 cores the
    wall clock also counts the time spent waiting for a core (1.5-6x under load 8-13);
    the best wall time is kept beside it.
    """
    cv2.setNumThreads(1)
    rows = []
    for label, (height, width), quality in (("1024x1024 q90", (SIDE, SIDE), JPEG_QUALITY),
                                            ("2000x2400 q95", (2400, 2000), 95)):  # fmt: skip
        folder = work_root / f"per-image-{height}x{width}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        paths = []
        for i in range(count):
            ok, buf = cv2.imencode(".jpg", render(1000 + i, height, width), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for the {label} image {i}")
            paths.append(folder / f"{i}.jpg")
            paths[-1].write_bytes(buf.tobytes())
        best, wall = {}, {}
        for reduced in (False, True):
            settings = {**CROP, "reduced_decode": reduced}
            cpu_times, wall_times = [], []
            for _ in range(repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                for i, path in enumerate(paths):
                    process_image(f"i{i}", path, folder / f"{i}.png", folder / f"{i}.json", **settings)
                cpu_times.append((time.process_time() - start_cpu) / len(paths) * 1e3)
                wall_times.append((time.perf_counter() - start) / len(paths) * 1e3)
            best[reduced], wall[reduced] = min(cpu_times), min(wall_times)
        scale = json.loads((folder / "0.json").read_text())["decode_scale"]  # of the last (reduced) pass
        rows.append({"mode": "per-image", "images": label, "n": count, "full_ms": best[False],
                     "reduced_ms": best[True], "ratio": best[True] / best[False], "scale": scale,
                     "full_wall_ms": wall[False], "reduced_wall_ms": wall[True],
                     "load1": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})  # fmt: skip
    return rows


# ------------------------------------------------------------------ real images, replicated
SEED = REPO.parent / "shared" / "data" / "seed-covid19-detection"


def make_seed_replica(root: Path, n: int) -> Path:
    """A `folders` collection of ~n symlinks to the real seed-covid19-detection JPEGs (the
    original experiment's published 224x224 images), as people lay out data on clusters."""
    if (root / ".complete").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    files = {"COVID-19": sorted((SEED / "covid_adjusted").glob("*.jpg")),
             "Normal": sorted((SEED / "normal_dataset").glob("*.jpg"))}  # fmt: skip
    total = sum(len(v) for v in files.values())
    copies = max(1, -(-n // total))
    for label, paths in files.items():
        (root / label).mkdir(parents=True)
        for k in range(copies):
            for path in paths:
                (root / label / f"r{k:03d} {path.name}").symlink_to(path)
    (root / ".complete").write_text(f"{copies * total}\n")
    return root


def run_seed(n: int, work_root: Path, data_dir: Path) -> dict[str, Any]:
    """snakemake preprocess, then split and the data audit, on ~n real images; the pool on the same."""
    data = make_seed_replica(data_dir / f"seed-{n}", n)
    links = sorted(p for p in data.rglob("*.jpg"))
    out = work_root / f"seed-{n}-pool"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    jobs = [(f"i{i}", str(p), str(out / f"{i}.png"), str(out / f"{i}.json")) for i, p in enumerate(links)]
    load_before = os.getloadavg()[0]
    pool_s, pool_cpu = pool_map(jobs)
    work = work_root / f"seed-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    cfg_path = work / "my.yaml"
    cfg_path.write_text(yaml.safe_dump({"sources": {"seed": {"format": "folders", "path": str(data)}},
                                        "experiments": {}}, sort_keys=False))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    base = snakemake_cmd(work, cfg_path, [])[:-1]  # without the preprocess target
    pre, peak, pre_cpu = timed([*base, "preprocess"], work / "preprocess.log", env)
    load_after = os.getloadavg()[0]
    rest, peak2, _ = timed([*base, "split", "results/audit/data_audit.json"], work / "split_audit.log", env)
    manifest = pd.read_csv(work / "results/preprocessed/manifest.csv")
    if len(manifest) != len(links) or (manifest["status"] != "ok").any():
        raise RuntimeError(f"seed replica: {len(manifest)} rows for {len(links)} links, "
                           f"{(manifest['status'] != 'ok').sum()} not ok")  # fmt: skip
    return {"n": len(links), "mode": "seed-symlinks", "pool_s": pool_s, "pool_cpu_s": pool_cpu, "preprocess_s": pre,
            "preprocess_cpu_s": pre_cpu, "split_audit_s": rest, "peak_mib": max(peak, peak2),
            "load_before": load_before, "load1": load_after,
            "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}  # fmt: skip


# ------------------------------------------------------------------ dataset updates
UPDATE = 10
TARGETS = ("split", "results/audit/data_audit.json")


def update_data(kind: str, n: int, data_dir: Path, larger: Path | None) -> tuple[Path, Any, Any]:
    """A collection of n images that can gain and lose ``UPDATE`` of them: (root, add, remove).

    ``rsna``: n + 10 rendered RSNA-like images, the class table selecting n of them (adding and
    removing edit the table, as a new release of the list would). ``seed``: ~n symlinks to the real
    seed-covid19-detection images (make_seed_replica); adding links 10 more normals under new
    names, removing unlinks 10 spread links.
    """
    if kind == "rsna":
        root = make_rsna_like(data_dir / f"rsna-{n + UPDATE}", n + UPDATE, larger)
        ids = patient_ids(n + UPDATE)
        table = lambda keep: pd.DataFrame({"patientId": keep, "class": "Normal"}).to_csv(  # noqa: E731
            root / CLASS_CSV, index=False
        )
        table(ids[:n])
        gone = set(ids[1 :: max(1, n // UPDATE)][:UPDATE])
        return root, lambda: table(ids), lambda: table([i for i in ids if i not in gone])
    root = make_seed_replica(data_dir / f"seed-{n}", n)
    for stale in root.glob("*/added *"):
        stale.unlink()
    spare = sorted((SEED / "normal_dataset").glob("*.jpg"))[:UPDATE]

    def add() -> None:
        for k, path in enumerate(spare):
            (root / "Normal" / f"added {k:02d} {path.name}").symlink_to(path)

    def remove() -> None:
        links = sorted(root.glob("*/r* *.jpg"))
        for path in links[:: max(1, len(links) // UPDATE)][:UPDATE]:
            path.rename(path.with_name(f".removed {path.name}"))  # out of the listing, back next time

    for hidden in root.glob("*/.removed *"):
        hidden.rename(hidden.with_name(hidden.name[len(".removed ") :]))
    return root, add, remove


def update_config(kind: str, root: Path) -> dict[str, Any]:
    if kind == "rsna":
        return {**workflow_config(root, 1000), "experiments": {}}
    return {"sources": {"seed": {"format": "folders", "path": str(root)}}, "experiments": {}}


def run_step(work: Path, cfg_path: Path, env: dict[str, str], name: str) -> dict[str, Any]:
    """One `snakemake split results/audit/data_audit.json`, and what it did."""
    base = snakemake_cmd(work, cfg_path, [])[:-1]
    since = time.time()
    load = os.getloadavg()[0]
    log = work / f"{name}.log"
    wall, peak, cpu = timed([*base, *TARGETS], log, env)
    crop_logs = list((work / "results/logs/crop_batch").glob("*/*.log"))
    split_log = work / "results/logs/make_splits.log"
    searched = split_log.is_file() and split_log.stat().st_mtime >= since
    decoded = re.findall(r"copy search: (\d+) images decoded", split_log.read_text()) if searched else []
    said = re.findall(r"copy search: (.*) \(cache", split_log.read_text()) if searched else []

    def rule_seconds(rule: str) -> float:  # the rule's benchmark file, when this step ran it
        path = work / f"results/benchmarks/{rule}.tsv"
        fresh = path.is_file() and path.stat().st_mtime >= since
        return float(path.read_text().splitlines()[1].split("\t")[0]) if fresh else 0.0

    split_s, audit_s = rule_seconds("make_splits"), rule_seconds("audit_data")
    return {"step": name, "wall_s": wall, "cpu_s": cpu, "peak_mib": peak,
            "crop_decoded": sum(1 for r in written_since(work, since) if r.startswith("records/")),
            "copy_decoded": int(decoded[-1]) if decoded else 0,
            "copy_search": said[-1] if said else "", "make_splits_s": split_s, "audit_data_s": audit_s,
            "batches_rerun": sum(p.stat().st_mtime >= since for p in crop_logs), "batches": len(crop_logs),
            "longest_line": max((len(line) for line in log.read_text(errors="replace").splitlines()), default=0),
            "load_before": load, "load1": os.getloadavg()[0]}  # fmt: skip


def equals_scratch(work: Path, cfg: dict[str, Any]) -> bool:
    """The copy search, split and data audit from scratch (no cache) on the run's manifest, in a
    fresh process, against what the workflow wrote. Not in this one: a child inherits its parent's
    resident size as the floor of its ru_maxrss, so a bench grown by a search at 9,000 images
    would report gigabytes for every later run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # not multiprocessing.Pool: its daemonic worker could not start the copy search's own pool
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_equals_scratch_in, work, cfg).result()


def _equals_scratch_in(work: Path, cfg: dict[str, Any]) -> bool:
    from cxrflow.config import with_defaults as defaults

    conf = defaults(cfg)
    here = Path.cwd()
    os.chdir(work)  # the manifest's paths are relative to the working directory
    try:
        return _equals_scratch(work, conf)
    finally:
        os.chdir(here)


def _equals_scratch(work: Path, conf: dict[str, Any]) -> bool:
    from cxrflow.data_audit import data_audit_main
    from cxrflow.split import make_splits_main

    out = work / "scratch"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    res = work / "results"
    outputs = {"duplicates": str(out / "duplicates.csv"), "duplicate_groups": str(out / "duplicate_groups.json"),
               "summary": str(out / "summary.json")}  # fmt: skip
    make_splits_main(str(res / "preprocessed/manifest.csv"), outputs, str(out), conf["split"], conf["classes"],
                     conf["audit"]["duplicates"], WORKERS)  # fmt: skip
    data_audit_main(str(res / "preprocessed/manifest.csv"), str(out / "assignments.csv"), outputs["duplicates"],
                    str(out / "data_audit.json"), conf["audit"]["baselines"]["thumbnail_size"],
                    conf["audit"]["source_predictability"], str(out / "shared.png"))  # fmt: skip
    same = [(out / "duplicates.csv", res / "audit/duplicates.csv"), (out / "assignments.csv", res / "splits/assignments.csv"),
            (out / "duplicate_groups.json", res / "audit/duplicate_groups.json"),
            (out / "data_audit.json", res / "audit/data_audit.json")]  # fmt: skip
    return all(a.read_bytes() == b.read_bytes() for a, b in same)


def run_updates(kind: str, n: int, work_root: Path, data_dir: Path, larger: Path | None,
                scratch: str) -> list[dict[str, Any]]:  # fmt: skip
    """First run of split + data audit, then 10 added, 10 removed, nothing changed, each checked
    against a run from scratch where ``scratch`` says (all | last | none)."""
    root, add, remove = update_data(kind, n, data_dir, larger)
    if kind == "seed":  # the replica holds whole copies of the real set: say how many images it has
        n = sum(1 for p in root.rglob("*.jpg") if not p.name.startswith("."))
    work = work_root / f"update-{kind}-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    cfg = update_config(kind, root)
    cfg_path = work / "my.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    rows = []
    steps = [("first run", lambda: None), (f"{UPDATE} added", add), (f"{UPDATE} removed", remove),
             ("nothing changed", lambda: None)]  # fmt: skip
    for k, (name, change) in enumerate(steps):
        change()
        row = {"n": n, "data": kind, **run_step(work, cfg_path, env, name.replace(" ", "_")), "step": name}
        check = scratch == "all" or (scratch == "last" and k == len(steps) - 1)
        row["equals_scratch"] = equals_scratch(work, cfg) if check else None
        row["when"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        rows.append(row)
        with open(data_dir / "results.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(update_table([row]).splitlines()[-1], flush=True)
        print(f"#   make_splits {row['make_splits_s']:.1f} s, audit_data {row['audit_data_s']:.1f} s; "
              f"copy search: {row['copy_search'] or '-'}", flush=True)  # fmt: skip
    return rows


def update_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| images | data | step | wall s | crop decodes | copy-search decodes | crop batches re-run "
             "| equals scratch | longest console line | peak MiB | load |", "|" + "---|" * 11]  # fmt: skip
    for r in rows:
        same = {True: "yes", False: "NO", None: "not checked"}[r["equals_scratch"]]
        lines.append(f"| {r['n']} | {r['data']} | {r['step']} | {r['wall_s']:.1f} | {r['crop_decoded']} "
                     f"| {r['copy_decoded']} | {r['batches_rerun']} of {r['batches']} | {same} "
                     f"| {r['longest_line']} | {r['peak_mib']:.0f} | {r['load_before']:.1f}-{r['load1']:.1f} |")  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------ report
def table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| images | mode | dry run s | run s | pool s | run/pool | CPU run/pool | no-op rerun s "
        "| 10-stale rerun s | peak MiB | load |"
    )
    lines = [head, "|" + "---|" * 11]
    nan = float("nan")
    for r in rows:
        ratio = r["run_s"] / r["pool_s"] if r.get("pool_s") else nan
        cpu = r["run_cpu_s"] / r["pool_cpu_s"] if r.get("pool_cpu_s") else nan
        lines.append(
            f"| {r['n']} | {r['mode']} | {r['dry_s']:.1f} | {r['run_s']:.1f} | {r.get('pool_s') or nan:.1f} "
            f"| {ratio:.2f} | {cpu:.2f} | {r['noop_s']:.1f} | {r['stale_s']:.1f} | {r['peak_mib']:.0f} "
            f"| {r.get('load_before', nan):.1f}-{r['load1']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,9000,27000", help="comma-separated image counts ('' for none)")
    parser.add_argument("--modes", default="batch1000",
                        help="image | image-drop | batchB | batchB-drop, comma-separated")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--no-pool", action="store_true", help="skip the pool (ratio left blank)")
    parser.add_argument("--decode", default="reduced",
                        help="full | reduced, comma-separated: preprocess.reduced_decode of each mode and its pool")  # fmt: skip
    parser.add_argument("--per-image", type=int, default=0,
                        help="first time process_image, full vs reduced decode, on N generated 1024x1024 "
                             "and N 2000x2400 JPEGs (0: skip)")  # fmt: skip
    parser.add_argument("--seed-replicas", type=int, default=0,
                        help="also run preprocess + split + data audit on ~N symlinks to the real "
                             "../shared/data/seed-covid19-detection images (0: skip)")  # fmt: skip
    parser.add_argument("--updates", default="",
                        help="comma-separated sizes: first run of split + data audit, then 10 added, 10 removed, "
                             "nothing changed, on RSNA-like images (and on the real-image replica: --seed-updates)")  # fmt: skip
    parser.add_argument("--seed-updates", default="",
                        help="comma-separated sizes of the real-image replica for the same steps (e.g. 9000)")  # fmt: skip
    parser.add_argument("--scratch", default="all", choices=("all", "last", "none"),
                        help="which --updates steps are compared with a run from scratch")  # fmt: skip
    parser.add_argument("--scratch-all-below", type=int, default=0,
                        help="with --scratch all: collections of this many images or more compare only their "
                             "last step (a run from scratch at 27,000 images costs ~6 min); 0: no limit")  # fmt: skip
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    decode_choices = {"full": False, "reduced": True}
    if unknown := [d for d in args.decode.split(",") if d not in decode_choices]:
        parser.error(f"--decode takes full and/or reduced, not {', '.join(map(repr, unknown))}")
    decodes = [decode_choices[d] for d in args.decode.split(",")]
    if args.per_image:
        print("| per-image step (process_image), best of 5 | images | full decode CPU ms | reduced CPU ms "
              "| reduced/full | scale | wall ms full / reduced | load |\n|---|---|---|---|---|---|---|---|",
              flush=True)  # fmt: skip
        for row in per_image(args.per_image, data_dir / "work"):
            with open(data_dir / "results.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"| {row['images']} | {row['n']} | {row['full_ms']:.2f} | {row['reduced_ms']:.2f} "
                  f"| {row['ratio']:.2f} | 1/{row['scale']} | {row['full_wall_ms']:.1f} / {row['reduced_wall_ms']:.1f} "
                  f"| {row['load1']:.1f} |", flush=True)  # fmt: skip
    if args.seed_replicas:
        row = run_seed(args.seed_replicas, data_dir / "work", data_dir)
        with open(data_dir / "results.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print("| images | preprocess s | pool s | run/pool | CPU run/pool | split + data audit s | peak MiB | load |")
        print(f"| {row['n']} real (symlinks) | {row['preprocess_s']:.1f} | {row['pool_s']:.1f} "
              f"| {row['preprocess_s'] / row['pool_s']:.2f} | {row['preprocess_cpu_s'] / row['pool_cpu_s']:.2f} "
              f"| {row['split_audit_s']:.1f} | {row['peak_mib']:.0f} | {row['load_before']:.1f}-{row['load1']:.1f} |",
              flush=True)  # fmt: skip
    update_rows = []
    runs = [("rsna", int(s)) for s in args.updates.split(",") if s]
    runs += [("seed", int(s)) for s in args.seed_updates.split(",") if s]
    for kind, n in sorted(runs, key=lambda r: (r[1], r[0])):
        larger = make_rsna_like(data_dir / f"rsna-{n + UPDATE}", n + UPDATE) if kind == "rsna" else None
        scratch = "last" if args.scratch == "all" and 0 < args.scratch_all_below <= n else args.scratch
        update_rows += run_updates(kind, n, data_dir / "work", data_dir, larger, scratch)
    if update_rows:
        print(update_table(update_rows), flush=True)
    rows = []
    sizes = [int(s) for s in args.sizes.split(",") if s]
    larger = None
    if sizes:  # render the largest set once; the smaller ones hard-link its first images
        have = [
            int(p.name[5:]) for p in data_dir.glob("rsna-*") if (p / ".complete").is_file() and p.name[5:].isdigit()
        ]
        biggest = max([max(sizes), *have])
        t0 = time.perf_counter()
        larger = make_rsna_like(data_dir / f"rsna-{biggest}", biggest)
        print(f"# {biggest} images ready in {time.perf_counter() - t0:.0f} s ({larger})", flush=True)
    for n in sizes:
        t0 = time.perf_counter()
        data = make_rsna_like(data_dir / f"rsna-{n}", n, larger)
        print(f"# {n} images ready in {time.perf_counter() - t0:.0f} s ({data})", flush=True)
        for mode, reduced in ((m, r) for m in args.modes.split(",") for r in decodes):
            # The pool right before each mode, with the same decode: other users' load on
            # the 2 cores drifts, and the ratio is only meaningful under the same load.
            load_before = os.getloadavg()[0]
            pool_s, pool_cpu = (None, None) if args.no_pool else run_pool(data, n, data_dir / "work", reduced)
            row = {**run_mode(data, n, mode, data_dir / "work", reduced), "pool_s": pool_s, "pool_cpu_s": pool_cpu,
                   "load_before": load_before, "load1": os.getloadavg()[0],
                   "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}  # fmt: skip
            rows.append(row)
            with open(data_dir / "results.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(table([row]).splitlines()[-1], flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
