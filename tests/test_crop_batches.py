"""Batched crop jobs: stable assignment, per-image cache, and the real snakemake with batch_size > 1."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.crop_batches import (
    KEY_FIELD,
    BatchItem,
    assign_batches,
    bucket_count,
    bucket_of,
    run_batch,
)
from cxrflow.manifest import read_manifest
from workflow_helpers import crop_defaults, planned_jobs, run_snakemake, tiny_config

SETTINGS: dict[str, Any] = crop_defaults(size=16, min_side=8)


def crop_batch(items: list[BatchItem], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The crop job's loop (batch.run_batch) in this process, without progress lines."""
    return run_batch(items, settings, map, logging.getLogger("test"), "test batch", progress_every=0)


def write_image(path: Path, seed: int, bar: int = 6) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 230, (48, 40), dtype=np.uint8)
    img[:bar] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


# ------------------------------------------------------------------ assignment
def test_bucket_count_is_a_power_of_two_covering_the_images() -> None:
    assert [bucket_count(n, 4) for n in (0, 1, 4, 5, 12, 16, 17)] == [1, 1, 1, 2, 4, 4, 8]
    with pytest.raises(ValueError):
        bucket_count(10, 0)


def test_growing_keeps_buckets_until_the_count_doubles_then_splits_each() -> None:
    ids = [f"src-img{i}" for i in range(40)]
    before = assign_batches(ids[:30], 10)  # 4 buckets
    after = assign_batches(ids, 10)  # still 4
    changed = {b for b in after if after[b] != before.get(b)}
    new_buckets = {next(b for b, members in after.items() if i in members) for i in ids[30:]}
    assert changed == new_buckets
    for image_id in ids:  # 4 -> 8 buckets: bucket b goes to b or b + 4
        assert bucket_of(image_id, 8) % 4 == bucket_of(image_id, 4)
    assert sorted(i for members in after.values() for i in members) == sorted(ids)


# ------------------------------------------------------------------ cache
def items_for(tmp_path: Path, names: list[str]) -> list[BatchItem]:
    out = tmp_path / "out"
    return [BatchItem(n, str(tmp_path / "raw" / f"{n}.png"), "", str(out / f"{n}.png"), str(out / f"{n}.json"))
            for n in names]  # fmt: skip


def test_process_batch_redoes_only_changed_images(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    for k, n in enumerate(names):
        write_image(tmp_path / "raw" / f"{n}.png", k)
    items = items_for(tmp_path, names)
    first = crop_batch(items, SETTINGS)
    assert [s["status"] for s in first] == ["ok"] * 3 and not any(s["reused"] for s in first)
    record = json.loads(Path(items[0].record).read_text())
    assert record[KEY_FIELD] == first[0][KEY_FIELD] and record["output_width"] == 16

    write_image(tmp_path / "raw" / "b.png", 99, bar=12)  # new content
    Path(items[2].png).unlink()  # lost output
    again = crop_batch(items, SETTINGS)
    assert [s["reused"] for s in again] == [True, False, False]
    assert cv2.imread(items[2].png, cv2.IMREAD_UNCHANGED).shape == (16, 16)  # redone at the settings' size
    # Other settings: nothing reused.
    assert not any(s["reused"] for s in crop_batch(items, {**SETTINGS, "size": 8}))


def test_process_batch_records_problems_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "junk.png").write_bytes(b"not an image")
    item = items_for(tmp_path, ["junk"])[0]
    flagged = BatchItem("gone", "", "missing file", str(tmp_path / "out/gone.png"), str(tmp_path / "out/gone.json"))
    out = crop_batch([item, flagged], SETTINGS)
    assert [s["status"] for s in out] == ["quarantined", "quarantined"]
    assert out[0]["reason"].startswith("unreadable") and out[1]["reason"] == "missing file"
    assert [s["reused"] for s in crop_batch([item, flagged], SETTINGS)] == [True, True]


# ------------------------------------------------------------------ workflow
def csv_source(root: Path, n: int) -> dict:
    rows = [(f"a{i}.png", "COVID-19" if i % 2 else "Normal", f"p{i}") for i in range(n)]
    pd.DataFrame(rows, columns=["file", "finding", "patient"]).to_csv(root / "meta.csv", index=False)
    return {"format": "csv", "path": str(root), "csv": "meta.csv", "images": "img",
            "columns": {"filename": "file", "label": "finding", "patient_id": "patient"}}  # fmt: skip


