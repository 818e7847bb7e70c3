"""Characteristics of each partition (TRIPOD+AI 20b, CLAIM's per-partition table).

Per fold, split (and external test set) and class: images, patients, sources, and,
where the manifest carries them, age (median, IQR, unknown count), sex and view
counts. A manifest without an ``age``, ``sex`` or ``view`` column gives "not recorded"
in that column rather than failing: older manifests and formats lack them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")
COVARIATES: tuple[str, ...] = ("age", "sex", "view")
NOT_RECORDED = "not recorded"
COLUMNS: tuple[str, ...] = ("fold", "partition", "class", "images", "patients", "sources", "age_median", "age_q1",
                            "age_q3", "age_unknown", "sex", "view")  # fmt: skip


def _counts(values: pd.Series) -> str:
    text = values.fillna("").astype(str).str.strip().replace("", "unknown")
    counts = text.value_counts()
    return "; ".join(f"{k}: {int(counts[k])}" for k in sorted(counts.index))


def describe(part: pd.DataFrame, has: Mapping[str, bool]) -> dict[str, object]:
    """One row's statistics of a set of images (columns image_id, patient_id, source and the covariates)."""
    patients = part["source"].astype(str) + ":" + part["patient_id"].astype(str)
    row: dict[str, object] = {"images": int(len(part)), "patients": int(patients.nunique()),
                              "sources": "; ".join(sorted(set(part["source"].astype(str))))}  # fmt: skip
    if has["age"]:
        age = pd.to_numeric(part["age"], errors="coerce")
        known = age.dropna().to_numpy()
        q1, med, q3 = np.percentile(known, [25, 50, 75]) if len(known) else (np.nan, np.nan, np.nan)
        row.update(age_median=med, age_q1=q1, age_q3=q3, age_unknown=int(age.isna().sum()))
    else:
        row.update(age_median=NOT_RECORDED, age_q1=NOT_RECORDED, age_q3=NOT_RECORDED, age_unknown=NOT_RECORDED)
    for col in ("sex", "view"):
        row[col] = _counts(part[col]) if has[col] else NOT_RECORDED
    return row


def partition_table(manifest: pd.DataFrame, assignments: pd.DataFrame, classes: Sequence[str],
                    external: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per (fold, partition, class) plus an "all" class row per partition."""
    has = {c: c in manifest.columns for c in COVARIATES}
    extra = manifest[["image_id", *[c for c in COVARIATES if has[c]]]].astype({"image_id": str})
    table = assignments.astype({"image_id": str}).merge(extra, on="image_id", how="left", validate="one_to_one")
    rows = []
    parts: list[tuple[str, str, pd.DataFrame]] = []
    for col in [c for c in table.columns if c.startswith("fold") and c[4:].isdigit()]:
        parts += [(col, split, table[table[col] == split]) for split in SPLITS]
    for experiment, ext in (external or {}).items():
        ext = ext.astype({"image_id": str}).merge(extra, on="image_id", how="left")
        parts.append(("all", f"external test of {experiment}", ext))
    for fold, partition, part in parts:
        for cls in [*classes, "all"]:
            subset = part if cls == "all" else part[part["label"] == cls]
            rows.append({"fold": fold, "partition": partition, "class": cls, **describe(subset, has)})
    return pd.DataFrame(rows, columns=list(COLUMNS))
