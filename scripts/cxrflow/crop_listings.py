"""Per-batch listing files: how Snakemake learns that a batch's raw images changed.

Declaring hundreds of raw images as a batch job's inputs cost Snakemake ~2.5 ms per
image per job (bench/README.md), and putting their stats into params printed every
row of a changed batch as the job's reason. Instead each batch job takes one input,
``results/preprocessed/listings/{source}/{batch}.tsv``: one row per image with its id,
path, known problem and (size, mtime, ctime) taken through symlinks. Nothing is written
while Snakemake reads the workflow (``-n``, ``--lint`` and ``--unlock`` leave results/
alone): it only computes each listing's text and its key (``listing_key``). The listing
is written by a job whose one input is an empty *key file* named by that key,
``listings/{source}/keys/{batch}.{key}``. While the key is unchanged its file exists and
nothing runs; when a row changes, the new key's file is missing, so the key job and the
listing job run, the listing's mtime moves, and Snakemake's plain mtime check (under any
--rerun-triggers) re-runs that batch alone. Inside the job the content key
(cxrflow.crop_batches.input_key) decides image by image what is decoded again.

ctime, not only mtime: copies that keep mtimes (cp -p, tar, rsync -a) and same-size
rewrites cannot hide a change, since no user call sets ctime. The price is a re-run
batch after chmod or a new hard link, which re-hashes its images and decodes none.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from .preprocess import atomic_write_bytes

HEADER = "image_id\traw_path\tproblem\tsize\tmtime_ns\tctime_ns\n"


def file_stat(path: str) -> tuple[int, int, int] | None:
    """(size, mtime_ns, ctime_ns) of a raw image through symlinks; None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


def listing_text(rows: Iterable[tuple[str, str, str]], stat: bool = True) -> str:
    """The TSV of (image_id, raw_path, problem) rows, each with its file's stat.

    ``stat=False`` (images that another rule writes, as the demo's) leaves the stat
    columns empty: their change shows through that rule's own outputs.
    A row with a known problem is not stat'ed either: its file is not read.
    """
    lines = [HEADER]
    for image_id, raw_path, problem in rows:
        st = file_stat(raw_path) if stat and not problem else None
        size, mtime, ctime = ("", "", "") if st is None else st
        lines.append(f"{image_id}\t{_clean(raw_path)}\t{_clean(problem)}\t{size}\t{mtime}\t{ctime}\n")
    return "".join(lines)


def _clean(text: str) -> str:
    """Tabs and newlines in a path or reason would break the row: escape them."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; True if written.

    Keeping an unchanged file untouched is the point: its mtime is what Snakemake reads.
    """
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def listing_key(text: str) -> str:
    """16 hex digits of a listing's text: the name of its key file, so that a changed listing is a
    missing file, which any ``--rerun-triggers`` sees."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def remove_others(folder: str | Path, keep: Iterable[str], pattern: str = "*.tsv") -> None:
    """Delete the files matching ``pattern`` but not in ``keep``: listings of batches that no longer
    exist (the bucket count doubled), key files of a batch's earlier listings."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    kept = set(keep)
    for path in folder.glob(pattern):
        if path.name not in kept:
            path.unlink(missing_ok=True)
