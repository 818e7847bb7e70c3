"""Read the public chest X-ray collections into one uniform image table.

Each collection keeps its own on-disk format (docs/data.md): ieee8023
``metadata.csv``, the Kaggle RSNA class table, Kaggle folder trees, or any CSV
with a column mapping. ``select_images`` turns any of them into rows with the
columns of :data:`COLUMNS`; rows are never dropped silently: a bad path, a missing
file or a malformed metadata row is kept and named in ``problem``.

A ``folders`` source is an inventory, not a filter (``inventory_source``): every file
below it is an image row or a row of the skipped list (:data:`SKIPPED_COLUMNS`) with
its reason. The rule: an optional ``train``/``val``/``test`` level, then the class
folder, matched against the configured labels exactly, else case-insensitively
(``NORMAL`` is the class ``Normal``); every file below a class folder, at any depth,
belongs to that class. Metadata files are read in the encoding they were written in
(UTF-8 with or without BOM, else Windows-1252, else Latin-1; or the source's
``encoding``), comma-separated unless the header line says semicolons or tabs, and a
file name is matched exactly first, then after normalising whitespace, which is noted
in the row.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd

from .covariates import normalise_age, normalise_sex

COLUMNS = ["image_id", "source", "raw_path", "resolved_path", "label", "finding", "patient_id", "view", "age", "sex",
           "problem", "note"]  # fmt: skip
# The skipped list of a source: files that are not images of the selection, each with why.
SKIPPED_COLUMNS = ["source", "path", "reason"]
# Files and folders that operating systems and archivers leave behind (compared lower-case);
# any other name starting with "." is hidden and skipped as well. AppleDouble files start "._".
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", ".localized", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
# Files a folder listing does not offer to the decoder, by extension (any case). Everything
# else is tried and the decoder tells by content (PACS exports have no extension at all).
NON_IMAGE_EXTENSIONS = frozenset({
    ".txt", ".csv", ".tsv", ".md", ".json", ".xml", ".pdf", ".html", ".htm", ".xls", ".xlsx", ".doc", ".docx",
    ".zip", ".gz", ".tar", ".7z", ".rar", ".py", ".ini", ".log", ".yaml", ".yml", ".db", ".lnk",
})  # fmt: skip
# Tried in order when a source sets no `encoding`: strict UTF-8 (a BOM is dropped), then
# Windows-1252 (what Excel writes on Windows), then Latin-1, which decodes any byte.
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
# Column of a metadata table marking a malformed row: "line N: why" (absent when none).
MALFORMED = "_malformed"
RSNA_CSV = "stage_2_detailed_class_info.csv"
RSNA_IMAGE_DIRS = ("stage_2_train_images_jpg", "stage_2_train_images", ".")
RSNA_EXTENSIONS = ("jpg", "jpeg", "png", "dcm")
FOLDER_SUBSETS = ("train", "val", "test")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_PERSON = re.compile(r"(person\d+)_", re.IGNORECASE)
# File systems cap names at 255 bytes; leave room for the source prefix, suffixes and extensions.
_MAX_STEM = 150


class SourceError(ValueError):
    """A source cannot be read as configured (missing file, folder or column)."""


# ---------------------------------------------------------------- reading
def normalise_name(name: Any) -> str:
    """Column names differ between dataset versions (`Patientid`, ` url`, `clinical notes`)."""
    return re.sub(r"\s+", "_", str(name).strip().lower())


def _is_unnamed(name: Any) -> bool:
    text = str(name).strip()
    return text == "" or text.startswith("Unnamed:") or text.startswith("unnamed:")


def tidy_metadata(fmt: str, table: pd.DataFrame) -> pd.DataFrame:
    """Normalise a raw table; idempotent, so both a read file and a planned (demo) table fit.

    Drops unnamed all-empty columns (a trailing comma in the header), makes every cell a
    string, and for RSNA keeps one row per patientId (the CSV has one row per box).
    """
    table = table.astype(str) if len(table.columns) else table.copy()
    drop = [c for c in table.columns if _is_unnamed(c) and (table[c].str.strip() == "").all()]
    table = table.drop(columns=drop)
    names = [normalise_name(c) for c in table.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceError(f"columns {duplicates} appear twice after normalising names {list(table.columns)}")
    table.columns = names
    if fmt == "rsna" and "patientid" in table.columns:
        bad = table[MALFORMED] != "" if MALFORMED in table.columns else pd.Series(False, index=table.index)
        table = table[~(table["patientid"].where(~bad).duplicated(keep="first") & ~bad)]
    return table.reset_index(drop=True)


def decode_text(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """The text and the encoding it was read with: ``encoding`` when given, else ENCODINGS in order."""
    for candidate in [encoding] if encoding else ENCODINGS:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            if encoding:
                raise
        except LookupError:
            raise SourceError(f"unknown encoding {encoding!r}") from None
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _header_names(header: list[str]) -> list[str]:
    """Empty names -> `Unnamed: i`, repeats -> `name.1`, as pandas names them."""
    names: list[str] = []
    for i, name in enumerate(header):
        name = name if name.strip() else f"Unnamed: {i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    return names


DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def header_delimiter(text: str) -> str:
    """A comma, unless the header line holds none and holds semicolons or tabs (the more of them)."""
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_csv_rows(text: str, delimiter: str = ",") -> pd.DataFrame:
    """All cells str; a row with more fields than the header is kept as a malformed row
    (column MALFORMED: `line N: ...`, other cells empty), a shorter one is padded with "".

    One bad row must not stop a collection of thousands: it is quarantined with its line.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise pd.errors.EmptyDataError("no columns to parse") from None
    except csv.Error as err:
        raise pd.errors.ParserError(str(err)) from err
    names = _header_names(header)
    rows, bad = [], []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            bad.append((len(rows) + len(bad), f"line {reader.line_num}: {err}"))
            rows.append([""] * len(names))
            continue
        if not fields or all(not f.strip() for f in fields) and len(fields) <= 1:
            continue  # blank line
        if len(fields) > len(names):
            bad.append((len(rows), f"line {reader.line_num}: {len(fields)} fields, the header has {len(names)}"))
            rows.append([""] * len(names))
            continue
        rows.append(fields + [""] * (len(names) - len(fields)))
    table = pd.DataFrame(rows, columns=names, dtype=str)
    if bad:
        table[MALFORMED] = ""
        for index, why in bad:
            table.loc[index, MALFORMED] = why
    return table


