"""Bodies of the preprocessing jobs that run inside the Snakemake process (`run:`).

Kept here, not in the .smk files, so that tests reach them and a rule stays one
call. Each opens its log first (cxrflow.rule_log), so a failed job leaves its log
with the traceback.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from . import crop_batches as cxr_batch
from . import crop_listings as cxr_listing
from . import manifest as cxr_manifest
from . import sources as cxr_sources
from .rule_log import job_log
from .preprocess import remove_leftover_temp_files, write_output

# One pool of worker processes per Snakemake run, shared by every batch job, started
# on first use (never in a dry run): batch jobs running side by side feed one pool,
# so it never idles between jobs. spawn, not fork: forking a process with running
# threads can deadlock.
_POOLS: dict[int, ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(workers: int) -> ProcessPoolExecutor:
    with _POOLS_LOCK:
        if workers not in _POOLS:
            context = multiprocessing.get_context("spawn")
            _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=context)
        return _POOLS[workers]


def pool_workers(cores: int | None) -> int:
    """Worker processes for the crop pool: the run's --cores, but never more CPUs than this
    process may use (its affinity; on SLURM the job's allocation)."""
    limits = [len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1]
    if isinstance(cores, int) and cores > 0:
        limits.append(cores)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        limits.append(int(slurm))
    return max(1, min(limits))


def crop_image_job(item: cxr_batch.BatchItem, settings: Mapping[str, Any], log_path: str) -> None:
    """One image, one job (`preprocess.batch_size: 1`)."""
    with job_log(log_path) as log:
        summary = cxr_batch.process_item(item, settings)
        if summary["traceback"]:
            log.error("%s %s\n%s", item.image_id, summary["reason"], summary["traceback"].rstrip())
        log.info("%s %s %s", item.image_id, summary["status"], summary["reason"])


def crop_batch_job(
    items: Sequence[cxr_batch.BatchItem],
    settings: Mapping[str, Any],
    cores: int | None,
    output: str,
    log_path: str,
    where: str,
) -> None:
    """One batch over the shared pool (see pool_workers); writes the batch file with every image's record."""
    with job_log(log_path) as log:
        workers = pool_workers(cores)
        pool = shared_pool(workers)
        chunk = max(1, min(64, len(items) // (8 * workers)))
        summaries = cxr_batch.run_batch(items, settings, functools.partial(pool.map, chunksize=chunk), log, where)
        for summary in summaries:
            summary.pop("traceback")
        write_output(Path(output), (json.dumps({"images": summaries}) + "\n").encode("utf-8"))


def batch_records(batch_files: Sequence[str]) -> list[dict[str, Any]]:
    """The per-image records a batch job wrote into its batch file."""
    records = []
    for path in batch_files:
        records.extend(s["record"] for s in json.loads(Path(path).read_text(encoding="utf-8"))["images"])
    return records


def manifest_job(
    selections: Sequence[str],
    record_paths: Sequence[str],
    batch_files: Sequence[str],
    manifest_path: str,
    summary_path: str,
    quarantine_path: str,
    log_path: str,
    skipped_lists: Sequence[str] = (),
    skipped_path: str | None = None,
) -> None:
    """The manifest from the selections and the records (per-image files or batch files), and the
    one skipped list of every source (``skipped_lists`` -> ``skipped_path``), counted in the summary."""
    with job_log(log_path) as log:
        skipped = pd.concat(
            [pd.read_csv(p, dtype=str, keep_default_na=False) for p in skipped_lists]
            or [pd.DataFrame(columns=cxr_sources.SKIPPED_COLUMNS)],
            ignore_index=True,
        )
        if skipped_path is not None:
            cxr_manifest.write_csv_atomic(skipped[cxr_sources.SKIPPED_COLUMNS], Path(skipped_path))
        selection = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in selections], ignore_index=True)
        records = cxr_manifest.read_records([Path(p) for p in record_paths]) + batch_records(batch_files)
        flagged = set(selection.loc[selection["problem"] != "", "image_id"])
        cxr_batch.check_systemic([{**r, "known_problem": r["image_id"] in flagged} for r in records], "preprocessing")
        table = cxr_manifest.build_manifest(selection, records)
        cxr_manifest.write_manifest(table, Path(manifest_path))
        # every crop job has ended (they are this job's inputs): a temporary file left now is a killed run's
        if leftover := remove_leftover_temp_files(Path(manifest_path).parent):
            log.info("removed %d temporary files left by an interrupted run", leftover)
        quarantined = table[table["status"] != "ok"]
        cxr_manifest.write_csv_atomic(
            quarantined[["image_id", "source", "raw_path", "resolved_path", "reason"]], Path(quarantine_path)
        )
        summary = cxr_manifest.manifest_summary(table)
        summary["skipped"] = int(len(skipped))
        summary["skipped_reasons"] = {str(k): int(v) for k, v in skipped["reason"].map(
            cxr_manifest.reason_kind).value_counts().sort_index().items()}  # fmt: skip
        write_output(Path(summary_path), (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
        log.info("manifest: %s", json.dumps(summary))


def write_inventory(inventory: cxr_sources.SourceInventory, before: pd.DataFrame | None, output: str,
                    skipped_output: str, log_path: str, source: str) -> None:  # fmt: skip
    """write_selection of a source read by sources.inventory_source: its images, skipped files and how its
    metadata was read."""
    write_selection(inventory.images, before, output, log_path, source, inventory.skipped, skipped_output,
                    inventory.read_as)  # fmt: skip


def manifest_rule(inputs: Any, outputs: Any, log_path: str, batched: bool) -> None:
    """manifest_job from the rule's named inputs and outputs; ``batched``: the records are batch files."""
    records = list(inputs.records)
    manifest_job(inputs.selections, [] if batched else records, records if batched else [], outputs.manifest,
                 outputs.summary, outputs.quarantine, log_path, inputs.skipped, outputs.skipped)  # fmt: skip


def selection_changes(before: pd.DataFrame | None, after: pd.DataFrame) -> tuple[int, int, int]:
    """(added, removed, changed) rows between two selections of a source, by image id."""
    if before is None or "image_id" not in before.columns:
        return len(after), 0, 0
    old = before.astype(str).set_index("image_id")
    new = after.astype(str).set_index("image_id")
    common = old.index.intersection(new.index)
    cols = [c for c in new.columns if c in old.columns]
    changed = int((old.loc[common, cols] != new.loc[common, cols]).any(axis=1).sum()) if len(common) else 0
    return len(new.index.difference(old.index)), len(old.index.difference(new.index)), changed


def selection_line(source: str, before: pd.DataFrame | None, after: pd.DataFrame) -> str:
    """What changed in a source's selection, in one line a person reads on the terminal."""
    added, removed, changed = selection_changes(before, after)
    return f"{source}: {added} added, {removed} removed, {changed} changed ({len(after)} images selected)"


def selection_digest(table: pd.DataFrame) -> str:
    """A short digest of a selection table: the rule's param, so that a change re-runs it while the
    console and .snakemake/metadata hold 16 characters, not the table."""
    return hashlib.sha256(table.to_csv(index=False).encode("utf-8")).hexdigest()[:16]


def read_selection(path: str | Path) -> pd.DataFrame | None:
    """A selection table as written (all columns as text), or None when there is none yet."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return None


def write_selection(
    table: pd.DataFrame,
    before: pd.DataFrame | None,
    output: str,
    log_path: str,
    source: str,
    skipped: pd.DataFrame | None = None,
    skipped_output: str | None = None,
    read_as: str = "",
) -> None:
    """The parse-time selection of one source, and the files it skipped, written for the manifest;
    one line says what changed since ``before`` (the table the last run wrote, or None)."""
    with job_log(log_path) as log:
        after = pd.read_csv(io.StringIO(table.to_csv(index=False)), dtype=str, keep_default_na=False)
        cxr_batch.say(log, selection_line(source, before, after))
        cxr_manifest.write_csv_atomic(table, Path(output))
        if read_as:
            log.info("metadata read as %s", read_as)
        problems = table.loc[table["problem"] != "", "problem"]
        log.info("%d images selected, %d with problems", len(table), len(problems))
        for reason, n in problems.value_counts().items():
            log.info("  %d x %s", n, reason)
        notes = table.loc[table["note"] != "", "note"] if "note" in table.columns else pd.Series(dtype=str)
        for note in notes:
            log.info("  note: %s", note)
        if skipped_output is not None:
            skipped = skipped if skipped is not None else pd.DataFrame(columns=cxr_sources.SKIPPED_COLUMNS)
            cxr_manifest.write_csv_atomic(skipped[cxr_sources.SKIPPED_COLUMNS], Path(skipped_output))
            log.info("%d files skipped", len(skipped))
            for reason, n in skipped["reason"].map(cxr_manifest.reason_kind).value_counts().items():
                log.info("  %d x %s", n, reason)


def touch_job(output: str, log_path: str) -> None:
    """An empty marker file (a batch listing's key file)."""
    with job_log(log_path):
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).touch()


def write_listing_job(rows: Sequence[tuple[str, str, str]], stat: bool, output: str, key_file: str,
                      other_batches: Sequence[str], log_path: str) -> None:  # fmt: skip
    """One batch's listing (cxrflow.crop_listings), written because its key file is new: the listing's
    mtime then moves, which re-runs that batch's crop job. Key files of its earlier listings, and
    listings of batches that no longer exist, are removed."""
    with job_log(log_path) as log:
        text = cxr_listing.listing_text(rows, stat=stat)
        cxr_listing.write_if_changed(output, text) or Path(output).touch()
        key = Path(key_file)
        batch = Path(output).stem
        cxr_listing.remove_others(key.parent, [key.name], pattern=f"{batch}.*")
        cxr_listing.remove_others(Path(output).parent, [f"{b}.tsv" for b in other_batches])
        log.info("%s: %d images listed", output, len(rows))


class QuarantineError(RuntimeError):
    """Too much of a source was quarantined to go on without the user saying so."""


def check_quarantine_job(summary_path: str, max_share: float, output: str, log_path: str) -> None:
    """Stop before splitting when a source is mostly quarantined; never stay silent when one is whole."""
    with job_log(log_path) as log:
        summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
        check = cxr_manifest.quarantine_check(summary, max_share)
        if check["over_share"]:
            raise QuarantineError(
                f"more than {100 * max_share:.0f}% of a source was quarantined (list: "
                "results/preprocessed/quarantine.csv):\n"
                + cxr_manifest.quarantine_message(check, check["over_share"])
                + "\nCheck the source's path, format and filters. To go on with what is left, "
                "raise preprocess.max_quarantined_share (e.g. --config "
                "preprocess='{max_quarantined_share: 1.0}' or in your config file)."
            )
        for source in check["all_quarantined"]:
            message = (
                "WARNING: "
                + cxr_manifest.quarantine_message(check, [source])
                + (": it contributes no image (allowed by preprocess.max_quarantined_share)")
            )
            log.warning(message)
            print(message, file=sys.stderr, flush=True)
        write_output(Path(output), (json.dumps(check, indent=2) + "\n").encode("utf-8"))
        log.info("quarantine check passed: %s", json.dumps(check["sources"]))


def preprocess_line(
    summary_path: str,
    quarantine_path: str,
    records_dir: str,
    since: float,
    manifest_path: str = "results/preprocessed/manifest.csv",
    skipped_path: str = "results/preprocessed/skipped.csv",
) -> str | None:
    """The last line of a run that rebuilt the manifest: images cropped, reused and
    quarantined; then ok, quarantined and skipped in all, each with where its list is.

    A record written since the run began (``records_dir/<source>/<image_id>.json``) was
    made by it, any other reused; the quarantine list says which of them are quarantined.
    Only file times are read, not the records. None when this run did not rebuild the manifest.
    """
    summary_file = Path(summary_path)
    if not summary_file.is_file() or summary_file.stat().st_mtime < since:
        return None
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    made = {(p.parent.name, p.stem) for p in Path(records_dir).glob("*/*.json") if p.stat().st_mtime >= since}
    quarantined = pd.read_csv(quarantine_path, dtype=str, keep_default_na=False)
    new_bad = len(made & set(zip(quarantined["source"], quarantined["image_id"])))
    return (
        f"preprocess: {summary['images']} images: {len(made) - new_bad} cropped, "
        f"{summary['images'] - len(made)} reused from earlier runs, {new_bad} quarantined by this run; "
        f"in all {summary['ok']} ok (list: {manifest_path}), "
        f"{summary['quarantined']} quarantined (list: {quarantine_path}), "
        f"{summary.get('skipped', 0)} files skipped (list: {skipped_path})"
    )
