"""Metadata normaliser: messy ages and sexes become values or unknown, never an error; covariates
ride from a source's metadata into the selection; the confounder check finds a planted age confound."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from cxrflow.confounders import confounders, cramers_v_corrected
from cxrflow.covariates import (
    age_band,
    attach,
    band_order,
    counts,
    normalise_age,
    normalise_sex,
    normalise_view,
)
from cxrflow.sources import select_images

SETTINGS = {"folds": 3, "seed": 0, "flag_balanced_accuracy": 0.75, "flag_covariates": ["age_band", "sex", "view"]}


@pytest.mark.parametrize(
    ("raw", "years"),
    [("65", "65"), ("50+", "50"), ("65 years", "65"), ("045Y", "45"), ("6M", "0.5"), ("", ""), ("n/a", ""),
     ("unknown", ""), ("40-50", ""), ("300", ""), ("-3", ""), (" 7 yrs ", "7"), ("12.5", "12.5"), (71, "71"),
     (float("nan"), ""), (None, ""), ("65 years old", "65"), ("3W", "0.06")],
)  # fmt: skip
def test_ages_as_public_collections_write_them(raw: object, years: str) -> None:
    assert normalise_age(raw) == years


@pytest.mark.parametrize(
    ("raw", "sex"),
    [("M", "M"), ("m", "M"), ("male", "M"), ("Male ", "M"), ("F", "F"), ("female", "F"), ("Woman", "F"), ("", ""),
     ("O", ""), ("unknown", ""), (None, ""), (1, "")],
)  # fmt: skip
def test_sex_spellings(raw: object, sex: str) -> None:
    assert normalise_sex(raw) == sex


def test_views_and_age_bands() -> None:
    assert [normalise_view(v) for v in ("PA", "AP Supine", "L", "Axial", "", "ap_erect")] == [
        "PA", "AP", "lateral", "other", "", "AP"]  # fmt: skip
    edges = [18, 40, 65]
    assert [age_band(a, edges) for a in ("5", "18", "39.9", "64", "65", "")] == [
        "<18", "18-40", "18-40", "40-65", ">=65", "unknown"]  # fmt: skip
    assert band_order(edges) == ["<18", "18-40", "40-65", ">=65", "unknown"]


anything = st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                     st.booleans(), st.binary(max_size=10), st.lists(st.integers(), max_size=3))  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(anything)
def test_normalisers_never_raise(value: object) -> None:
    age = normalise_age(value)
    assert age == "" or 0 <= float(age) <= 125
    assert normalise_sex(value) in ("M", "F", "")
    assert normalise_view(value) in ("PA", "AP", "lateral", "other", "")
    assert age_band(value, [18, 65]) in ("<18", "18-65", ">=65", "unknown")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=8)), min_size=1, max_size=8))
def test_selection_carries_normalised_covariates_and_never_fails_on_them(cells: list[tuple[str, str]]) -> None:
    meta = pd.DataFrame({"Patientid": [str(i) for i in range(len(cells))], "finding": "COVID-19",
                         "filename": [f"{i}.png" for i in range(len(cells))], "age": [a for a, _ in cells],
                         "sex": [s for _, s in cells]})  # fmt: skip
    table = select_images("ieee", {"format": "ieee8023"}, meta, pd.io.common.Path("."), {"COVID-19": "COVID-19"},
                          check_files=False)  # fmt: skip
    assert list(table["age"]) == [normalise_age(a) for a, _ in cells]
    assert list(table["sex"]) == [normalise_sex(s) for _, s in cells]


def test_csv_source_maps_age_and_sex_columns() -> None:
    meta = pd.DataFrame({"File": ["a.png", "b.png", "c.png"], "Dx": ["COVID-19"] * 3, "Age": ["045Y", "", "50+"],
                         "Gender": ["female", "M", "?"]})  # fmt: skip
    spec = {"format": "csv", "csv": "m.csv",
            "columns": {"filename": "File", "label": "Dx", "age": "Age", "sex": "Gender"}}  # fmt: skip
    table = select_images("mine", spec, meta, pd.io.common.Path("."), {"COVID-19": "COVID-19"}, check_files=False)
    assert list(table["age"]) == ["45", "", "50"] and list(table["sex"]) == ["F", "M", ""]


def _covariate_table(normal_ages: list[float], n: int = 60, seed: int = 0) -> pd.DataFrame:
    """COVID-19 adults and normals (ages given), sexes and views mixed at random in both classes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "COVID-19" if i % 2 == 0 else "Normal"
        age = rng.uniform(30, 80) if label == "COVID-19" else normal_ages[i % len(normal_ages)]
        rows.append({"image_id": f"i{i}", "patient_id": f"p{i}", "source": ["a", "b"][int(rng.integers(2))],
                     "label": label, "age": f"{age:.0f}", "sex": ["M", "F"][int(rng.integers(2))],
                     "view": ["PA", "AP"][int(rng.integers(2))]})  # fmt: skip
    table = pd.DataFrame(rows)
    table["age_band"] = [age_band(a, [18, 40, 65]) for a in table["age"]]
    return table