@dataclass
class MetadataRead:
    """A source's raw table and how it was read: the encoding and delimiter, and the files it skipped (folders)."""

    table: pd.DataFrame
    encoding: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to the root, reason)
    delimiter: str = ","


def _read_csv(path: Path, source: str, encoding: str | None = None) -> MetadataRead:
    if not path.is_file():
        raise SourceError(f"source {source!r}: metadata file {path} does not exist")
    try:
        text, used = decode_text(path.read_bytes(), encoding)
        # the header's delimiter: Excel saves "CSV" with semicolons where the decimal mark is a comma
        delimiter = header_delimiter(text)
        return MetadataRead(parse_csv_rows(text, delimiter), used, delimiter=delimiter)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, SourceError) as err:
        raise SourceError(f"source {source!r}: cannot parse {path}: {err}") from err


def system_reason(name: str, folder: bool) -> str | None:
    """Why a file or folder left by an operating system is skipped, or None for any other name."""
    lowered = name.lower()
    if lowered in SYSTEM_FOLDERS or lowered in SYSTEM_FILES or name.startswith("."):
        kind = "folder" if folder else ("AppleDouble file" if name.startswith("._") else "file")
        return f"system {kind}: {name}"
    return None


def match_class(name: str, labels: Mapping[str, str] | None) -> str | None:
    """The configured label key a class folder stands for: exact, else case-insensitive; None: not a class.
    Without labels every folder is a class of its own name."""
    if labels is None:
        return name
    keys = [str(k) for k in labels]
    if name in keys:
        return name
    folded = [k for k in keys if k.casefold() == name.casefold()]
    return folded[0] if folded else None


def _inside(real: str, folders: Iterable[str]) -> str | None:
    """The folder of ``folders`` (real paths) that ``real`` is or lies in, if any."""
    return next((f for f in folders if real == f or real.startswith(f.rstrip(os.sep) + os.sep)), None)


