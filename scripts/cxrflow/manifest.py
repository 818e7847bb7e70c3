"""Preprocessing manifest: the selection joined with the per-image crop records.

The manifest is the one table every later step reads (split, training, report), so
it is built strictly: every selected image must be accounted for by exactly one
record, and an ``ok`` image must really have its output file. A mismatch means a
stale record or a crashed job, which would otherwise surface much later as a
silently smaller dataset. Images the selection already flagged (``problem``, e.g.
"missing file") may have no record: they are listed as quarantined with that reason,
so they stay visible in the report instead of vanishing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .preprocess import RECORD_KEYS
from .sources import COLUMNS as SOURCE_COLUMNS

# The contracts of the two inputs are owned by the modules that write them.
SELECTION_COLUMNS: tuple[str, ...] = tuple(SOURCE_COLUMNS)
# Optional in a selection table (a missing one reads as empty).
OPTIONAL_SELECTION_COLUMNS: tuple[str, ...] = ("note", "age", "sex")
STATUSES: tuple[str, ...] = ("ok", "quarantined")
# The record's integer geometry: its size, then the crop box through cols_removed.
INT_COLUMNS: tuple[str, ...] = (
    "orig_width",
    "orig_height",
    *RECORD_KEYS[RECORD_KEYS.index("decode_scale") : RECORD_KEYS.index("cols_removed") + 1],
)
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id",
    "source",
    "raw_path",
    "resolved_path",
    "label",
    "finding",
    "patient_id",
    "view",
    "age",
    "sex",
    *INT_COLUMNS,
    "output_path",
    "status",
    "reason",
    "format",
    "note",
)
STR_COLUMNS: tuple[str, ...] = tuple(c for c in MANIFEST_COLUMNS if c not in INT_COLUMNS)

# Error messages list at most this many ids: enough to act on, short enough to read.
_MAX_IDS_SHOWN = 20


def _ids_text(ids: Sequence[str]) -> str:
    shown = ", ".join(map(str, ids[:_MAX_IDS_SHOWN]))
    more = len(ids) - _MAX_IDS_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")


def _text(value: Any) -> str:
    """JSON null / NaN -> "" so string columns never mix None, NaN and text."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value)


def _same_path(a: str, b: str) -> bool:
    """Equal text first: resolving both of 27,000 pairs took seconds of the manifest job."""
    return a == b or Path(a).resolve(strict=False) == Path(b).resolve(strict=False)