def test_planted_age_confound_is_flagged_and_mixed_ages_are_not() -> None:
    rng = np.random.default_rng(1)
    children = _covariate_table(list(rng.uniform(1, 17, 30)))
    result = confounders(children, children["patient_id"], SETTINGS)
    assert result["flag"] and result["flagged"] == ["age_band"], result["sentence"]
    assert result["covariates"]["age_band"]["balanced_accuracy"] >= 0.95
    assert "Confounder flagged: age_band" in result["sentence"]
    adults = _covariate_table(list(rng.uniform(30, 80, 30)))
    clean = confounders(adults, adults["patient_id"], SETTINGS)
    assert not clean["flag"], clean["sentence"]
    assert clean["counts"]["sex"] == {k: int(v) for k, v in adults["sex"].value_counts().sort_index().items()}


def test_unknown_values_are_counted_not_used() -> None:
    table = _covariate_table([10.0])
    table.loc[table["label"] == "Normal", "age"] = ""  # the normals' collection records no age
    table["age_band"] = [age_band(a, [18, 40, 65]) for a in table["age"]]
    result = confounders(table, table["patient_id"], SETTINGS)
    age = result["covariates"]["age_band"]
    assert age["n_unknown"] == 30 and age["balanced_accuracy"] is None and "skipped" in age
    assert not result["flag"]


def test_cramers_v_matches_its_formula_on_scipy_chi2() -> None:
    table = np.array([[20, 5], [4, 21], [3, 9]])
    chi2 = chi2_contingency(table, correction=False)[0]
    n, (r, k) = table.sum(), table.shape
    phi2 = max(0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    expected = np.sqrt(phi2 / min(k - (k - 1) ** 2 / (n - 1) - 1, r - (r - 1) ** 2 / (n - 1) - 1))
    assert cramers_v_corrected(table) == pytest.approx(expected)
    assert cramers_v_corrected(np.array([[10, 10], [10, 10]])) == 0.0


def test_attach_refuses_a_prediction_without_covariates() -> None:
    table = _covariate_table([10.0], n=4)
    preds = pd.DataFrame({"image_id": ["i0", "i1", "zz"], "patient_id": ["p0", "p1", "z"]})
    with pytest.raises(ValueError, match="zz"):
        attach(preds, table)
    assert counts(table, ["sex"])["sex"] == {k: int(v) for k, v in table["sex"].value_counts().sort_index().items()}


def test_dicom_headers_fill_what_the_metadata_lacks(tmp_path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from cxrflow.covariates import covariate_table

    def dicom(name: str, **header: str) -> str:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        for key, value in header.items():
            setattr(ds, key, value)
        ds.save_as(tmp_path / name, enforce_file_format=True)
        return str(tmp_path / name)

    (tmp_path / "broken.dcm").write_bytes(b"not a dicom at all")
    paths = [dicom("a.dcm", PatientAge="045Y", PatientSex="F", ViewPosition="AP"), dicom("b.dcm"),
             str(tmp_path / "broken.dcm")]  # fmt: skip
    manifest = pd.DataFrame({"image_id": ["a", "b", "c"], "patient_id": ["a", "b", "c"], "source": "rsna",
                             "label": "Normal", "status": "ok", "raw_path": paths, "resolved_path": "",
                             "age": ["", "", ""], "sex": ["", "M", ""], "view": ""})  # fmt: skip
    table = covariate_table(manifest, [18, 40, 65])
    assert list(table["age"]) == ["45", "", ""] and list(table["sex"]) == ["F", "M", ""]
    assert list(table["view"]) == ["AP", "", ""] and list(table["age_band"]) == ["40-65", "unknown", "unknown"]
