"""A folder of awkward but real-world files, and metadata with unsafe, missing and repeated
rows: the run goes to a complete manifest (every file a row) and exits 0."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.manifest import read_manifest
from workflow_helpers import run_snakemake

pytestmark = pytest.mark.slow


def radiograph(h: int, w: int, seed: int, bar: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(70, 230, (h, w), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    if bar:
        img[:bar] = 0
    return img


def awkward_folder(root: Path) -> dict[str, str]:
    """File name -> what the manifest must say of it: 'ok' or the start of its reason."""
    covid, normal = root / "COVID-19", root / "Normal"
    covid.mkdir(parents=True)
    normal.mkdir(parents=True)
    expect = {}

    def put(folder: Path, name: str, data: bytes, outcome: str) -> None:
        (folder / name).write_bytes(data)
        expect[f"{folder.name}/{name}"] = outcome

    def enc(ext: str, img: np.ndarray) -> bytes:
        return cv2.imencode(ext, img)[1].tobytes()

    full = enc(".jpg", radiograph(300, 260, 1, bar=20))
    put(covid, "truncated.jpg", full[: len(full) // 2], "truncated file")
    put(covid, "empty.jpg", b"", "empty file")
    put(covid, "garbage.jpeg", b"GIF89a but not really" * 10, "unreadable")
    put(covid, "png-named.jpg", enc(".png", radiograph(280, 240, 2)), "ok")
    put(covid, "sixteen.png", enc(".png", (radiograph(300, 300, 3).astype(np.uint16) * 257)), "ok")
    rgba = cv2.cvtColor(radiograph(260, 300, 4), cv2.COLOR_GRAY2BGRA)
    put(covid, "rgba.png", enc(".png", rgba), "ok")
    put(covid, "dot.png", enc(".png", np.full((1, 1), 200, np.uint8)), "too small")
    put(normal, "black.png", enc(".png", np.zeros((200, 200), np.uint8)), "all black")
    put(normal, "white.png", enc(".png", np.full((200, 200), 255, np.uint8)), "ok")
    put(normal, "panorama.jpg", enc(".jpg", radiograph(150, 1200, 5)), "ok")
    put(normal, "tall.jpg", enc(".jpg", radiograph(1600, 140, 6)), "ok")
    put(normal, "Röntgen Thorax ü.jpg", enc(".jpg", radiograph(320, 300, 7)), "ok")
    put(normal, "36MP.jpg", enc(".jpg", radiograph(6000, 6000, 8, bar=300)), "ok")
    put(normal, "copy-of-png-named.jpg", (covid / "png-named.jpg").read_bytes(), "ok")  # same bytes, other label
    for i in range(4):
        put(normal, f"plain{i}.jpg", enc(".jpg", radiograph(300, 300, 20 + i, bar=15)), "ok")
    for i in range(3):
        put(covid, f"plain{i}.png", enc(".png", radiograph(300, 300, 30 + i)), "ok")
    return expect


def awkward_metadata(root: Path) -> dict[str, str]:
    """ieee8023-style metadata with `..`, absolute, missing and repeated rows."""
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(images / f"ok{i}.png"), radiograph(260, 260, 40 + i))
    (root.parent / "secret.png").write_bytes((images / "ok0.png").read_bytes())
    names = ["ok0.png", "ok1.png", "ok2.png", "ok3.png", "ok1.png", "../../secret.png", "/etc/hosts", "gone.png"]
    header = ["Patientid", "finding", "view", "modality", "filename"]
    rows = [[f"p{i}", "COVID-19", "PA", "X-ray", n] for i, n in enumerate(names)]
    pd.DataFrame(rows, columns=header).to_csv(root / "metadata.csv", index=False)
    return {"ok0": "ok", "ok1": "ok", "ok2": "ok", "ok3": "ok", "ok1-2": "ok", "secret": "unsafe path",
            "hosts": "unsafe path", "gone": "missing file"}  # fmt: skip


def test_awkward_files_run_to_a_complete_manifest(tmp_path: Path) -> None:
    folder = awkward_folder(tmp_path / "data" / "awkward")
    meta = awkward_metadata(tmp_path / "data" / "ieee")
    my = {"sources": {"awkward": {"format": "folders", "path": str(tmp_path / "data" / "awkward")},
                      "ieee": {"format": "ieee8023", "path": str(tmp_path / "data" / "ieee")}},
          "preprocess": {"batch_size": 8}, "experiments": {}}  # fmt: skip
    work = tmp_path / "repo"
    proc = run_snakemake(work, my, "split")  # exits 0
    manifest = read_manifest(work / "results/preprocessed/manifest.csv")
    assert len(manifest) == len(folder) + len(meta)  # every file a row
    awkward = manifest[manifest["source"] == "awkward"].copy()
    awkward["listed"] = [str(Path(p).relative_to(tmp_path / "data" / "awkward")) for p in awkward["raw_path"]]
    got = dict(zip(awkward["listed"], np.where(awkward["status"] == "ok", "ok", awkward["reason"])))
    for name, outcome in folder.items():
        assert got[name].startswith(outcome), (name, got[name])
    ieee = manifest[manifest["source"] == "ieee"].set_index("image_id")
    for stem, outcome in meta.items():
        row = ieee.loc[f"ieee-{stem}"]
        assert (row["status"] == "ok") if outcome == "ok" else row["reason"].startswith(outcome), (stem, row)
    for path in manifest.loc[manifest["status"] == "ok", "output_path"]:
        img = cv2.imread(str(work / path), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (224, 224)
    # The byte-identical copy under another label is found and kept with its twin.
    pairs = pd.read_csv(work / "results/audit/duplicates.csv")
    ids = set(awkward.loc[awkward["listed"].isin(["COVID-19/png-named.jpg", "Normal/copy-of-png-named.jpg"]),
                          "image_id"])  # fmt: skip
    assert any({a, b} == ids for a, b in zip(pairs["image_id_a"], pairs["image_id_b"]))
    # What a person watching sees: each batch's counts, then the run's, with the list's place.
    assert re.search(r"^awkward batch \d+-\d+: \d+ images in [\d.]+ s: \d+ cropped, \d+ quarantined, 0 reused from cache$",
                     proc.stderr, re.M), proc.stderr  # fmt: skip
    assert any(line.startswith("preprocess: 29 images: 21 cropped, 0 reused from earlier runs, 8 quarantined by this "
                               "run; in all 21 ok (list: results/preprocessed/manifest.csv), 8 quarantined (list: "
                               "results/preprocessed/quarantine.csv), ") and line.endswith(
                               " files skipped (list: results/preprocessed/skipped.csv)")
               for line in proc.stderr.splitlines()), proc.stderr  # fmt: skip