def read_records(record_paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Load crop-job records, failing on a file that is not a JSON object."""
    records = []
    for path in record_paths:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"unreadable crop record {path}: {err}") from err
        if not isinstance(record, dict):
            raise ValueError(f"crop record {path} is not a JSON object")
        records.append(record)
    return records


def check_record(record: Mapping[str, Any]) -> None:
    """A complete record with a known status, or ValueError naming the image."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"crop record of {record.get('image_id')!r} lacks keys: {', '.join(missing)}")
    if record["status"] not in STATUSES:
        raise ValueError(
            f"crop record of {record['image_id']!r} has status {record['status']!r}, expected one of {STATUSES}"
        )


def _check_selection(selection: pd.DataFrame) -> None:
    missing = [c for c in SELECTION_COLUMNS if c not in selection.columns and c not in OPTIONAL_SELECTION_COLUMNS]
    if missing:
        raise ValueError(f"selection lacks columns: {', '.join(missing)}")
    ids = selection["image_id"].astype(str)
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise ValueError(f"duplicate image ids in the selection: {_ids_text(dup)}")


def _index_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    by_id: dict[str, Mapping[str, Any]] = {}
    dup: list[str] = []
    for record in records:
        image_id = str(record["image_id"])
        if image_id in by_id:
            dup.append(image_id)
        by_id[image_id] = record
    if dup:
        raise ValueError(f"duplicate crop records for image ids: {_ids_text(sorted(set(dup)))}")
    return by_id


def _flagged_row(sel: Mapping[str, Any]) -> dict[str, Any]:
    """A selection row already flagged with a problem and never cropped."""
    row = {c: _text(sel.get(c)) for c in MANIFEST_COLUMNS if c in SELECTION_COLUMNS}
    row.update({c: None for c in INT_COLUMNS})
    row.update(output_path="", status="quarantined", reason=_text(sel["problem"]), format="")
    return row


def _record_row(sel: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    row = {c: _text(sel.get(c)) for c in MANIFEST_COLUMNS if c in SELECTION_COLUMNS}
    row.update({c: record[c] for c in INT_COLUMNS})
    row.update(
        output_path=_text(record["output_path"]) if record["status"] == "ok" else "",
        status=record["status"],
        reason=_text(record["reason"]),
        format=_text(record["format"]),
        note="; ".join(n for n in (_text(sel.get("note")), _text(record["note"])) if n),
    )
    return row


def build_manifest(selection: pd.DataFrame, records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per selected image, in selection order, with its crop outcome.

    Raises ValueError (naming the image ids) on: duplicate ids, a selected image
    without a record (unless the selection flagged a problem for it), a record for an
    unselected id, a record whose raw_path differs from the selection's (stale
    record), an ``ok`` record for an image the selection flagged, and an ``ok``
    record whose output file is missing. Relative output paths are resolved from
    the working directory, as the workflow writes them.
    """
    _check_selection(selection)
    for record in records:
        check_record(record)
    by_id = _index_records(records)
    selected = set(selection["image_id"].astype(str))

    unselected = sorted(set(by_id) - selected)
    if unselected:
        raise ValueError(f"crop records for image ids not in the selection: {_ids_text(unselected)}")

    rows, no_record, stale, contradicted, no_output = [], [], [], [], []
    for sel in selection.to_dict("records"):
        image_id = str(sel["image_id"])
        record = by_id.get(image_id)
        if record is None:
            if _text(sel["problem"]):
                rows.append(_flagged_row(sel))
            else:
                no_record.append(image_id)
            continue
        if not _same_path(_text(record["raw_path"]), _text(sel["raw_path"])):
            stale.append(image_id)
        if record["status"] == "ok":
            if _text(sel["problem"]):
                contradicted.append(image_id)
            output = _text(record["output_path"])
            if not output or not Path(output).is_file():
                no_output.append(image_id)
        rows.append(_record_row(sel, record))

    for ids, what in (
        (no_record, "selected images without a crop record"),
        (stale, "crop records whose raw_path differs from the selection (stale records)"),
        (contradicted, "images flagged by the selection but recorded as ok"),
        (no_output, "ok records whose output file is missing"),
    ):
        if ids:
            raise ValueError(f"{what}: {_ids_text(ids)}")
    return _typed(pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Pin dtypes: nullable Int64 keeps quarantined rows' unknown sizes as <NA>."""
    df = df.copy()
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="raise").astype("Int64")
    for col in STR_COLUMNS:
        df[col] = df[col].fillna("").astype(str)
    return df


def write_csv_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write via a temporary file + rename so a crash never leaves a half CSV behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            df.to_csv(handle, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_manifest(df: pd.DataFrame, path: Path) -> Path:
    """Write the manifest CSV atomically, columns in manifest order."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns: {', '.join(missing)}")
    return write_csv_atomic(df[list(MANIFEST_COLUMNS)], path)


def raw_files(table: pd.DataFrame) -> pd.Series:
    """The raw file to read for each row: the symlink's target where the listing resolved one,
    else the path as listed (the copy search and its figure read the raw images again)."""
    return table["resolved_path"].where(table["resolved_path"].astype(str) != "", table["raw_path"])


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest CSV back with its dtypes (ids like "007" stay strings)."""
    df = pd.read_csv(
        path,
        dtype={c: str for c in STR_COLUMNS},
        keep_default_na=False,
        na_values={c: [""] for c in INT_COLUMNS},
    )
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest {path} lacks columns: {', '.join(missing)}")
    return _typed(df[list(MANIFEST_COLUMNS)])


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(sort=False).sort_index().items()}


def manifest_summary(df: pd.DataFrame) -> dict[str, Any]:
    """JSON-ready counts for the log and report: per source, label, status, reasons."""
    quarantined = df[df["status"] != "ok"]
    table = df.groupby(["source", "label", "status"]).size()
    nested: dict[str, dict[str, dict[str, int]]] = {}
    for (source, label, status), n in table.items():
        nested.setdefault(str(source), {}).setdefault(str(label), {})[str(status)] = int(n)
    return {
        "images": int(len(df)),
        "ok": int((df["status"] == "ok").sum()),
        "quarantined": int(len(quarantined)),
        "by_source": _counts(df["source"]),
        "by_label": _counts(df["label"]),
        "by_status": _counts(df["status"]),
        "by_source_label_status": nested,
        "quarantine_reasons": _counts(quarantined["reason"].replace("", "(no reason given)")),
        "by_source_reason_kind": {
            str(source): _counts(group["reason"].map(reason_kind))
            for source, group in quarantined.groupby("source", sort=True)
        },
    }


def reason_kind(reason: str) -> str:
    """The kind of a quarantine reason, its text before the first colon: `unsafe path: ../x` -> `unsafe path`."""
    return str(reason).split(":", 1)[0].strip() or "(no reason given)"


# Kinds of reason shown in a quarantine-share message: enough to see the cause at once.
_TOP_REASONS = 5


def quarantine_check(summary: Mapping[str, Any], max_share: float) -> dict[str, Any]:
    """Per source: images, quarantined, share; and the sources over ``max_share`` or wholly quarantined.

    A source mostly quarantined means a wrong path, format or filter far more often
    than a bad collection, and splitting what is left would hide it.
    """
    per_source = {}
    for source, labels in summary["by_source_label_status"].items():
        total = sum(sum(statuses.values()) for statuses in labels.values())
        bad = sum(statuses.get("quarantined", 0) for statuses in labels.values())
        kinds = summary.get("by_source_reason_kind", {}).get(source, {})
        top = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP_REASONS]
        per_source[source] = {"images": total, "quarantined": bad, "share": bad / total if total else 0.0,
                              "top_reasons": dict(top)}  # fmt: skip
    over = [s for s, v in per_source.items() if v["share"] > max_share]
    everything = [s for s, v in per_source.items() if v["images"] and v["quarantined"] == v["images"]]
    return {"max_quarantined_share": max_share, "sources": per_source, "over_share": over,
            "all_quarantined": everything}  # fmt: skip


def quarantine_message(check: Mapping[str, Any], sources: Sequence[str]) -> str:
    """Human lines for ``sources``: counts, share and the top reasons of each."""
    lines = []
    for source in sources:
        v = check["sources"][source]
        reasons = "; ".join(f"{n} x {kind}" for kind, n in v["top_reasons"].items())
        lines.append(f"source {source!r}: {v['quarantined']} of {v['images']} images quarantined "
                     f"({100 * v['share']:.0f}%): {reasons}")  # fmt: skip
    return "\n".join(lines)