@pytest.mark.slow
def test_batches_rerun_only_what_changed(tmp_path: Path) -> None:
    data, work = tmp_path / "data", tmp_path / "work"
    for i in range(12):
        write_image(data / "img" / f"a{i}.png", i)
    cfg = tiny_config(sources={"mine": csv_source(data, 12)})
    cfg["preprocess"]["batch_size"] = 4
    run_snakemake(work, cfg, "preprocess")
    manifest = read_manifest(work / "results/preprocessed/manifest.csv")
    assert sorted(manifest["image_id"]) == sorted(f"mine-a{i}" for i in range(12))
    assert (manifest["status"] == "ok").all()
    batches = assign_batches([f"mine-a{i}" for i in range(12)], 4)
    assert sorted(p.stem for p in (work / "results/preprocessed/batches/mine").iterdir()) == sorted(batches)

    # Up to date: the listings were not rewritten, nothing runs.
    assert "Nothing to be done" in run_snakemake(work, cfg, "preprocess", "-n").stdout
    # New content in one image, its mtime put back as `cp -p` would: its batch only, then the aggregate.
    before = (data / "img" / "a3.png").stat()
    write_image(data / "img" / "a3.png", 99, bar=12)
    os.utime(data / "img" / "a3.png", ns=(before.st_atime_ns, before.st_mtime_ns))
    dry = run_snakemake(work, cfg, "preprocess", "-n")
    assert planned_jobs(dry) == {"listing_key": 1, "batch_listing": 1, "crop_batch": 1, "manifest": 1,
                                 "check_quarantine": 1, "preprocess": 1}  # fmt: skip
    assert "Input files updated by another job: results/preprocessed/listings/mine/" in dry.stdout
    run_snakemake(work, cfg, "preprocess")
    batch = next(b for b, members in batches.items() if "mine-a3" in members)
    log = (work / f"results/logs/crop_batch/mine/{batch}.log").read_text()
    n = len(batches[batch])
    assert re.search(rf"batch {batch}: {n} images in [\d.]+ s: 1 cropped, 0 quarantined, {n - 1} reused from cache$",
                     log, re.M), log  # fmt: skip

    # Two new images (still 4 buckets): only the batches they land in.
    for i in (12, 13):
        write_image(data / "img" / f"a{i}.png", i)
    csv_source(data, 14)
    grown = assign_batches([f"mine-a{i}" for i in range(14)], 4)
    touched = {b for b, members in grown.items() if {"mine-a12", "mine-a13"} & set(members)}
    dry = run_snakemake(work, cfg, "preprocess", "-n")
    assert planned_jobs(dry) == {"listing_key": len(touched), "batch_listing": len(touched),
                                 "crop_batch": len(touched), "select_source": 1, "manifest": 1,
                                 "check_quarantine": 1, "preprocess": 1}  # fmt: skip
    update = run_snakemake(work, cfg, "preprocess")
    assert len(read_manifest(work / "results/preprocessed/manifest.csv")) == 14
    # what changed in one line; no line of the update's console longer than a screen's width x height
    console = update.stdout + update.stderr
    assert "mine: 2 added, 0 removed, 0 changed (14 images selected)" in console
    assert max(map(len, console.splitlines())) < 80 * 25
    assert len(list((work / "results/preprocessed/listings/mine/keys").iterdir())) == len(grown)


def _tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its mtime (what a command that writes nothing leaves alone)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_reading_the_workflow_writes_no_listing(tmp_path: Path) -> None:
    """-n, --lint and --unlock only read: no batch listing (or anything else) is written under
    results/ while the workflow is parsed, neither in a fresh copy nor after an image changed."""
    data, work = tmp_path / "data", tmp_path / "work"
    for i in range(6):
        write_image(data / "img" / f"a{i}.png", i)
    cfg = tiny_config(sources={"mine": csv_source(data, 6)})
    cfg["preprocess"]["batch_size"] = 2
    for args in (("preprocess", "-n"), ("--lint",), ("--unlock",)):
        run_snakemake(work, cfg, *args, check=args[0] != "--lint")
        assert not (work / "results").exists(), args
    run_snakemake(work, cfg, "preprocess")
    write_image(data / "img" / "a1.png", 77, bar=10)
    before = _tree(work / "results")
    dry = run_snakemake(work, cfg, "preprocess", "-n")
    assert planned_jobs(dry)["crop_batch"] == 1
    assert _tree(work / "results") == before
