"""Patient covariates (age, sex, view) from messy metadata, as values a subgroup table can group on.

Public collections write age as "65", "50+", "65 years", "045Y" (DICOM age strings),
"6M" or nothing, and sex as "M", "male", "F", "female", "woman" or nothing. A value
that cannot be read is *unknown*, never an error: a bad cell must not stop a run,
and the count of unknowns is reported beside every table that uses the covariate.
The normalised forms are: age in years as text ("65", "0.5"; "" unknown), sex
"M" / "F" ("" unknown), view "PA" / "AP" / "lateral" / "other" ("" unknown).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

UNKNOWN = "unknown"
COVARIATES = ("source", "sex", "age_band", "view")
# The oldest documented human lived 122 years; anything beyond is a typo, not an age.
MAX_AGE = 125.0
_AGE = re.compile(r"^\s*(\d{1,3}(?:[.,]\d+)?)\s*\+?\s*([a-z]*)\.?\s*(?:old)?\s*$")
# DICOM AS units and their spelled-out forms, in years.
_AGE_UNITS = {"": 1.0, "y": 1.0, "yr": 1.0, "yrs": 1.0, "year": 1.0, "years": 1.0, "m": 1 / 12, "mo": 1 / 12,
              "month": 1 / 12, "months": 1 / 12, "w": 7 / 365.25, "week": 7 / 365.25, "weeks": 7 / 365.25,
              "d": 1 / 365.25, "day": 1 / 365.25, "days": 1 / 365.25}  # fmt: skip
_SEX = {"m": "M", "male": "M", "man": "M", "boy": "M", "masculine": "M", "f": "F", "female": "F", "woman": "F",
        "girl": "F", "feminine": "F", "w": "F"}  # fmt: skip
_VIEWS = {"pa": "PA", "posteroanterior": "PA", "ap": "AP", "anteroposterior": "AP", "ap supine": "AP",
          "ap semi erect": "AP", "ap erect": "AP", "supine": "AP", "l": "lateral", "ll": "lateral",
          "lateral": "lateral", "lat": "lateral", "rl": "lateral"}  # fmt: skip


def normalise_age(value: Any) -> str:
    """Age in years as text ("65", "0.5"), or "" when it cannot be read. Never raises.

    "50+" reads as 50 (the lower bound the collection gave), "045Y" as 45, "6M" as
    0.5; ranges, words and ages above :data:`MAX_AGE` are unknown.
    """
    try:
        if isinstance(value, bool) or value is None:
            return ""
        if isinstance(value, (int, float)):
            years = float(value)
        else:
            match = _AGE.match(str(value).strip().lower())
            if not match or match.group(2) not in _AGE_UNITS:
                return ""
            years = float(match.group(1).replace(",", ".")) * _AGE_UNITS[match.group(2)]
        if not math.isfinite(years) or not 0 <= years <= MAX_AGE:
            return ""
        return f"{years:.2f}".rstrip("0").rstrip(".")
    except (ValueError, TypeError, OverflowError):
        return ""


def normalise_sex(value: Any) -> str:
    """ "M", "F", or "" for anything else (other spellings, "O", blanks). Never raises."""
    try:
        return _SEX.get(str(value).strip().lower().rstrip("."), "")
    except (ValueError, TypeError):
        return ""


def normalise_view(value: Any) -> str:
    """ "PA", "AP" (supine and erect AP films too), "lateral", "other" (CT planes, oblique) or "" when blank."""
    try:
        text = re.sub(r"[\s_-]+", " ", str(value).strip().lower())
    except (ValueError, TypeError):
        return ""
    if text in ("", "nan", "none", "unknown"):
        return ""
    return _VIEWS.get(text, "other")


def age_band(age: Any, edges: Sequence[float]) -> str:
    """The band of a normalised age: edges [18, 65] give "<18", "18-65", ">=65"; "unknown" without an age."""
    years = normalise_age(age)
    if years == "":
        return UNKNOWN
    value, bounds = float(years), sorted(float(e) for e in edges)
    if not bounds:
        return "all ages"
    if value < bounds[0]:
        return f"<{bounds[0]:g}"
    for low, high in zip(bounds, bounds[1:]):
        if value < high:
            return f"{low:g}-{high:g}"
    return f">={bounds[-1]:g}"


def band_order(edges: Sequence[float]) -> list[str]:
    """Age bands in ascending order, then unknown (the order tables and plots list them in)."""
    bounds = sorted(float(e) for e in edges)
    if not bounds:
        return ["all ages", UNKNOWN]
    return [f"<{bounds[0]:g}", *(f"{a:g}-{b:g}" for a, b in zip(bounds, bounds[1:])), f">={bounds[-1]:g}", UNKNOWN]


def dicom_covariates(path: str | Path) -> dict[str, str]:
    """PatientAge, PatientSex and ViewPosition of a DICOM file's header, normalised; {} when unreadable.

    Only the header is read (no pixel data), so a whole collection is quick to scan.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True,
                             specific_tags=["PatientAge", "PatientSex", "ViewPosition"])  # fmt: skip
        return {"age": normalise_age(ds.get("PatientAge", "")), "sex": normalise_sex(ds.get("PatientSex", "")),
                "view": str(ds.get("ViewPosition", "") or "")}  # fmt: skip
    except Exception:  # noqa: BLE001 (pydicom raises many types for damaged files: unknown, not a failure)
        return {}


