"""A researcher's own data, brought as the README says: a fresh copy of the repository,
the shipped config.yaml untouched, `snakemake --cores 2 [target] --configfile my.yaml`,
data laid out as people lay it out (symlinks into a data store, other folders)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cxrflow import synth
from cxrflow.config import with_defaults
from cxrflow.manifest import read_manifest
from workflow_helpers import REPO, read_figure, run_snakemake, shipped_demo

pytestmark = pytest.mark.slow

TINY_RESNET = {"arch": "resnet50", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8,
               "augmentation": {"rotation": 0, "width_shift": 0, "height_shift": 0}}  # fmt: skip


def real_like_collections(root: Path, images: int = 12) -> Path:
    """Collections in the public on-disk formats, outside the demo's folder: they are the user's."""
    demo = with_defaults({"sources": {"x": {"format": "folders", "path": "."}},
                          "demo": {"seed": 7, "raw_size": 192, "covid": {"images": images, "patients": max(1, images * 3 // 4)},
                                   "normal": {"images": images}}})["demo"]  # fmt: skip
    synth.write_demo(demo, root)
    return root


def symlinked_folders(store: Path, tree: Path) -> list[Path]:
    """A `folders` source whose every image is a symlink into a data store elsewhere."""
    links = []
    for label, pattern in (("COVID-19", "ieee8023/images/*"), ("Normal", "rsna/stage_2_train_images_jpg/*.jpg")):
        (tree / label).mkdir(parents=True, exist_ok=True)
        for target in sorted(store.glob(pattern))[:8]:
            link = tree / label / f"linked {target.name}"  # a space: names as people write them
            link.symlink_to(target)
            links.append(link)
    return links


def test_own_sources_run_alone_through_symlinks(tmp_path: Path) -> None:
    store = real_like_collections(tmp_path / "store")
    links = symlinked_folders(store, tmp_path / "mine" / "tree")
    my = {
        "sources": {
            "linked": {"format": "folders", "path": str(tmp_path / "mine" / "tree")},
            "ieee": {"format": "ieee8023", "path": str(store / "ieee8023"),
                     "filters": {"finding": "COVID-19", "modality": "X-ray", "view": "PA"}},
        },
        "experiments": {"r50": TINY_RESNET},
    }  # fmt: skip
    work = tmp_path / "repo"
    proc = run_snakemake(work, my)  # rule all, as the README's own-data example
    assert (work / "config.yaml").read_text() == (REPO / "config.yaml").read_text()  # shipped file untouched
    out = proc.stdout + proc.stderr
    assert "demo_data" not in out and not (work / "results" / "demo").exists()
    manifest = read_manifest(work / "results/preprocessed/manifest.csv")
    assert set(manifest["source"]) == {"linked", "ieee"}
    linked = manifest[manifest["source"] == "linked"]
    assert len(linked) == len(links) and (linked["status"] == "ok").all(), linked[["image_id", "reason"]]
    assert set(linked["resolved_path"]) == {str(link.resolve()) for link in links}
    assert all(Path(p).is_symlink() for p in linked["raw_path"])
    assert not any(str(tmp_path / "store") in p for p in linked["output_path"])  # nothing written outside results/
    # No demo-tuned setting reached the run: Grad-CAM found ResNet50's own last conv layer.
    read_figure(work / "results/experiments/r50/fold0/gradcam.png")
    assert not list((work / "results/experiments").glob("demo_*"))
    assert "block4_conv4" not in (work / "results/logs/gradcam/r50/fold0.log").read_text()


def test_demo_beside_real_sources_stops_before_any_work(tmp_path: Path) -> None:
    store = real_like_collections(tmp_path / "store")
    demo = shipped_demo()
    my = {"sources": {**demo["sources"], "ieee": {"format": "ieee8023", "path": str(store / "ieee8023")}}}
    work = tmp_path / "repo"
    proc = run_snakemake(work, my, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "would mix synthetic images into a real experiment" in out and "mix_with_real: true" in out
    assert not (work / "results").exists()
    # On purpose: the same sources with the switch set plan a run.
    proc = run_snakemake(work, {**my, "demo": {"mix_with_real": True}}, "-n")
    assert "demo_data" in proc.stdout + proc.stderr


def write_garbage_folder(tree: Path, good: int, bad: int) -> None:
    store = real_like_collections(tree.parent / "store", images=max(good, 1))
    (tree / "Normal").mkdir(parents=True)
    for i, target in enumerate(sorted(store.glob("rsna/stage_2_train_images_jpg/*.jpg"))[:good]):
        (tree / "Normal" / f"good{i}.jpg").write_bytes(target.read_bytes())
    for i in range(bad):
        (tree / "Normal" / f"bad{i}.jpg").write_bytes(b"not a JPEG at all")
    (tree / "Normal" / "empty.png").write_bytes(b"")


def test_mostly_quarantined_source_stops_before_splitting(tmp_path: Path) -> None:
    write_garbage_folder(tmp_path / "mine", good=3, bad=6)
    my = {"sources": {"mine": {"format": "folders", "path": str(tmp_path / "mine")}}, "experiments": {}}
    work = tmp_path / "repo"
    proc = run_snakemake(work, my, "split", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "source 'mine': 7 of 10 images quarantined (70%): 6 x unreadable; 1 x empty file" in out
    assert "preprocess.max_quarantined_share" in out
    assert not (work / "results/splits").exists()
    # The manifest and the quarantine list are there to read.
    quarantine = pd.read_csv(work / "results/preprocessed/quarantine.csv")
    assert len(quarantine) == 7 and len(read_manifest(work / "results/preprocessed/manifest.csv")) == 10
    # The key lets the user go on deliberately.
    run_snakemake(work, {**my, "preprocess": {"max_quarantined_share": 0.8}}, "split")
    train = pd.read_csv(work / "results/splits/fold0/train.csv", dtype=str)
    ok = read_manifest(work / "results/preprocessed/manifest.csv").query("status == 'ok'")
    assert len(train) > 0 and set(train["image_id"]) <= set(ok["image_id"])  # quarantined images never train


def test_wholly_quarantined_source_is_never_silent(tmp_path: Path) -> None:
    write_garbage_folder(tmp_path / "bad", good=0, bad=3)
    store = real_like_collections(tmp_path / "store")
    my = {"sources": {"bad": {"format": "folders", "path": str(tmp_path / "bad")},
                      "ieee": {"format": "ieee8023", "path": str(store / "ieee8023")}},
          "preprocess": {"max_quarantined_share": 1.0}, "experiments": {}}  # fmt: skip
    proc = run_snakemake(tmp_path / "repo", my, "preprocess")
    out = proc.stdout + proc.stderr
    assert "WARNING: source 'bad': 4 of 4 images quarantined (100%)" in out
    assert "it contributes no image" in out


def test_dry_run_of_a_big_user_image_lists_no_raw_inputs(tmp_path: Path) -> None:
    """A batch job's one input is its listing, no raw image (docs/performance.md: ~2.5 ms each)."""
    store = real_like_collections(tmp_path / "store")
    my = {"sources": {"ieee": {"format": "ieee8023", "path": str(store / "ieee8023")}}, "experiments": {}}
    proc = run_snakemake(tmp_path / "repo", my, "preprocess", "-n")
    crop = proc.stdout[proc.stdout.index("rule crop_batch:") :].split("\n\n")[0]
    inputs = next(line for line in crop.splitlines() if line.strip().startswith("input:"))
    assert inputs.strip() == "input: results/preprocessed/listings/ieee/1-0.tsv", crop
