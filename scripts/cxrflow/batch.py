"""Batches of images, one preprocessing job each, and the per-image cache that lets a
re-run batch skip the images it already did.

Why batches: a Snakemake job costs milliseconds of bookkeeping and its DAG node
~0.5 ms per dry run, which at 27,000 images outweighs the ~15 ms of image work.
Why a stable assignment: Snakemake re-runs a batch whenever its set of images
changes, so adding images must touch few batches. Why a cache: Snakemake re-runs
the whole batch when one of its images changes and deletes the batch's declared
output first, so the per-image record JSON (not declared) carries a key of the
raw bytes and settings; an image whose key still matches is not decoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .preprocess import INTERNAL_ERROR, key_settings, process_image

# Stored in each record written by a batch; bump when records of an older code
# version must not be reused.
KEY_FIELD = "input_key"
KEY_VERSION = 1
_CHUNK = 1 << 20
# Seconds between a batch job's progress lines: often enough for a person watching.
PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: where it comes from and where its outputs go."""

    image_id: str
    raw_path: str
    problem: str
    png: str
    record: str


def bucket_count(n_images: int, batch_size: int) -> int:
    """Smallest power of two >= n_images / batch_size.

    A power of two keeps each image in its bucket while a source grows, until the
    count doubles; then every bucket splits into two (bucket b -> b or b + n).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    need = max(1, math.ceil(n_images / batch_size))
    return 1 << (need - 1).bit_length()


def bucket_of(image_id: str, n_buckets: int) -> int:
    """Stable across runs and machines (Python's hash() is salted per process)."""
    digest = hashlib.sha256(image_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_buckets


def batch_name(bucket: int, n_buckets: int) -> str:
    """`<n_buckets>-<bucket>`: a file name that sorts and says how the split was made."""
    return f"{n_buckets}-{bucket:0{len(str(n_buckets - 1))}d}"


def assign_batches(image_ids: Sequence[str], batch_size: int) -> dict[str, list[str]]:
    """Batch name -> its image ids in input order; empty buckets are left out."""
    n_buckets = bucket_count(len(image_ids), batch_size)
    batches: dict[str, list[str]] = {}
    for image_id in image_ids:
        batches.setdefault(batch_name(bucket_of(image_id, n_buckets), n_buckets), []).append(image_id)
    return dict(sorted(batches.items()))


def input_key(raw_path: str, problem: str, settings: Mapping[str, Any]) -> str:
    """Digest of everything a record depends on: raw bytes, path, known problem, settings.

    Content, not mtime: copies that keep mtimes, or edits within one second, must
    still count as changes. An unreadable file gets a key of its own, so the record
    made for it (quarantined by process_image) is reused only while it stays so.
    The settings enter as key_settings: the image's decode scale, not the switch.
    """
    image_settings = key_settings(settings, None if problem else raw_path)
    meta = {"v": KEY_VERSION, "raw_path": raw_path, "problem": problem, "settings": image_settings}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode("utf-8"))
    if not problem:
        try:
            with open(raw_path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError as err:
            digest.update(f"unreadable: {type(err).__name__}".encode())
    return digest.hexdigest()


def cached_record(record_path: str | Path, key: str) -> dict[str, Any] | None:
    """The stored record if made from the same input key and its PNG is still there."""
    try:
        record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get(KEY_FIELD) != key:
        return None
    if record.get("status") == "ok" and not Path(record.get("output_path") or "").is_file():
        return None
    return record


def process_item(item: BatchItem, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Write the item's PNG + record JSON unless its cached record still matches; summarise.

    The record, key included, is written once, after the PNG: a crash mid-way leaves an
    old record whose key no longer matches, which the next run redoes rather than trusts.
    Top-level so that worker processes can run it.
    """
    key = input_key(item.raw_path, item.problem, settings)
    record = cached_record(item.record, key)
    reused = record is not None
    if record is None:
        record = process_image(
            item.image_id, item.raw_path, item.png, item.record, problem=item.problem,
            extra={KEY_FIELD: key}, **settings,
        )  # fmt: skip
    return {"image_id": item.image_id, "status": record["status"], "reason": record["reason"],
            "reused": reused, "known_problem": bool(item.problem), KEY_FIELD: key,
            "traceback": "" if reused else (record.get("traceback") or ""), "record": record}  # fmt: skip


def is_internal_error(summary: Mapping[str, Any]) -> bool:
    return str(summary.get("reason", "")).startswith(INTERNAL_ERROR)


def check_systemic(summaries: Sequence[Mapping[str, Any]], where: str) -> None:
    """Fail when every image that was tried hit an internal error: a bug, not bad images.

    One image's internal error is that image's quarantine; the same failure on every
    image of a batch (two at least) says the code or the machine is broken, and
    quarantining a whole dataset for it would hide the bug.
    """
    tried = [s for s in summaries if not s.get("known_problem")]
    failed = [s for s in tried if is_internal_error(s)]
    if len(tried) >= 2 and len(failed) == len(tried):
        raise SystemicError(
            f"{where}: all {len(tried)} images failed with an internal error, which is a bug or "
            f"a broken installation rather than bad images (first: {failed[0]['reason']}); see the "
            "tracebacks in the log"
        )


class SystemicError(RuntimeError):
    """A failure that is not about one image."""


def run_batch(
    items: Sequence[BatchItem],
    settings: Mapping[str, Any],
    map_fn: Callable[..., Iterable[dict[str, Any]]],
    log: logging.Logger,
    where: str,
    progress_every: float = PROGRESS_EVERY,
) -> list[dict[str, Any]]:
    """process_item over ``items`` through ``map_fn`` (an ordered, lazy map over workers).

    While it runs, a ticker logs a progress line (done/total, rate, ETA) every
    ``progress_every`` seconds (0: none), whether or not results arrive, so a person
    sees a slow image or a busy pool as such; then a final count line. Both go to the
    log and to stderr (the terminal of a local run, the job's output on a cluster),
    each internal error's traceback to the log. A failure that is not about one image
    (``OutputError`` from a worker, or ``check_systemic``) propagates.
    """
    start = time.monotonic()
    summaries: list[dict[str, Any]] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(progress_every):
            progress(log, where, len(summaries), len(items), time.monotonic() - start)

    ticker = threading.Thread(target=tick, name=f"progress {where}", daemon=True)
    if progress_every > 0:
        ticker.start()
    try:
        for summary in map_fn(process_item, items, [settings] * len(items)):
            summaries.append(summary)
            if summary["traceback"]:
                log.error("%s %s\n%s", summary["image_id"], summary["reason"], summary["traceback"].rstrip())
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
    check_systemic(summaries, where)
    fresh = [s for s in summaries if not s["reused"]]
    say(log, f"{where}: {len(summaries)} images in {time.monotonic() - start:.1f} s: "
             f"{sum(s['status'] == 'ok' for s in fresh)} cropped, {sum(s['status'] != 'ok' for s in fresh)} "
             f"quarantined, {len(summaries) - len(fresh)} reused from cache")  # fmt: skip
    return summaries


def progress(log: logging.Logger, where: str, done: int, total: int, elapsed: float) -> None:
    """One line a person can watch: done/total, rate and time left.

    Nothing back yet is its own line: batches side by side share one pool, so a batch
    often waits for the one queued before it.
    """
    if done == 0:
        say(log, f"{where}: 0/{total} images, none back from the pool yet ({elapsed:.0f} s)")
        return
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "unknown"
    say(log, f"{where}: {done}/{total} images ({100 * done / max(total, 1):.0f}%), {rate:.0f} img/s, ETA {eta}")


def say(log: logging.Logger, line: str) -> None:
    """To the job's log and to stderr."""
    log.info(line)
    print(line, file=sys.stderr, flush=True)
