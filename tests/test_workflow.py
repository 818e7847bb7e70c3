"""The real `snakemake` command on real files: demo, bad inputs, reruns, real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.manifest import read_manifest
from cxrflow.split import read_split_file
from workflow_helpers import planned_jobs, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


def test_demo_runs_to_splits_offline(tmp_path: Path) -> None:
    cfg = tiny_config()
    run_snakemake(tmp_path, cfg, "split")
    manifest = read_manifest(tmp_path / "results/preprocessed/manifest.csv")
    assert len(manifest) == 24 and (manifest["status"] == "ok").all()
    assert manifest["image_id"].is_unique
    for path in manifest["output_path"]:
        img = cv2.imread(str(tmp_path / path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (32, 32) and img.dtype == np.uint8
    # Most demo Normal images carry black bars: their crop boxes say so.
    normal = manifest[manifest["source"] == "demo_normal"]
    assert (normal["rows_removed"] + normal["cols_removed"] > 0).mean() > 0.5
    splits = {s: read_split_file(tmp_path / f"results/splits/fold0/{s}.csv") for s in ("train", "val", "test")}
    assert sum(len(t) for t in splits.values()) == 24
    patients = [set(t["source"] + ":" + t["patient_id"]) for t in splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    # Up to date: a second dry run plans nothing.
    again = run_snakemake(tmp_path, cfg, "split", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def write_image(path: Path, seed: int, size: tuple[int, int] = (80, 64), bar: int = 8) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 230, size, dtype=np.uint8)
    img[:bar] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def csv_source(root: Path, rows: list[tuple[str, str, str]]) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["file", "finding", "patient"]).to_csv(root / "meta.csv", index=False)
    return {"format": "csv", "path": str(root), "csv": "meta.csv", "images": "img",
            "columns": {"filename": "file", "label": "finding", "patient_id": "patient"}}  # fmt: skip


def test_adding_images_schedules_only_their_crops(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows = []
    for i in range(10):
        write_image(data / "img" / f"a{i}.png", i)
        rows.append((f"a{i}.png", "COVID-19" if i % 2 else "Normal", f"p{i}"))
    cfg = tiny_config(sources={"mine": csv_source(data, rows)})
    work = tmp_path / "work"
    run_snakemake(work, cfg, "split")
    before = pd.read_csv(work / "results/splits/assignments.csv", dtype=str)
    for i in range(10, 13):
        write_image(data / "img" / f"a{i}.png", i)
        rows.append((f"a{i}.png", "Normal", f"p{i}"))
    csv_source(data, rows)
    dry = run_snakemake(work, cfg, "split", "-n")
    assert planned_jobs(dry) == {"crop_image": 3, "select_source": 1, "manifest": 1, "check_quarantine": 1,
                                 "make_splits": 1, "split": 1}  # fmt: skip
    # Changing one image's content re-runs that image's crop only.
    write_image(data / "img" / "a0.png", 99, bar=12)
    dry = run_snakemake(work, cfg, "split", "-n")
    assert planned_jobs(dry)["crop_image"] == 4
    run_snakemake(work, cfg, "split")
    after = pd.read_csv(work / "results/splits/assignments.csv", dtype=str)
    merged = before.merge(after, on="image_id", suffixes=("_before", "_after"))
    stayed = merged["fold0_before"] == merged["fold0_after"]
    # Stratified by label: the added Normal patients move no COVID-19 patient, and at most one
    # Normal patient per cut point (test|val, val|train) per added patient (split.py).
    assert len(merged) == 10 and stayed[merged["label_before"] == "COVID-19"].all() and (~stayed).sum() <= 2 * 3
    # Reduced JPEG decode (size 32 -> kept short side 2 x 32): a new decode_margin re-runs
    # only the crops whose decode scale it changes: j0 128 px (1/2 -> full at margin 3),
    # not j1 200 px (1/2 both ways) nor the PNGs.
    for name, side in (("j0.jpg", 128), ("j1.jpg", 200)):
        img = cv2.resize(np.random.default_rng(side).integers(90, 230, (16, 16), dtype=np.uint8), (side, side))
        cv2.imwrite(str(data / "img" / name), img)
        rows.append((name, "Normal", f"p{name}"))
    csv_source(data, rows)
    run_snakemake(work, cfg, "split")
    scales = read_manifest(work / "results/preprocessed/manifest.csv").set_index("image_id")["decode_scale"]
    assert scales.max() == 2 and (scales == 2).sum() == 2
    cfg["preprocess"]["decode_margin"] = 3
    assert planned_jobs(run_snakemake(work, cfg, "split", "-n"))["crop_image"] == 1


@pytest.mark.shared_data
def test_ieee8023_2020_03_24_original_filters(tmp_path: Path, shared_data: Path) -> None:
    spec = {"format": "ieee8023", "path": str(shared_data / "ieee8023-covid-chestxray-2020-03-24"),
            "filters": {"finding": "COVID-19", "modality": "X-ray", "view": "PA"}}  # fmt: skip
    cfg = tiny_config(sources={"ieee8023": spec})
    cfg["preprocess"]["size"] = 224
    cfg["preprocess"]["batch_size"] = 1000  # the default batch mode, on real images
    run_snakemake(tmp_path, cfg, "preprocess")
    manifest = read_manifest(tmp_path / "results/preprocessed/manifest.csv")
    assert len(manifest) == 76
    assert manifest["status"].value_counts().to_dict() == {"ok": 75, "quarantined": 1}
    assert manifest.loc[manifest["status"] == "quarantined", "reason"].tolist() == ["missing file"]
    for path in manifest.loc[manifest["status"] == "ok", "output_path"]:
        assert cv2.imread(str(tmp_path / path), cv2.IMREAD_UNCHANGED).shape == (224, 224)


@pytest.mark.shared_data
def test_seed_covid19_detection_as_two_csv_sources(tmp_path: Path, shared_data: Path) -> None:
    root = shared_data / "seed-covid19-detection"
    columns = {"filename": "filename", "label": "finding"}
    sources = {
        "seed_covid": {"format": "csv", "path": str(root), "csv": "covid_dataset.csv",
                       "images": "covid_adjusted", "columns": columns},
        "seed_normal": {"format": "csv", "path": str(root), "csv": "normal_xray_dataset.csv",
                        "images": "normal_dataset", "columns": columns},
    }  # fmt: skip
    cfg = tiny_config(sources=sources)
    cfg["preprocess"]["size"] = 224
    run_snakemake(tmp_path, cfg, "preprocess")
    manifest = read_manifest(tmp_path / "results/preprocessed/manifest.csv")
    counts = manifest.groupby("source").size().to_dict()
    assert counts == {"seed_covid": 92, "seed_normal": 400}
    # The published normal_xray_dataset.csv lists 89 files (rows 312-400) that its
    # normal_dataset/ folder does not hold: they are reported, not skipped.
    status = manifest.groupby(["source", "status"]).size().to_dict()
    assert status == {("seed_covid", "ok"): 92, ("seed_normal", "ok"): 311, ("seed_normal", "quarantined"): 89}
    assert set(manifest.loc[manifest["status"] == "quarantined", "reason"]) == {"missing file"}
