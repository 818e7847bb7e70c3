"""Patient-grouped, seeded splits stratified by label, that move as little as possible when data is added.

Design (the README repeats it):

* **Groups.** Images are grouped by patient, key ``source + ":" + patient_id``, so no
  patient is ever in two splits. An image without a patient id is its own group
  (key ``source + ":image:" + image_id``) and ``split_summary`` warns about it: the
  source cannot tell us which images share a patient. Optional ``extra_groups``
  (image_id -> cluster key, e.g. near-duplicate clusters from an audit) merge every
  group they connect (connected components); a merged group is keyed by its
  smallest member key.
* **One number per group.** ``u = int.from_bytes(blake2b(f"{seed}:{group}",
  digest_size=8)) >> 11) / 2**53`` is uniform in [0, 1), the same on every machine
  and Python run (never Python's salted ``hash()``).
* **Hold-out (folds = 1).** ``u < test_size`` -> test; ``u < test_size + val_size``
  -> val; else train.
* **k-fold (folds = k > 1).** The unit interval is a ring cut into k equal test
  windows: a group is in the test set of fold ``j = floor(u * k)`` and of no other
  fold. In fold j the val set is the next ``val_size`` of the ring after the test
  window: with ``s = (u * k - j) mod k`` (in fold widths), ``s < 1`` -> test,
  ``s < 1 + val_size * k`` -> val, else train. So val is ``val_size`` of ALL
  patients (as in hold-out), each fold's val set is a different slice, and
  ``test_size`` is unused (the test share is 1/k by definition).
* **Stratified by label at group level.** A group's stratum is its most frequent
  label (ties -> first in ``classes`` order). Within each stratum the groups are
  ranked by ``u`` and the rank replaces ``u``: ``v = (rank + 0.5) / n_stratum``, and
  ``v`` enters the rules above. So every stratum is cut into k contiguous runs of
  equal size (counts per fold differ by at most one; hold-out: round(n * test_size)
  in test), and every test fold holds its share of each label.
* **Stable under additions, as far as stratification allows.** Exact per-label
  quotas and "a group's split is a function of its own u" cannot both hold (a
  quota depends on the other groups). Ranking by ``u`` keeps the order of existing
  groups: adding a group to a stratum shifts the cut points by at most one place,
  so at most about one group per cut of that stratum moves (a new fold boundary
  falls on it); other strata do not move at all (``tests/test_split.py`` checks
  it). A group whose majority label changes changes stratum and may move.
* Each fold's label counts (``split_summary``) are reported beside its metrics.

Only ``status == "ok"`` rows are split; quarantined images are listed nowhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .copy_cache import CopyCache
from .copy_groups import find_duplicates
from .manifest import read_manifest, write_csv_atomic

LOG = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FILE_COLUMNS: tuple[str, ...] = ("image_id", "label", "patient_id", "path", "source", "group")
_MANIFEST_NEEDS: tuple[str, ...] = (
    "image_id",
    "source",
    "label",
    "patient_id",
    "output_path",
    "status",
)


def fold_columns(folds: int) -> list[str]:
    return [f"fold{k}" for k in range(folds)]


def fold_columns_of(assignments: pd.DataFrame) -> list[str]:
    """The fold0..fold{k-1} columns of an assignments table, in fold order; gaps or none raise."""
    cols = sorted(
        (c for c in assignments.columns if c.startswith("fold") and c[4:].isdigit()), key=lambda c: int(c[4:])
    )
    if not cols or cols != [f"fold{k}" for k in range(len(cols))]:
        raise ValueError(f"assignments need columns fold0..fold{{k-1}}, got {cols}")
    return cols


def group_uniform(seed: int, group: str) -> float:
    """Stable uniform in [0, 1): 53 bits of blake2b, exactly representable as float."""
    digest = hashlib.blake2b(f"{seed}:{group}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def split_of(u: float, fold: int, *, folds: int, test_size: float, val_size: float) -> str:
    """The split of a group with uniform ``u`` in fold ``fold`` (see module docstring)."""
    if folds == 1:
        if u < test_size:
            return "test"
        return "val" if u < test_size + val_size else "train"
    cell = min(int(u * folds), folds - 1)  # clamp guards float rounding at u -> 1
    if cell == fold:
        return "test"
    s = (u * folds - fold) % folds
    return "val" if s < 1 + val_size * folds else "train"


def _check_settings(seed: int, test_size: float, val_size: float, folds: int) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"split seed must be an integer, got {seed!r}")
    if not isinstance(folds, (int, np.integer)) or folds < 1:
        raise ValueError(f"split folds must be an integer >= 1, got {folds!r}")
    if not 0 < test_size < 1:
        raise ValueError(f"split test_size must be in (0, 1), got {test_size}")
    if not 0 <= val_size < 1:
        raise ValueError(f"split val_size must be in [0, 1), got {val_size}")
    test_share = test_size if folds == 1 else 1 / folds
    if test_share + val_size >= 1:
        what = f"test_size {test_size}" if folds == 1 else f"1/folds = {test_share:.3g}"
        raise ValueError(f"{what} + val_size {val_size} leaves no training patients")


def patient_keys(df: pd.DataFrame) -> pd.Series:
    """source:patient_id; images without a patient id become their own patient."""
    pid = df["patient_id"].fillna("").astype(str).str.strip()
    own = df["source"].astype(str) + ":image:" + df["image_id"].astype(str)
    return (df["source"].astype(str) + ":" + pid).where(pid != "", own)


def merge_groups(
    image_ids: Sequence[str], patient_keys: Sequence[str], extra_groups: Mapping[str, str] | None
) -> list[str]:
    """Group key per image after merging patients that share an extra group key.

    Connected components over patients and extra keys; a component is named by its
    smallest patient key, so unmerged patients keep their own key (and their u).
    """
    if not extra_groups:
        return list(patient_keys)
    known = set(image_ids)
    unknown = sorted(set(map(str, extra_groups)) - known)
    if unknown:
        shown = ", ".join(unknown[:20])
        raise ValueError(f"extra_groups name image ids that are not ok images of the manifest: {shown}")
    patients = sorted(set(patient_keys))
    extras = sorted({str(v) for v in extra_groups.values()})
    node = {key: i for i, key in enumerate(patients)}
    node.update({("extra", key): len(patients) + i for i, key in enumerate(extras)})
    edges = [
        (node[p], node[("extra", str(extra_groups[i]))]) for i, p in zip(image_ids, patient_keys) if i in extra_groups
    ]
    n = len(node)
    rows, cols = (np.array(x, dtype=np.int64) for x in zip(*edges)) if edges else ([], [])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    name: dict[int, str] = {}
    for key in patients:  # sorted: the first member seen is the smallest key
        name.setdefault(int(component[node[key]]), key)
    return [name[int(component[node[p]])] for p in patient_keys]


def group_strata(assignments: pd.DataFrame, classes: Sequence[str]) -> pd.Series:
    """Stratum label per group: most frequent image label, ties -> first in class order."""
    order = {c: i for i, c in enumerate(classes)}
    counts = assignments.groupby(["group", "label"]).size().reset_index(name="n")
    counts["rank"] = counts["label"].map(order)
    counts = counts.sort_values(["group", "n", "rank"], ascending=[True, False, True])
    return counts.drop_duplicates("group").set_index("group")["label"]


def stratified_positions(assignments: pd.DataFrame, seed: int, classes: Sequence[str]) -> dict[str, float]:
    """Each group's position v in (0, 1): its rank by ``group_uniform`` within its label stratum, (rank + 0.5) / n.

    Equal-sized runs of v then hold equal shares of every label (module docstring).
    """
    strata = group_strata(assignments, classes)
    u = pd.Series({g: group_uniform(seed, g) for g in strata.index})
    frame = pd.DataFrame({"u": u, "stratum": strata.reindex(u.index)}).sort_values(["stratum", "u"], kind="stable")
    rank = frame.groupby("stratum").cumcount()
    size = frame.groupby("stratum")["u"].transform("size")
    return ((rank + 0.5) / size).to_dict()


def assign_splits(
    manifest: pd.DataFrame,
    *,
    seed: int,
    test_size: float,
    val_size: float,
    folds: int,
    classes: Sequence[str],
    extra_groups: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Split the manifest's ok images: one row per image, ``fold0..`` = train/val/test.

    Raises ValueError on bad settings, missing columns, duplicate image ids, labels
    outside ``classes``, an ok image without output path, or no ok image at all.
    """
    _check_settings(seed, test_size, val_size, folds)
    missing = [c for c in _MANIFEST_NEEDS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns: {', '.join(missing)}")
    ok = manifest[manifest["status"] == "ok"]
    if ok.empty:
        raise ValueError("no image with status 'ok' to split")
    ids = ok["image_id"].astype(str)
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise ValueError(f"duplicate image ids in the manifest: {', '.join(dup[:20])}")
    bad = ok.loc[~ok["label"].isin(list(classes)), "image_id"].astype(str).tolist()
    if bad:
        raise ValueError(f"images with a label outside classes {list(classes)}: {', '.join(bad[:20])}")
    no_path = ok.loc[ok["output_path"].fillna("").astype(str) == "", "image_id"].astype(str).tolist()
    if no_path:
        raise ValueError(f"ok images without output_path: {', '.join(no_path[:20])}")

    out = pd.DataFrame(
        {
            "image_id": ids.to_numpy(),
            "label": ok["label"].astype(str).to_numpy(),
            "patient_id": ok["patient_id"].fillna("").astype(str).to_numpy(),
            "source": ok["source"].astype(str).to_numpy(),
        }
    )
    out["group"] = merge_groups(out["image_id"].tolist(), patient_keys(out).tolist(), extra_groups)
    out["path"] = ok["output_path"].astype(str).to_numpy()
    u = stratified_positions(out, int(seed), classes)
    for fold, col in enumerate(fold_columns(int(folds))):
        split = {g: split_of(x, fold, folds=int(folds), test_size=test_size, val_size=val_size) for g, x in u.items()}
        out[col] = out["group"].map(split)
    return out


def write_split_files(assignments: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``out_dir/assignments.csv`` and ``out_dir/fold{k}/{train,val,test}.csv`` (atomic).

    Every file is written even when a split is empty (header only), so the set of
    outputs is fixed by the config, as Snakemake needs.
    """
    check_no_leakage(assignments)
    out_dir = Path(out_dir)
    written = [write_csv_atomic(assignments, out_dir / "assignments.csv")]
    for col in fold_columns_of(assignments):
        for split in SPLITS:
            rows = assignments.loc[assignments[col] == split, list(SPLIT_FILE_COLUMNS)]
            written.append(write_csv_atomic(rows, out_dir / col / f"{split}.csv"))
    return written


def fold_tables(assignments: pd.DataFrame, fold: int) -> dict[str, pd.DataFrame]:
    """The train/val/test split files of one fold (an experiment's own split writes them one fold per job)."""
    col = f"fold{int(fold)}"
    if col not in assignments.columns:
        raise ValueError(f"assignments have no column {col}")
    return {split: assignments.loc[assignments[col] == split, list(SPLIT_FILE_COLUMNS)] for split in SPLITS}


def read_split_file(path: Path) -> pd.DataFrame:
    """Read a split CSV with ids as strings ("007" stays "007")."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _shared(assignments: pd.DataFrame, col: str, key: pd.Series) -> int:
    return int((assignments.assign(_key=key).groupby("_key")[col].nunique() > 1).sum())


def check_no_leakage(assignments: pd.DataFrame) -> None:
    """Raise ValueError if any group or patient is in two splits of one fold."""
    patient = patient_keys(assignments)
    for col in fold_columns_of(assignments):
        for name, key in (("group", assignments["group"]), ("patient", patient)):
            spread = assignments.assign(_key=key).groupby("_key")[col].nunique()
            leaked = sorted(spread[spread > 1].index.astype(str))
            if leaked:
                raise ValueError(f"{col}: {name}s in more than one split: {', '.join(leaked[:20])}")


def split_summary(assignments: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """JSON-ready per-fold, per-split counts, leakage counts (must be 0) and warnings."""
    strata = group_strata(assignments, classes)
    patient = patient_keys(assignments)
    no_pid = int((assignments["patient_id"].fillna("").astype(str).str.strip() == "").sum())
    warnings: list[str] = []
    if no_pid:
        warnings.append(f"{no_pid} images have no patient id: each is treated as its own patient")
    folds = []
    for col in fold_columns_of(assignments):
        splits = {}
        for split in SPLITS:
            part = assignments[assignments[col] == split]
            groups = part["group"].unique()
            splits[split] = {
                "images": int(len(part)),
                "patients": int(patient[part.index].nunique()),
                "groups": int(len(groups)),
                "images_per_label": {c: int((part["label"] == c).sum()) for c in classes},
                "groups_per_label": {c: int((strata[groups] == c).sum()) for c in classes},
            }
            if part.empty:
                warnings.append(f"{col}: {split} is empty")
                continue
            lacking = [c for c in classes if splits[split]["images_per_label"][c] == 0]
            if lacking:
                warnings.append(f"{col}: {split} has no image of {', '.join(lacking)}")
        folds.append(
            {
                "fold": col,
                "splits": splits,
                "shared_patients": _shared(assignments, col, patient),
                "shared_groups": _shared(assignments, col, assignments["group"]),
            }
        )
    return {
        "images": int(len(assignments)),
        "patients": int(patient.nunique()),
        "groups": int(assignments["group"].nunique()),
        "folds": folds,
        "warnings": warnings,
    }


def make_splits_main(manifest_csv: str, outputs: Mapping[str, str], out_dir: str, split: Mapping[str, Any],
                     classes: Sequence[str], duplicates: Mapping[str, Any], workers: int = 1,
                     cache_dir: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Rule make_splits: near-duplicate search, then the shared split (``split``: the config's split section).

    The duplicates are found here because they decide the split: a copy of one
    radiograph under two ids must land where its twin does, as two images of one
    patient do (``extra_groups``); ``duplicates`` is the config's audit.duplicates. Writes ``outputs`` duplicates, duplicate_groups
    and summary, and the split files under ``out_dir``. ``workers`` processes run the copy search's
    decoding and alignment (the rule's threads); ``cache_dir`` keeps its views and alignments for the
    next run (cxrflow.copy_cache: a dataset update decodes and aligns only what changed).
    """
    table = read_manifest(manifest_csv)
    cache = None if cache_dir is None else CopyCache(cache_dir)
    pairs, groups = find_duplicates(table, duplicates, workers, cache)
    if cache is not None:
        cache.save()
        LOG.info("copy search: %s (cache %s)", cache.summary(), cache_dir)
    pairs.to_csv(outputs["duplicates"], index=False)
    Path(outputs["duplicate_groups"]).write_text(json.dumps(groups, indent=2, sort_keys=True) + "\n")
    LOG.info(
        "%d duplicate pairs (%s) in %d clusters",
        len(pairs),
        pairs["method"].value_counts().to_dict(),
        len(set(groups.values())),
    )
    assignments = assign_splits(table, seed=split["seed"], test_size=split["test_size"], val_size=split["val_size"],
                                folds=split["folds"], classes=classes, extra_groups=groups)  # fmt: skip
    write_split_files(assignments, Path(out_dir))
    summary = split_summary(assignments, classes)
    Path(outputs["summary"]).write_text(json.dumps(summary, indent=2) + "\n")
    for warning in summary.get("warnings", []):
        LOG.warning(warning)
    return summary


def fold_split_main(assignments_csv: str, fold: int, outputs: Mapping[str, str]) -> dict[str, int]:
    """Rule experiment_fold_split: one fold's train/val/test files of an experiment's own split."""
    tables = fold_tables(read_split_file(Path(assignments_csv)), int(fold))
    for name, rows in tables.items():
        write_csv_atomic(rows, Path(outputs[name]))
    counts = {name: len(rows) for name, rows in tables.items()}
    LOG.info("fold %s: %s", fold, counts)
    return counts