def _walk(
    folder: Path, ancestors: frozenset[str], elsewhere: frozenset[str] = frozenset()
) -> Iterable[tuple[Path, str | None]]:
    """Every file below ``folder`` (symlinks followed, sorted), with a reason when it is skipped.

    A folder link back to a folder it lies in is listed as skipped instead of walked again: one on
    the way down (``ancestors``, real paths; a cycle of links included) or any folder above it on
    disk, the source's root and beyond, whose walk would list the other class folders as this one.
    A link into one of the ``elsewhere`` folders (the source's other class folders) is skipped too:
    its files are listed there, under their own class and subset, and would be listed twice.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:
        yield folder, f"unreadable folder: {err.strerror or err}"
        return
    here = os.path.realpath(folder)
    for entry in entries:
        path = Path(entry.path)
        is_dir = entry.is_dir(follow_symlinks=True)
        system = system_reason(entry.name, is_dir)
        real = os.path.realpath(path) if is_dir or entry.is_symlink() else ""
        other = _inside(real, elsewhere) if real else None
        if other:
            yield path, f"link into another class folder: {other}"
            continue
        if is_dir:
            if real in ancestors or _inside(here, [real]):
                yield path, f"folder link loops back to {real}"
                continue
            for sub, reason in _walk(path, ancestors | {real}, elsewhere):
                yield sub, reason or system
            continue
        if system:
            yield path, system
        elif path.suffix.lower() in NON_IMAGE_EXTENSIONS:
            yield path, f"not an image file by its extension: {path.suffix}"
        else:
            yield path, None


def inventory_folders(root: Path, labels: Mapping[str, str] | None = None) -> MetadataRead:
    """Kaggle-style tree `[train|val|test/]<class>/**/<file>`: every file an image row or skipped.

    Class folders match ``labels`` keys exactly, else case-insensitively (module docstring);
    files at any depth below a class folder are its images. Symlinked files and folders are
    followed (cluster data stores, DataLad and git-annex trees are symlinks); a broken link is
    listed as an image, so that it is quarantined, not lost. Sorted for determinism.
    """
    root = Path(root)
    top = {e.name: e for e in os.scandir(root)}
    subsets = {name: name.lower() for name in top if name.lower() in FOLDER_SUBSETS and top[name].is_dir()}
    rows: list[dict[str, str]] = []
    skipped: list[tuple[str, str]] = []
    class_folders: list[tuple[Path, str, str]] = []  # (folder, subset, class): walked once all are known

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    def skip_all(folder: Path, reason: str, first: bool = False) -> None:
        """Every file below ``folder`` skipped: with ``reason``, or (``first`` False) its own if it has one."""
        for path, why in _walk(folder, frozenset({os.path.realpath(folder)})):
            skipped.append((rel(path), reason if first else why or reason))

    def list_base(base: Path, subset: str) -> None:
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            path = Path(entry.path)
            if subset == "" and entry.name in subsets:
                continue
            is_dir = entry.is_dir(follow_symlinks=True)
            system = system_reason(entry.name, is_dir)
            if not is_dir:
                where = "train/val/test or a class folder" if subsets else "a class folder"
                skipped.append((rel(path), system or f"not in {where}"))
                continue
            if system:
                skip_all(path, system, first=True)
                continue
            if subsets and subset == "":
                skip_all(path, f"not in train/val/test: {entry.name}")
                continue
            finding = match_class(entry.name, labels)
            if finding is None:
                skip_all(path, f"not a configured class: {entry.name}")
                continue
            class_folders.append((path, subset, finding))

    for name in sorted(subsets, key=lambda n: (FOLDER_SUBSETS.index(subsets[n]), n)):
        list_base(root / name, subsets[name])
    list_base(root, "")
    reals = [os.path.realpath(folder) for folder, _, _ in class_folders]
    # A class folder that is a link to or into another class folder is not walked: its files are
    # listed there, once, under the class and subset of the folder they lie in (of two links to
    # one place, the first).
    real_root = os.path.realpath(root)
    moved = [own != os.path.join(real_root, rel(folder)) for (folder, _, _), own in zip(class_folders, reals)]

    def listed_by(i: int) -> int | None:
        own = reals[i]
        for j, real in enumerate(reals):
            if j != i and (_inside(own, [real]) if real != own else (moved[i], i) > (moved[j], j)):
                return j
        return None

    by = [listed_by(i) for i in range(len(class_folders))]
    walked = frozenset(real for real, j in zip(reals, by) if j is None)
    for (folder, subset, finding), own, j in zip(class_folders, reals, by):
        if j is not None:
            skipped.append((rel(folder), f"link into another class folder: {reals[j]}"))
            continue
        for image, reason in _walk(folder, frozenset({own}), walked - {own}):
            if reason:
                skipped.append((rel(image), reason))
                continue
            person = _PERSON.match(image.name)
            rows.append({"subset": subset, "finding": finding, "filename": rel(image),
                         "patientid": person.group(1) if person else ""})  # fmt: skip
    table = pd.DataFrame(rows, columns=["subset", "finding", "filename", "patientid"], dtype=str)
    return MetadataRead(table, "", skipped)


def _list_folders(root: Path) -> pd.DataFrame:
    """The images of a folders tree, every folder a class of its own name (no skipped list)."""
    return inventory_folders(root).table


def metadata_file(fmt: str, spec: Mapping[str, Any]) -> str | None:
    """The file, relative to the source root, whose content defines the selection.

    The workflow makes it an input of the selection step so that a changed
    table re-runs it; `folders` has none (its listing is the table).
    """
    return {"ieee8023": "metadata.csv", "rsna": RSNA_CSV, "csv": spec.get("csv")}.get(fmt)


def read_source(
    fmt: str, root: Path, spec: Mapping[str, Any], source: str = "?", labels: Mapping[str, str] | None = None
) -> MetadataRead:
    """read_metadata with how it was read: the encoding of a metadata file, the skipped files of a folder tree."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"source {source!r}: dataset folder {root} does not exist")
    encoding = spec.get("encoding")
    if fmt in ("ieee8023", "rsna"):
        read = _read_csv(root / metadata_file(fmt, spec), source, encoding)
    elif fmt == "folders":
        read = inventory_folders(root, labels)
    elif fmt == "csv":
        if not spec.get("csv"):
            raise SourceError(f"source {source!r}: format csv needs `csv:` (metadata file relative to {root})")
        read = _read_csv(root / spec["csv"], source, encoding)
    else:
        raise SourceError(f"source {source!r}: unknown format {fmt!r}")
    read.table = tidy_metadata(fmt, read.table)
    return read