def covariate_table(manifest: pd.DataFrame, edges: Sequence[float]) -> pd.DataFrame:
    """One row per ok image: image_id, patient_id, source, label, age, sex, view (normalised), age_band.

    Where the metadata gave no age/sex/view and the raw file is DICOM, the header fills them in
    (RSNA's PatientAge, PatientSex, ViewPosition).
    """
    ok = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    cols = {c: ok[c].astype(str) if c in ok.columns else pd.Series("", index=ok.index) for c in ("age", "sex", "view")}
    age, sex, view = (list(cols[c]) for c in ("age", "sex", "view"))
    raw = ok["resolved_path"].where(ok["resolved_path"].astype(str) != "", ok["raw_path"]).astype(str)
    for i, path in enumerate(raw):
        if (age[i] == "" or sex[i] == "" or view[i] == "") and path.lower().endswith(".dcm"):
            header = dicom_covariates(path)
            age[i] = age[i] or header.get("age", "")
            sex[i] = sex[i] or header.get("sex", "")
            view[i] = view[i] or header.get("view", "")
    table = pd.DataFrame({
        "image_id": ok["image_id"].astype(str), "patient_id": ok["patient_id"].astype(str),
        "source": ok["source"].astype(str), "label": ok["label"].astype(str),
        "age": [normalise_age(a) for a in age], "sex": [normalise_sex(s) for s in sex],
        "view": [normalise_view(v) for v in view],
    })  # fmt: skip
    table["age_band"] = [age_band(a, edges) for a in table["age"]]
    return table


def known(table: pd.DataFrame, covariate: str) -> pd.Series:
    """Rows whose ``covariate`` is known (not "" and not "unknown")."""
    values = table[covariate].astype(str)
    return (values != "") & (values != UNKNOWN)


def group_values(table: pd.DataFrame, covariate: str) -> pd.Series:
    """The covariate's values with every unknown spelled "unknown" (the level a subgroup table shows)."""
    return table[covariate].astype(str).where(known(table, covariate), UNKNOWN)


def counts(table: pd.DataFrame, covariates: Sequence[str] = COVARIATES) -> dict[str, dict[str, int]]:
    """Images per value of each covariate, unknown counted as its own value."""
    return {c: {str(k): int(v) for k, v in group_values(table, c).value_counts().sort_index().items()}
            for c in covariates if c in table.columns}  # fmt: skip


def read_covariates(path: str | Path) -> pd.DataFrame:
    """covariates.csv back, every cell text ("" stays "", ids like 007 stay strings)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def attach(predictions: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Predictions with their images' covariates; an image missing from the table raises (no silent drop)."""
    cols = [c for c in ("source", "age", "sex", "view", "age_band") if c in table.columns]
    merged = predictions.merge(table[["image_id", *cols]], on="image_id", how="left", validate="many_to_one",
                               indicator=True)  # fmt: skip
    missing = merged.loc[merged["_merge"] != "both", "image_id"].tolist()
    if missing:
        raise ValueError(f"predicted images absent from the covariate table: {missing[:10]}")
    return merged.drop(columns="_merge")


def summary(table: pd.DataFrame) -> Mapping[str, Any]:
    """Images, and images with an unknown value, per covariate (the line a report prints)."""
    return {c: {"known": int(known(table, c).sum()), "unknown": int((~known(table, c)).sum())}
            for c in ("age", "sex", "view") if c in table.columns}  # fmt: skip
