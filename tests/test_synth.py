"""synth: the embedded demo data is deterministic, planned without disk, and loads as configured."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from cxrflow import synth
from cxrflow.config import apply_demo, with_defaults
from cxrflow.sources import inventory_source, metadata_file, select_images
from workflow_helpers import shipped_demo

SMALL = {
    "path": "unused",
    "seed": 7,
    "raw_size": 96,
    "covid": {"images": 9, "patients": 5, "bar_fraction": 0.34, "size_range": [0.6, 1.4]},
    "normal": {"images": 8, "bar_fraction": 0.75},
}


@pytest.fixture(scope="module")
def config(repo_root: Path) -> dict:
    """The settings a demo run uses: the shipped config.yaml with workflow/demo.yaml laid under it,
    the schema's defaults filled in (as the Snakefile's validate does)."""
    settings = yaml.safe_load((repo_root / "config.yaml").read_text())
    assert apply_demo(settings, shipped_demo())
    return with_defaults(settings)


def demo_sources(config: dict, out: Path) -> dict:
    """The config's demo sources, pointed at `out` instead of demo.path."""
    prefix = config["demo"]["path"].rstrip("/") + "/"
    return {
        name: dict(spec, path=str(out / spec["path"].removeprefix(prefix))) for name, spec in config["sources"].items()
    }


def written(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_is_byte_identical_and_matches_plan(tmp_path: Path) -> None:
    synth.write_demo(SMALL, tmp_path / "a")
    synth.write_demo(SMALL, tmp_path / "b")
    a, b = written(tmp_path / "a"), written(tmp_path / "b")
    assert a == b
    assert sorted(a) == sorted(synth.demo_files(SMALL))
    assert len(a) == 2 + 9 + 5 + 8 + 4  # tables, COVID-19 PA, excluded ieee rows, Normal, excluded RSNA patients
    for relative, table in synth.plan_demo(SMALL).items():
        assert a[relative] == table.to_csv(index=False, lineterminator="\n").encode()
    other = dict(SMALL, seed=8)
    assert synth.demo_files(other) != synth.demo_files(SMALL)


def test_tables_look_like_the_real_collections() -> None:
    tables = synth.plan_demo(SMALL)
    ieee = tables["ieee8023/metadata.csv"].to_csv(index=False, lineterminator="\n").splitlines()
    assert ieee[0] == (
        "Patientid,offset,sex,age,finding,survival,view,modality,date,location,filename,doi, url,license,"
        "clinical notes,other notes,"
    )
    rsna = tables["rsna/stage_2_detailed_class_info.csv"]
    assert list(rsna.columns) == ["patientId", "class"]
    assert rsna["patientId"].duplicated().any()
    assert {"Normal", "Lung Opacity"} <= set(rsna["class"])
    names = tables["ieee8023/metadata.csv"]["filename"]
    assert names.str.endswith(".png").any() and names.str.endswith(".jpg").any()


def test_images_vary_like_raw_collections(tmp_path: Path) -> None:
    synth.write_demo(SMALL, tmp_path)
    covid = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "ieee8023/images").iterdir())]
    shapes = {im.shape[:2] for im in covid}
    assert len(shapes) > 3 and any(h != w for h, w in shapes)
    assert {im.ndim for im in covid} == {2, 3}
    normal = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (tmp_path / "rsna/stage_2_train_images_jpg").iterdir()]
    assert {im.shape for im in normal} == {(96, 96)}
    # Body brighter than the dark background at the image corners.
    assert all(im[im.shape[0] // 2 :, im.shape[1] // 2].mean() > im[:3, :3].mean() + 40 for im in normal)


def test_bar_fractions(tmp_path: Path) -> None:
    demo = dict(SMALL, raw_size=64, normal={"images": 20, "bar_fraction": 0.5})
    synth.write_demo(demo, tmp_path)
    meta = synth.plan_demo(demo)["rsna/stage_2_detailed_class_info.csv"].drop_duplicates("patientId")
    normal_ids = meta.loc[meta["class"] == "Normal", "patientId"]

    def barred(pid: str) -> bool:
        im = cv2.imread(str(tmp_path / f"rsna/stage_2_train_images_jpg/{pid}.jpg"), cv2.IMREAD_GRAYSCALE)
        return bool(im[:, 30:34].max(axis=1)[[0, -1]].max() < 12 or im[30:34].max(axis=0)[[0, -1]].max() < 12)

    assert sum(barred(pid) for pid in normal_ids) == 10


def test_covid_opacities_brighten_lower_lungs() -> None:
    """The disease signal a model can learn: same anatomy, brighter lower peripheral lungs."""
    base = dict(path="x.png", height=256, width=256, bars=False, rgb=False, ct=False, seed=(1, 2, 3))
    diffs = []
    for k in range(5):
        sick = synth.render(synth._Image(opacities=True, **dict(base, seed=(1, 2, k))))
        healthy = synth.render(synth._Image(opacities=False, **dict(base, seed=(1, 2, k))))
        diffs.append(sick.astype(float) - healthy.astype(float))
    mean = np.mean(diffs, axis=0)
    assert mean[128:200].mean() > 4 * abs(mean[:60].mean()) and mean[128:200].mean() > 3


def test_patients_cannot_exceed_images() -> None:
    with pytest.raises(ValueError, match="patients"):
        synth.plan_demo(dict(SMALL, covid={"images": 2, "patients": 3, "bar_fraction": 0, "size_range": [1, 1]}))


@pytest.mark.slow
def test_default_demo_loads_with_config_sources(config: dict, tmp_path: Path) -> None:
    demo = config["demo"]
    sources = demo_sources(config, tmp_path)
    # Parse time: the planned tables list exactly the images the written demo will give.
    tables = synth.plan_demo(demo)
    planned = {
        name: select_images(
            name,
            spec,
            tables[str((Path(spec["path"]) / metadata_file(spec["format"], spec)).relative_to(tmp_path))],
            Path(spec["path"]),
            config["labels"],
            check_files=False,
        )
        for name, spec in sources.items()
    }
    synth.write_demo(demo, tmp_path)
    loaded = {name: inventory_source(name, spec, config["labels"]).images for name, spec in sources.items()}
    assert len(loaded["demo_covid"]) == demo["covid"]["images"]
    assert loaded["demo_covid"]["patient_id"].nunique() == demo["covid"]["patients"]
    assert len(loaded["demo_normal"]) == demo["normal"]["images"]
    for name in sources:
        assert set(loaded[name]["problem"]) == {""}
        assert loaded[name].equals(planned[name])
