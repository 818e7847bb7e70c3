"""Read the public chest X-ray collections into one uniform image table.

Each collection keeps its own on-disk format (see README / docs): ieee8023
``metadata.csv``, the Kaggle RSNA class table, Kaggle folder trees, or any CSV
with a column mapping. ``select_images`` turns any of them into rows with the
columns of :data:`COLUMNS`; rows are never dropped silently: a bad path or a
missing file is kept and named in ``problem``.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Mapping

import pandas as pd

from .covariates import normalise_age, normalise_sex

COLUMNS = ["image_id", "source", "raw_path", "resolved_path", "label", "finding", "patient_id", "view", "age", "sex",
           "problem"]
# What a folder listing takes as an image (by extension, any case; the decoder goes by content).
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".dcm", ".tif", ".tiff", ".bmp")
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
        table = table.drop_duplicates(subset="patientid", keep="first")
    return table.reset_index(drop=True)


def _read_csv(path: Path, source: str) -> pd.DataFrame:
    if not path.is_file():
        raise SourceError(f"source {source!r}: metadata file {path} does not exist")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise SourceError(f"source {source!r}: cannot parse {path}: {err}") from err


def _list_folders(root: Path) -> pd.DataFrame:
    """Kaggle chest-xray-pneumonia tree: `[train|val|test/]<LABEL>/*.jpeg`, sorted for determinism.

    Symlinked files and folders are followed (cluster data stores, DataLad and git-annex
    trees are symlinks); a broken link is listed too, so that it is quarantined, not lost.
    """
    subsets = [s for s in FOLDER_SUBSETS if (root / s).is_dir()]
    bases = [(s, root / s) for s in subsets] if subsets else [("", root)]
    rows = []
    for subset, base in bases:
        for label_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
            for image in sorted(label_dir.iterdir()):
                if image.suffix.lower() not in IMAGE_EXTENSIONS or image.is_dir():
                    continue
                person = _PERSON.match(image.name)
                rows.append(
                    {
                        "subset": subset,
                        "finding": label_dir.name,
                        "filename": image.relative_to(root).as_posix(),
                        "patientid": person.group(1) if person else "",
                    }
                )
    return pd.DataFrame(rows, columns=["subset", "finding", "filename", "patientid"], dtype=str)


def metadata_file(fmt: str, spec: Mapping[str, Any]) -> str | None:
    """The file, relative to the source root, whose content defines the selection.

    The workflow makes it an input of the selection step so that a changed
    table re-runs it; `folders` has none (its listing is the table).
    """
    return {"ieee8023": "metadata.csv", "rsna": RSNA_CSV, "csv": spec.get("csv")}.get(fmt)


def read_metadata(fmt: str, root: Path, spec: Mapping[str, Any], source: str = "?") -> pd.DataFrame:
    """The collection's raw table, all cells str, column names normalised (see tidy_metadata).

    Filters name these columns: ieee8023 and csv their own (`finding`, `modality`, `view`...),
    rsna `patientid`/`class`, folders `subset` (train/val/test or ""), `finding` (the label
    folder), `filename`, `patientid`.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"source {source!r}: dataset folder {root} does not exist")
    if fmt in ("ieee8023", "rsna"):
        table = _read_csv(root / metadata_file(fmt, spec), source)
    elif fmt == "folders":
        table = _list_folders(root)
    elif fmt == "csv":
        if not spec.get("csv"):
            raise SourceError(f"source {source!r}: format csv needs `csv:` (metadata file relative to {root})")
        table = _read_csv(root / spec["csv"], source)
    else:
        raise SourceError(f"source {source!r}: unknown format {fmt!r}")
    return tidy_metadata(fmt, table)


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
    if fmt == "rsna":
        return _rsna_relpaths(root, spec, table[roles["filename"]])
    names = table[roles["filename"]].str.strip()
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
    ids = unique_ids(name, (PurePosixPath(p.replace("\\", "/")).name for p in relpaths))

    def column(role: str) -> list[str]:
        col = roles[role]
        if col is None or col not in table.columns:
            return [""] * len(table)
        return list(table[col].str.strip())

    rows = []
    real_dirs: dict[str, str] = {}
    ages = [normalise_age(a) for a in column("age")]  # normalised: a bad cell is unknown, never an error
    sexes = [normalise_sex(s) for s in column("sex")]
    for image_id, rel, label, finding, patient, view, age, sex in zip(
        ids, relpaths, table["_label"], column("finding"), column("patient"), column("view"), ages, sexes
    ):
        problem = unsafe_reason(rel) or ""
        raw_path = "" if problem else str(root / rel)
        if not problem and check_files:
            problem = file_problem(raw_path)
        resolved = realpath_in(raw_path, real_dirs) if raw_path else ""
        rows.append([image_id, name, raw_path, resolved, label, finding, patient or image_id, view, age, sex, problem])
    return pd.DataFrame(rows, columns=COLUMNS, dtype=str)


def load_source(
    name: str, spec: Mapping[str, Any], labels: Mapping[str, str], check_files: bool = True
) -> pd.DataFrame:
    """Read and select one configured source; a source that selects nothing is an error
    (a typo in a filter must not silently shrink the data set)."""
    root = Path(spec["path"])
    table = read_metadata(spec["format"], root, spec, source=name)
    images = select_images(name, spec, table, root, labels, check_files)
    if images.empty:
        raise SourceError(
            f"source {name!r} ({root}): no image matches filters {dict(spec.get('filters') or {})} "
            f"and labels {dict(spec.get('labels') or labels)} among {len(table)} metadata rows"
        )
    return images


def load_sources(
    sources: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str], check_files: bool = True
) -> pd.DataFrame:
    """All sources in config order; image ids must stay unique across sources."""
    frames = [load_source(name, spec, labels, check_files) for name, spec in sources.items()]
    images = pd.concat(frames, ignore_index=True)
    clash = images["image_id"].str.lower().duplicated(keep=False)
    if clash.any():
        raise SourceError(f"image ids repeat across sources: {sorted(set(images.loc[clash, 'image_id']))[:10]}")
    return images


def selection_summary(images: pd.DataFrame) -> pd.DataFrame:
    """Per source and label: images, patients and images with a problem (for logs and reports)."""
    grouped = images.assign(has_problem=images["problem"] != "").groupby(["source", "label"], sort=False)
    return grouped.agg(
        images=("image_id", "size"), patients=("patient_id", "nunique"), problems=("has_problem", "sum")
    ).reset_index()