def read_metadata(
    fmt: str, root: Path, spec: Mapping[str, Any], source: str = "?", labels: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The collection's raw table, all cells str, column names normalised (see tidy_metadata).

    Filters name these columns: ieee8023 and csv their own (`finding`, `modality`, `view`...),
    rsna `patientid`/`class`, folders `subset` (train/val/test or ""), `finding` (the class
    folder's label key; without ``labels`` the folder's name), `filename`, `patientid`.
    A malformed row has `_malformed` set ("line N: ...") and is quarantined by select_images.
    """
    return read_source(fmt, root, spec, source, labels).table


# ---------------------------------------------------------------- selecting
def _role_columns(fmt: str, spec: Mapping[str, Any]) -> dict[str, str | None]:
    """Which table column plays which role: filename, finding, patient, view, folder, age, sex."""
    if fmt == "ieee8023":
        return {
            "filename": "filename",
            "finding": "finding",
            "patient": "patientid",
            "view": "view",
            "folder": "folder",
            "age": "age",
            "sex": "sex",
        }
    none = {"age": None, "sex": None}  # rsna: from the DICOM headers (covariates.covariate_table)
    if fmt == "rsna":
        return {"filename": "patientid", "finding": "class", "patient": "patientid", "view": None, "folder": None,
                **none}  # fmt: skip
    if fmt == "folders":
        return {"filename": "filename", "finding": "finding", "patient": "patientid", "view": None, "folder": None,
                **none}  # fmt: skip
    if fmt == "csv":
        cols = spec.get("columns") or {}
        if "filename" not in cols or "label" not in cols:
            raise SourceError("format csv needs `columns: {filename: ..., label: ...}`")
        return {
            "filename": normalise_name(cols["filename"]),
            "finding": normalise_name(cols["label"]),
            "patient": normalise_name(cols["patient_id"]) if cols.get("patient_id") else None,
            "view": normalise_name(cols["view"]) if cols.get("view") else None,
            "folder": None,
            "age": normalise_name(cols["age"]) if cols.get("age") else None,
            "sex": normalise_name(cols["sex"]) if cols.get("sex") else None,
        }
    raise SourceError(f"unknown format {fmt!r}")


def last_component(finding: str) -> str:
    """`Pneumonia/Viral/COVID-19` -> `COVID-19` (newest ieee8023 findings are paths)."""
    return finding.strip().rsplit("/", 1)[-1].strip()


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _filter_mask(table: pd.DataFrame, filters: Mapping[str, Any], finding_col: str, source: str) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for key, wanted in (filters or {}).items():
        col = normalise_name(key)
        if col not in table.columns:
            raise SourceError(f"source {source!r}: filter column {key!r} not in columns {list(table.columns)}")
        values = {_as_text(v) for v in (wanted if isinstance(wanted, (list, tuple, set)) else [wanted])}
        cells = table[col].str.strip()
        hit = cells.isin(values)
        if col == finding_col:
            hit |= cells.map(last_component).isin(values)
        mask &= hit
    return mask


def map_label(finding: str, labels: Mapping[str, str]) -> str | None:
    """Exact (stripped) finding first, else its last path component; None: not a workflow class."""
    raw = finding.strip()
    table = {str(k).strip(): v for k, v in labels.items()}
    if raw in table:
        return table[raw]
    return table.get(last_component(raw))


def unsafe_reason(relative: str) -> str | None:
    """Why a path written in metadata may not be used, or None.

    Metadata comes from third parties: an absolute path, or one that climbs out of the
    dataset folder with `..`, must never be read or reported as data. The check is
    lexical on purpose: a file inside the dataset folder may be a symlink into a data
    store elsewhere (clusters, DataLad, git-annex), and is read through it.
    """
    text = relative.strip()
    if not text:
        return "empty file name"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).anchor:
        return f"unsafe path: {relative}"
    norm = posixpath.normpath(text.replace("\\", "/"))
    if norm in (".", "..") or norm.startswith("../"):
        return f"unsafe path: {relative}"
    return None


def file_problem(path: str) -> str:
    """Why an image file cannot be read at selection time ("" when it can be tried)."""
    if os.path.isfile(path):
        return ""
    if os.path.islink(path):
        return f"broken symlink: {path} -> {os.readlink(path)}"
    return "missing file"


def _squash(name: str) -> str:
    return " ".join(name.split())


def match_file(path: str, listings: dict[str, dict[str, list[str]]]) -> tuple[str, str]:
    """(path to use, note): the exact path when it exists, else the one file of its folder whose
    name equals it after normalising whitespace (trimmed, runs of spaces as one), with a note
    naming both; else the path unchanged (the caller reports it missing). ``listings`` caches folders."""
    if os.path.lexists(path):
        return path, ""
    head, tail = os.path.split(path)
    if head not in listings:
        names: dict[str, list[str]] = {}
        try:
            for entry in os.listdir(head or "."):
                names.setdefault(_squash(entry), []).append(entry)
        except OSError:
            pass
        listings[head] = names
    found = listings[head].get(_squash(tail), [])
    if len(found) != 1:
        return path, ""
    return os.path.join(
        head, found[0]
    ), f"file name matched after normalising whitespace: {tail!r} is {found[0]!r} on disk"


def realpath_in(path: str, real_dirs: dict[str, str]) -> str:
    """os.path.realpath, resolving each folder once (``real_dirs`` caches them): at
    27,000 images the per-component lstat calls of realpath cost seconds per parse."""
    head, tail = os.path.split(path)
    if tail in ("", ".", "..") or os.path.islink(path):
        return os.path.realpath(path)
    if head not in real_dirs:
        real_dirs[head] = os.path.realpath(head)
    return os.path.join(real_dirs[head], tail)


def sanitise_stem(name: str) -> str:
    """A file stem safe on every file system and in Snakemake wildcards."""
    stem = PurePosixPath(name.replace("\\", "/")).stem or "image"
    return _UNSAFE_CHARS.sub("_", stem)[:_MAX_STEM]


def unique_ids(source: str, names: Iterable[str]) -> list[str]:
    """`<source>-<stem>`, then `-2`, `-3`, ... in order; compared case-insensitively
    because macOS and Windows file systems are."""
    seen: set[str] = set()
    ids = []
    for name in names:
        base = f"{source}-{sanitise_stem(name)}"
        candidate, n = base, 1
        while candidate.lower() in seen:
            n += 1
            candidate = f"{base}-{n}"
        seen.add(candidate.lower())
        ids.append(candidate)
    return ids


def _rsna_image_dir(root: Path, spec: Mapping[str, Any]) -> str:
    images = spec.get("images")
    if images and images != ".":
        return images
    for candidate in RSNA_IMAGE_DIRS:
        if (root / candidate).is_dir():
            return candidate
    # Nothing on disk yet (demo images are written later): the article's JPG layout.
    return RSNA_IMAGE_DIRS[0]


def _rsna_relpaths(root: Path, spec: Mapping[str, Any], ids: pd.Series) -> list[str]:
    folder = _rsna_image_dir(root, spec)
    present = set(os.listdir(root / folder)) if (root / folder).is_dir() else set()
    paths = []
    for pid in ids:
        ext = next((e for e in RSNA_EXTENSIONS if f"{pid.strip()}.{e}" in present), RSNA_EXTENSIONS[0])
        paths.append(posixpath.join(folder, f"{pid.strip()}.{ext}") if folder != "." else f"{pid.strip()}.{ext}")
    return paths


def _join(folder: str, name: str) -> str:
    """folder/name, but an absolute name stays as it is so the safety check sees it."""
    if not name or folder in ("", ".") or PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return name
    return f"{folder}/{name}"


def _relpaths(fmt: str, root: Path, spec: Mapping[str, Any], table: pd.DataFrame, roles: dict) -> list[str]:
    """Paths as the metadata writes them; names are not stripped: a trailing space is a real
    character on disk (match_file tries the whitespace-normalised name only after the exact one)."""
    if fmt == "rsna":
        return _rsna_relpaths(root, spec, table[roles["filename"]])
    names = table[roles["filename"]]
    if fmt == "ieee8023":
        folders = table["folder"].str.strip() if "folder" in table.columns else pd.Series("", index=table.index)
        return [_join(d or "images", n) for d, n in zip(folders, names)]
    if fmt == "csv":
        images = spec.get("images") or "."
        return [_join(images, n) for n in names]
    return list(names)


def select_images(
    name: str,
    spec: Mapping[str, Any],
    metadata: pd.DataFrame,
    root: Path,
    labels: Mapping[str, str],
    check_files: bool,
) -> pd.DataFrame:
    """Filter, label and limit one source's table; one row per image with columns COLUMNS.

    `labels` is the global map, used where the spec has none of its own. With
    check_files=False no image is looked at (the demo rule writes them later).
    """
    fmt = spec["format"]
    table = tidy_metadata(fmt, metadata)
    malformed = pd.DataFrame(columns=table.columns)
    if MALFORMED in table.columns:
        bad = table[MALFORMED] != ""
        table, malformed = table[~bad], table[bad]
    try:
        roles = _role_columns(fmt, spec)
    except SourceError as err:
        raise SourceError(f"source {name!r}: {err}") from None
    for role in ("filename", "finding", "patient", "view", "age", "sex"):
        col = roles[role]
        optional = fmt == "ieee8023" and role in ("patient", "view", "age", "sex")
        if col is not None and col not in table.columns and not optional:
            raise SourceError(f"source {name!r} ({root}): column {col!r} ({role}) not in {list(table.columns)}")
    table = table[_filter_mask(table, spec.get("filters") or {}, roles["finding"], name)]
    label_map = spec.get("labels") or labels
    classes = table[roles["finding"]].map(lambda f: map_label(f, label_map))
    table = table[classes.notna()].assign(_label=classes[classes.notna()])
    if spec.get("limit"):
        table = table.head(int(spec["limit"]))
    root = Path(root)
    relpaths = _relpaths(fmt, root, spec, table, roles)
    bad_lines = [why.split(":", 1)[0].replace(" ", "") for why in malformed[MALFORMED]] if len(malformed) else []
    names = [PurePosixPath(p.replace("\\", "/")).name for p in relpaths] + [f"metadata-{n}" for n in bad_lines]
    ids = unique_ids(name, names)

    def column(role: str) -> list[str]:
        col = roles[role]
        if col is None or col not in table.columns:
            return [""] * len(table)
        return list(table[col].str.strip())

    rows = []
    real_dirs: dict[str, str] = {}
    listings: dict[str, dict[str, list[str]]] = {}
    ages = [normalise_age(a) for a in column("age")]  # normalised: a bad cell is unknown, never an error
    sexes = [normalise_sex(s) for s in column("sex")]
    for image_id, rel, label, finding, patient, view, age, sex in zip(
        ids, relpaths, table["_label"], column("finding"), column("patient"), column("view"), ages, sexes
    ):
        problem = unsafe_reason(rel) or ""
        raw_path = "" if problem else str(root / rel)
        note = ""
        if not problem and check_files:
            raw_path, note = match_file(raw_path, listings)
            problem = file_problem(raw_path)
        resolved = realpath_in(raw_path, real_dirs) if raw_path else ""
        rows.append([image_id, name, raw_path, resolved, label, finding, patient or image_id, view, age, sex, problem,
                     note])  # fmt: skip
    for image_id, why in zip(ids[len(relpaths) :], malformed.get(MALFORMED, [])):
        rows.append([image_id, name, "", "", "", "", image_id, "", "", "", f"malformed metadata row: {why}", ""])
    return pd.DataFrame(rows, columns=COLUMNS, dtype=str)


@dataclass
class SourceInventory:
    """One source read and selected: its image rows, its skipped files and how its metadata was read."""

    images: pd.DataFrame  # COLUMNS
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    encoding: str
    delimiter: str = ","

    @property
    def read_as(self) -> str:
        """For the selection log: ``cp1252``, or ``cp1252, semicolon-separated``; "" where nothing was read."""
        if not self.encoding or self.delimiter == ",":
            return self.encoding
        return f"{self.encoding}, {DELIMITER_NAMES[self.delimiter]}-separated"

    @classmethod
    def of_images(cls, images: pd.DataFrame) -> SourceInventory:
        """Images planned before their files exist (the demo): nothing read, nothing skipped."""
        return cls(images, pd.DataFrame(columns=SKIPPED_COLUMNS, dtype=str), "")


def inventory_source(
    name: str, spec: Mapping[str, Any], labels: Mapping[str, str], check_files: bool = True
) -> SourceInventory:
    """Read and select one configured source, listing what it skips: for a folders source the files
    outside the rule (system files, unmapped class folders, ...), and the listed files its filters
    or limit leave out, so that every file below it is an image row or a skipped row.

    A source that selects nothing is an error (a typo in a filter must not silently shrink the data set).
    """
    root = Path(spec["path"])
    label_map = spec.get("labels") or labels
    read = read_source(spec["format"], root, spec, source=name, labels=label_map)
    images = select_images(name, spec, read.table, root, labels, check_files)
    skipped = list(read.skipped)
    if spec["format"] == "folders" and len(read.table):
        chosen = set(images["raw_path"])
        mask = _filter_mask(read.table, spec.get("filters") or {}, "finding", name)
        for rel, passes in zip(read.table["filename"], mask):
            if str(root / rel) not in chosen:
                why = (
                    f"beyond the source's limit of {spec.get('limit')}"
                    if passes
                    else "excluded by the source's filters"
                )
                skipped.append((rel, why))
    table = pd.DataFrame([(name, str(root / rel), why) for rel, why in sorted(skipped)], columns=SKIPPED_COLUMNS,
                         dtype=str)  # fmt: skip
    if images.empty:
        raise SourceError(
            f"source {name!r} ({root}): no image matches filters {dict(spec.get('filters') or {})} "
            f"and labels {dict(label_map)} among {len(read.table)} metadata rows"
            + (f"; {len(table)} files skipped: {dict(table['reason'].value_counts().head(5))}" if len(table) else "")
        )
    return SourceInventory(images, table, read.encoding, read.delimiter)
