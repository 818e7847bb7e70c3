"""sources: every collection format, filters, labels, limits, unsafe paths, real data."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from cxrflow.sources import (
    COLUMNS,
    SourceError,
    inventory_source,
    read_metadata,
    select_images,
    unique_ids,
)

LABELS = {"COVID-19": "COVID-19", "Normal": "Normal"}
OLD_HEADER = "Patientid,offset,sex,age,finding,survival,view,modality,date,location,filename,doi, url,license,clinical notes,other notes,"
NEW_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,went_icu,in_icu,"
    "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,lymphocyte_count,"
    "view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,"
)
COVID_FILTERS = {"finding": "COVID-19", "modality": "X-ray", "view": "PA"}


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def old_style(root: Path) -> Path:
    rows = [
        ("2", "COVID-19", "PA", "X-ray", "a.jpeg"),
        ("2", "COVID-19", "PA", "X-ray", "b.png"),
        ("3", "COVID-19", "AP", "X-ray", "c.jpg"),
        ("4", "SARS", "PA", "X-ray", "d.jpg"),
        ("5", "COVID-19, ARDS", "PA", "X-ray", "e.jpg"),
        ("6", "COVID-19", "Axial", "CT", "f.jpg"),
        ("7", "COVID-19", "PA", "X-ray", "g.jpg"),
    ]
    lines = [OLD_HEADER] + [
        f'{p},0,M,50,{f if "," not in f else chr(34) + f + chr(34)},Y,{v},{m},"January 22, 2020",x,{n},doi,url,,note,,'
        for p, f, v, m, n in rows
    ]
    (root / "metadata.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    for *_, name in rows:
        touch(root / "images" / name)
    return root


def new_style(root: Path) -> Path:
    empty = "," * 13  # RT_PCR_positive .. lymphocyte_count
    rows = [
        ("324a", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "images", "a.jpg"),
        ("324a", "Pneumonia/Viral/COVID-19 ", "PA", "X-ray", "images", "b.jpg"),
        ("325", "Pneumonia/Viral/SARS", "PA", "X-ray", "images", "c.jpg"),
        ("326", "Pneumonia/Viral/COVID-19", "Axial", "CT", "volumes", "d.nii.gz"),
        ("327", "COVID-19, ARDS", "PA", "X-ray", "images", "e.jpg"),
        ("328", "No Finding", "PA", "X-ray", "images", "f.jpg"),
    ]
    lines = [NEW_HEADER] + [
        f'{p},0,M,50,"{f}",{empty}{v},{m},2020,x,{d},{n},doi,url,lic,note,,' for p, f, v, m, d, n in rows
    ]
    root.mkdir(parents=True)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    for *_, d, n in rows:
        touch(root / d / n)
    return root


def spec_for(fmt: str, root: Path, **extra) -> dict:
    return {"format": fmt, "path": str(root), "filters": {}, "limit": None, "images": ".", **extra}


# ---------------------------------------------------------------- ieee8023
def test_ieee8023_old_header(tmp_path: Path) -> None:
    root = old_style(tmp_path / "old")
    table = read_metadata("ieee8023", root, spec_for("ieee8023", root))
    assert list(table.columns)[:3] == ["patientid", "offset", "sex"]
    assert {"url", "clinical_notes", "other_notes"} <= set(table.columns)
    assert not any(c.startswith("unnamed") for c in table.columns)
    images = inventory_source("old", spec_for("ieee8023", root, filters=COVID_FILTERS), LABELS).images
    assert list(images.columns) == COLUMNS
    assert list(images["raw_path"]) == [str(root / "images" / n) for n in ("a.jpeg", "b.png", "g.jpg")]
    assert list(images["patient_id"]) == ["2", "2", "7"]
    assert set(images["problem"]) == {""} and set(images["label"]) == {"COVID-19"}


def test_ieee8023_label_map_without_filters_drops_unmapped(tmp_path: Path) -> None:
    root = old_style(tmp_path / "old")
    images = inventory_source("old", spec_for("ieee8023", root), LABELS).images
    # SARS and "COVID-19, ARDS" map to no class; CT rows stay (no filter asked to drop them).
    assert list(images["finding"]) == ["COVID-19"] * 5
    custom = inventory_source("old", spec_for("ieee8023", root, labels={"SARS": "Other"}), LABELS).images
    assert list(custom["label"]) == ["Other"]


def test_ieee8023_new_header_hierarchical_and_string_ids(tmp_path: Path) -> None:
    root = new_style(tmp_path / "new")
    images = inventory_source("new", spec_for("ieee8023", root, filters=COVID_FILTERS), LABELS).images
    assert list(images["patient_id"]) == ["324a", "324a"]
    assert list(images["finding"]) == ["Pneumonia/Viral/COVID-19"] * 2
    assert list(images["label"]) == ["COVID-19"] * 2
    # `folder` column picks the sub-folder; a CT volume row without filters keeps its own folder.
    unfiltered = inventory_source("new", spec_for("ieee8023", root), LABELS).images
    assert str(root / "volumes" / "d.nii.gz") in set(unfiltered["raw_path"])
    assert "COVID-19, ARDS" not in set(unfiltered["finding"])


def test_filter_list_values_and_numbers(tmp_path: Path) -> None:
    root = old_style(tmp_path / "old")
    images = inventory_source(
        "old", spec_for("ieee8023", root, filters={"view": ["PA", "AP"], "patientid": [2, 3]}), LABELS
    ).images
    assert list(images["patient_id"]) == ["2", "2", "3"]
    with pytest.raises(SourceError, match="filter column 'nope'"):
        inventory_source("old", spec_for("ieee8023", root, filters={"nope": "x"}), LABELS)


def test_limit_keeps_file_order(tmp_path: Path) -> None:
    root = old_style(tmp_path / "old")
    images = inventory_source("old", spec_for("ieee8023", root, filters=COVID_FILTERS, limit=2), LABELS).images
    assert [Path(p).name for p in images["raw_path"]] == ["a.jpeg", "b.png"]


# ---------------------------------------------------------------- rsna
def test_rsna_one_image_per_patient_jpg_and_dcm(tmp_path: Path) -> None:
    root = tmp_path / "rsna"
    root.mkdir()
    (root / "stage_2_detailed_class_info.csv").write_text(
        "patientId,class\np1,Normal\np2,Lung Opacity\np2,Lung Opacity\np3,Normal\np3,Normal\np4,Normal\n"
    )
    touch(root / "stage_2_train_images" / "p1.dcm")
    touch(root / "stage_2_train_images" / "p3.jpg")
    assert len(read_metadata("rsna", root, {})) == 4
    images = select_images(
        "r",
        spec_for("rsna", root, filters={"class": "Normal"}),
        read_metadata("rsna", root, {}),
        root,
        LABELS,
        check_files=True,
    )
    assert list(images["patient_id"]) == ["p1", "p3", "p4"]
    assert list(images["raw_path"]) == [
        str(root / "stage_2_train_images" / "p1.dcm"),
        str(root / "stage_2_train_images" / "p3.jpg"),
        str(root / "stage_2_train_images" / "p4.jpg"),
    ]
    assert list(images["problem"]) == ["", "", "missing file"]
    assert list(images["image_id"]) == ["r-p1", "r-p3", "r-p4"]


def test_rsna_prefers_jpg_folder_and_spec_images_override(tmp_path: Path) -> None:
    root = tmp_path / "rsna"
    root.mkdir()
    (root / "stage_2_detailed_class_info.csv").write_text("patientId,class\np1,Normal\n")
    touch(root / "stage_2_train_images_jpg" / "p1.jpg")
    touch(root / "stage_2_train_images" / "p1.dcm")
    touch(root / "converted" / "p1.png")
    meta = read_metadata("rsna", root, {})
    default = select_images("r", spec_for("rsna", root), meta, root, LABELS, check_files=True)
    assert default["raw_path"].tolist() == [str(root / "stage_2_train_images_jpg" / "p1.jpg")]
    custom = select_images("r", spec_for("rsna", root, images="converted"), meta, root, LABELS, check_files=True)
    assert custom["raw_path"].tolist() == [str(root / "converted" / "p1.png")]


def test_rsna_planned_before_files_exist(tmp_path: Path) -> None:
    """The demo lists its images at parse time: nothing exists yet, paths follow the JPG layout."""
    root = tmp_path / "later"
    meta = pd.DataFrame({"patientId": ["p1", "p1"], "class": ["Normal", "Normal"]})
    images = select_images("r", spec_for("rsna", root), meta, root, LABELS, check_files=False)
    assert images["raw_path"].tolist() == [str(root / "stage_2_train_images_jpg" / "p1.jpg")]
    assert images["problem"].tolist() == [""]


# ---------------------------------------------------------------- folders
def test_folders_with_subsets(tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    for rel in (
        "train/NORMAL/IM-0001.jpeg",
        "train/PNEUMONIA/person1_bacteria_1.jpeg",
        "train/PNEUMONIA/person1_virus_7.jpeg",
        "test/NORMAL/IM-0002.JPEG",
        "val/NORMAL/notes.txt",
        "train/.DS_Store/x.jpeg",
    ):
        touch(root / rel)
    table = read_metadata("folders", root, {})
    assert table["subset"].tolist() == ["train", "train", "train", "test"]
    labels = {"NORMAL": "Normal", "PNEUMONIA": "Pneumonia"}
    images = inventory_source("k", spec_for("folders", root), labels).images
    assert images["label"].tolist() == ["Normal", "Pneumonia", "Pneumonia", "Normal"]
    assert images["patient_id"].tolist() == ["k-IM-0001", "person1", "person1", "k-IM-0002"]
    only_test = inventory_source("k", spec_for("folders", root, filters={"subset": "test"}), labels).images
    assert only_test["raw_path"].tolist() == [str(root / "test" / "NORMAL" / "IM-0002.JPEG")]


def test_folders_without_subsets(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    touch(root / "Normal" / "b.png")
    touch(root / "Normal" / "a.jpg")
    touch(root / "COVID-19" / "c.jpg")
    images = inventory_source("f", spec_for("folders", root), LABELS).images
    assert [Path(p).name for p in images["raw_path"]] == ["c.jpg", "a.jpg", "b.png"]
    assert images["label"].tolist() == ["COVID-19", "Normal", "Normal"]


# ---------------------------------------------------------------- csv
def test_csv_with_column_mapping(tmp_path: Path) -> None:
    root = tmp_path / "own"
    (root / "imgs").mkdir(parents=True)
    (root / "list.csv").write_text(
        "Image File,Diagnosis,Patient ID,View\nx.png,covid,P1,PA\ny.png,healthy,P2,AP\nz.png,other,P3,PA\n"
    )
    touch(root / "imgs" / "x.png")
    touch(root / "imgs" / "y.png")
    spec = spec_for(
        "csv",
        root,
        csv="list.csv",
        images="imgs",
        labels={"covid": "COVID-19", "healthy": "Normal"},
        columns={"filename": "Image File", "label": "Diagnosis", "patient_id": "Patient ID", "view": "View"},
    )
    images = inventory_source("own", spec, LABELS).images
    assert images[["label", "patient_id", "view"]].values.tolist() == [["COVID-19", "P1", "PA"], ["Normal", "P2", "AP"]]
    assert images["raw_path"].tolist() == [str(root / "imgs" / "x.png"), str(root / "imgs" / "y.png")]
    with pytest.raises(SourceError, match="'nope'"):
        inventory_source("own", dict(spec, columns={"filename": "nope", "label": "Diagnosis"}), LABELS)


def test_csv_without_patient_column_each_image_is_its_own_patient(tmp_path: Path) -> None:
    root = tmp_path / "seedlike"
    (root / "img").mkdir(parents=True)
    (root / "c.csv").write_text(",filename,finding\n0,a.jpeg.jpg,COVID-19\n0,b.jpeg.jpg,COVID-19\n")
    for n in ("a.jpeg.jpg", "b.jpeg.jpg"):
        touch(root / "img" / n)
    spec = spec_for("csv", root, csv="c.csv", images="img", columns={"filename": "filename", "label": "finding"})
    images = inventory_source("s", spec, LABELS).images
    assert images["patient_id"].tolist() == ["s-a.jpeg", "s-b.jpeg"] == images["image_id"].tolist()


# ---------------------------------------------------------------- bad input
def test_unsafe_paths_are_kept_with_a_problem(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    touch(tmp_path / "outside.jpg")
    touch(root / "img" / "ok.jpg")
    (root / "c.csv").write_text(
        "filename,finding\nok.jpg,Normal\n../../outside.jpg,Normal\n/etc/passwd,Normal\nsub/../../../x.jpg,Normal\n,Normal\n"
    )
    spec = spec_for("csv", root, csv="c.csv", images="img", columns={"filename": "filename", "label": "finding"})
    images = inventory_source("u", spec, LABELS).images
    assert images["problem"].tolist() == [
        "",
        "unsafe path: img/../../outside.jpg",
        "unsafe path: /etc/passwd",
        "unsafe path: img/sub/../../../x.jpg",
        "empty file name",
    ]
    assert images["raw_path"].tolist()[1:] == ["", "", "", ""]


def test_symlinks_into_a_data_store_are_read_through(tmp_path: Path) -> None:
    """Cluster stores, DataLad and git-annex trees: a listed or named file may be a symlink
    anywhere; only a path *written* with `..` or as absolute is refused (lexically)."""
    store = tmp_path / "store"
    for name in ("a.jpg", "b.png"):
        touch(store / name)
    tree = tmp_path / "tree"
    (tree / "Normal").mkdir(parents=True)
    (tree / "Normal" / "a.jpg").symlink_to(store / "a.jpg")
    (tree / "Normal" / "b.png").symlink_to(store / "b.png")
    (tree / "Normal" / "gone.jpg").symlink_to(store / "gone.jpg")  # broken: listed, not lost
    (tree / "Normal" / "notes.txt").symlink_to(store / "a.jpg")  # not an image by name
    images = inventory_source("t", spec_for("folders", tree), LABELS).images
    assert [Path(p).name for p in images["raw_path"]] == ["a.jpg", "b.png", "gone.jpg"]
    assert images["resolved_path"].tolist() == [str(store / "a.jpg"), str(store / "b.png"), str(store / "gone.jpg")]
    assert images["problem"].tolist()[:2] == ["", ""]
    assert images["problem"].iloc[2] == f"broken symlink: {tree / 'Normal' / 'gone.jpg'} -> {store / 'gone.jpg'}"
    # The same through metadata: a symlink in the dataset folder is fine, `..` is not.
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "images" / "link.jpg").symlink_to(store / "a.jpg")
    (root / "metadata.csv").write_text(
        OLD_HEADER
        + "\n1,0,M,1,COVID-19,,PA,X-ray,,,link.jpg,,,,,,\n2,0,M,1,COVID-19,,PA,X-ray,,,../../store/b.png,,,,,,\n"
    )
    named = inventory_source("s", spec_for("ieee8023", root), LABELS).images
    assert named["problem"].tolist() == ["", "unsafe path: images/../../store/b.png"]
    assert named["resolved_path"].tolist() == [str(store / "a.jpg"), ""]


def test_missing_file_reported_and_check_files_off(tmp_path: Path) -> None:
    root = old_style(tmp_path / "old")
    (root / "images" / "b.png").unlink()
    images = inventory_source("old", spec_for("ieee8023", root, filters=COVID_FILTERS), LABELS).images
    assert images["problem"].tolist() == ["", "missing file", ""]
    unchecked = inventory_source(
        "old", spec_for("ieee8023", root, filters=COVID_FILTERS), LABELS, check_files=False
    ).images
    assert set(unchecked["problem"]) == {""}


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"'gone'.*does not exist"):
        inventory_source("gone", spec_for("ieee8023", tmp_path / "nope"), LABELS)
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(SourceError, match=r"metadata file .*metadata.csv"):
        inventory_source("e", spec_for("ieee8023", tmp_path / "empty"), LABELS)
    root = old_style(tmp_path / "old")
    with pytest.raises(SourceError, match="no image matches"):
        inventory_source("old", spec_for("ieee8023", root, filters={"finding": "MERS"}), LABELS)


def test_image_ids_unique_and_safe(tmp_path: Path) -> None:
    ids = unique_ids("src", ["a b.jpg", "a b.png", "a_b.jpg", "A_B.jpg", "x/é?.jpg", "a_b-2.jpg", ""])
    assert ids == ["src-a_b", "src-a_b-2", "src-a_b-3", "src-A_B-4", "src-__", "src-a_b-2-2", "src-image"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", i) for i in ids)
    assert len({i.lower() for i in ids}) == len(ids)
    assert len(unique_ids("s", ["x" * 400 + ".jpg"])[0]) < 200


def test_limit_keeps_the_first_rows(tmp_path: Path) -> None:
    root = old_style(tmp_path / "b")
    every = inventory_source("b", spec_for("ieee8023", root, filters=COVID_FILTERS), LABELS).images
    first = inventory_source("b", spec_for("ieee8023", root, filters=COVID_FILTERS, limit=1), LABELS).images
    assert len(every) == 3 and first["image_id"].tolist() == every["image_id"].tolist()[:1]
    assert (first["source"] == "b").all() and first["image_id"].str.startswith("b-").all()


# ---------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_real_ieee8023_march_2020(shared_data: Path) -> None:
    root = shared_data / "ieee8023-covid-chestxray-2020-03-24"
    images = inventory_source(
        "ieee", {"format": "ieee8023", "path": str(root), "filters": COVID_FILTERS}, LABELS
    ).images
    assert len(images) == 76
    assert images["patient_id"].nunique() == 53
    assert (images["problem"] == "missing file").sum() == 1
    assert set(images["problem"]) == {"", "missing file"}
    assert images["image_id"].is_unique


@pytest.mark.shared_data
def test_real_seed_csvs(shared_data: Path) -> None:
    root = shared_data / "seed-covid19-detection"
    cols = {"filename": "filename", "label": "finding"}
    sources = {
        "seed_covid": {
            "format": "csv",
            "path": str(root),
            "csv": "covid_dataset.csv",
            "images": "covid_adjusted",
            "columns": cols,
        },
        "seed_normal": {
            "format": "csv",
            "path": str(root),
            "csv": "normal_xray_dataset.csv",
            "images": "normal_dataset",
            "columns": cols,
        },
    }
    images = pd.concat(
        [inventory_source(name, spec, LABELS).images for name, spec in sources.items()], ignore_index=True
    )
    assert images.groupby("source").size().to_dict() == {"seed_covid": 92, "seed_normal": 400}
    # Fact of the published data: rows 312-400 of normal_xray_dataset.csv name files that
    # normal_dataset/ lacks (it holds 89 other files instead); they are reported, not dropped.
    problems = images.loc[images["problem"] != ""]
    assert set(problems["problem"]) == {"missing file"}
    assert problems.index.tolist() == list(range(92 + 311, 92 + 400))
    # The unnamed all-zero index column is not a patient id: each image is its own patient.
    assert images["patient_id"].is_unique
    limited = inventory_source("seed_normal", dict(sources["seed_normal"], limit=99), LABELS).images
    assert len(limited) == 99 and set(limited["problem"]) == {""}  # the original experiment's head(99)
