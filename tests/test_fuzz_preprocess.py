"""Property tests: whatever file a user's folder holds, process_image returns a record and
never raises: `ok` with a valid size x size gray PNG, or `quarantined` with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cxrflow.preprocess import process_image
from workflow_helpers import crop_defaults

SETTINGS = crop_defaults(size=32)
# A fixed budget, derandomised: the fast lane runs the same examples every time.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
MAX_PIXELS = 3_000_000  # a few thousand pixels a side, within a fast lane's time


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    height = draw(st.integers(1, 3000))
    width = draw(st.integers(1, max(1, min(3000, MAX_PIXELS // height))))
    channels = draw(st.sampled_from([1, 2, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    shape = (height, width) if channels == 1 else (height, width, channels)
    kind = draw(st.sampled_from(["random", "constant", "near-constant", "barred"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = 1.0 if dtype == np.float32 else float(np.iinfo(dtype).max)
    if kind == "constant":
        img = np.full(shape, draw(st.floats(0, 1)) * top)
    elif kind == "near-constant":
        img = np.full(shape, draw(st.floats(0, 1)) * top) + rng.integers(0, 2, shape)
    else:
        img = rng.random(shape) * top
        if kind == "barred":
            bar = draw(st.integers(0, height))
            img[:bar] = 0
    return np.clip(img, 0, top).astype(dtype)


def encode(img: np.ndarray, ext: str) -> bytes | None:
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        return None
    return buf.tobytes() if ok else None


def check_record(tmp: Path, raw: Path) -> dict:
    png, js = tmp / "out.png", tmp / "out.json"
    png.unlink(missing_ok=True)
    record = process_image("x", raw, png, js, **SETTINGS)  # must not raise
    assert json.loads(js.read_text())["status"] == record["status"]
    if record["status"] == "ok":
        out = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert out is not None and out.shape == (32, 32) and out.dtype == np.uint8
    else:
        assert record["status"] == "quarantined" and record["reason"]
        assert not png.exists()
    return record


@FUZZ
@given(img=images(), ext=st.sampled_from([".png", ".tiff", ".jpg"]))
def test_any_array_as_a_file_gives_a_record(tmp_path: Path, img: np.ndarray, ext: str) -> None:
    data = encode(img, ext)
    assume(data is not None)  # a combination the format cannot store (e.g. float as PNG)
    raw = tmp_path / f"raw{ext}"
    raw.write_bytes(data)
    record = check_record(tmp_path, raw)
    if min(img.shape[:2]) < SETTINGS["min_side"]:
        assert record["reason"].startswith("too small")


@FUZZ
@given(data=st.binary(max_size=4096), name=st.sampled_from(["x.jpg", "x.png", "x.dcm", "x.tif", "x"]),
       prefix=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x00" * 128 + b"DICM"]))  # fmt: skip
def test_random_bytes_give_a_record(tmp_path: Path, data: bytes, name: str, prefix: bytes) -> None:
    raw = tmp_path / name
    raw.write_bytes(prefix + data)
    record = check_record(tmp_path, raw)
    assert record["status"] == "quarantined" or prefix in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def test_one_by_one_png_is_too_small(tmp_path: Path) -> None:
    raw = tmp_path / "dot.png"
    cv2.imwrite(str(raw), np.full((1, 1), 200, np.uint8))
    record = check_record(tmp_path, raw)
    assert record["status"] == "quarantined" and record["reason"].startswith("too small")


def test_a_crop_under_the_minimum_is_too_small(tmp_path: Path) -> None:
    img = np.zeros((400, 400), np.uint8)
    img[100:300, 100:300] = 200  # wide black bars: the crop keeps the protected band, rows and columns 78..312
    raw = tmp_path / "strip.png"
    cv2.imwrite(str(raw), img)
    record = process_image("x", raw, tmp_path / "o.png", tmp_path / "o.json", **{**SETTINGS, "min_side": 250})
    assert record["reason"].startswith("too small: crop 235x235")


def test_an_unexpected_failure_is_that_image_quarantine(tmp_path: Path) -> None:
    """Not an ImageError: the record says internal error with its type, and keeps the traceback."""
    raw = tmp_path / "fine.png"
    cv2.imwrite(str(raw), np.full((64, 64), 120, np.uint8))
    record = process_image("x", raw, tmp_path / "o.png", tmp_path / "o.json", **{**SETTINGS, "interpolation": "bogus"})
    assert record["status"] == "quarantined"
    assert record["reason"].startswith("internal error: ValueError: unknown interpolation")
    assert "Traceback" in record["traceback"]


# Real signatures of every format the decoder tells by content; random bytes follow them.
SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II*\x00", b"GIF87a",
              b"GIF89a", b"RIFF\x00\x10\x00\x00WEBPVP8 ", b"RIFF\x00\x10\x00\x00WEBPVP8X", b"II*\x00", b"MM\x00*",
              b"BM", b"\x00" * 128 + b"DICM", b"\x02\x00\x10\x00UI", b"\x08\x00\x05\x00CS"]  # fmt: skip


@FUZZ
@given(signature=st.sampled_from(SIGNATURES), data=st.binary(max_size=2048),
       name=st.sampled_from(["x.jpg", "x.webp", "x.gif", "x.dcm", "IM0001"]))  # fmt: skip
def test_random_bytes_behind_a_real_signature_never_crash_a_worker(tmp_path: Path, signature: bytes, data: bytes,
                                                                    name: str) -> None:  # fmt: skip
    raw = tmp_path / name
    raw.write_bytes(signature + data)
    record = check_record(tmp_path, raw)
    assert not record["reason"].startswith("internal error"), record["traceback"]


# A random folder tree: class folders in any case, nesting, system files and folders, stray files.
NAMES = st.sampled_from(["NORMAL", "normal", "Normal", "PNEUMONIA", "Pneumonia", "other", "__MACOSX", ".hidden",
                         "train", "test", "sub", "2020"])  # fmt: skip
FILES = st.sampled_from(["a.jpeg", "B.PNG", "IM000001", ".DS_Store", "._a.jpeg", "Thumbs.db", "notes.txt",
                         "c d.webp", "e.gif", "x.dcm"])  # fmt: skip


@FUZZ
@given(paths=st.lists(st.tuples(st.lists(NAMES, max_size=3), FILES), min_size=1, max_size=25))
def test_every_file_of_a_random_tree_is_an_image_or_skipped_once(tmp_path: Path, paths: list) -> None:
    import shutil

    from cxrflow.sources import SourceError, inventory_source

    root = tmp_path / "tree"
    shutil.rmtree(root, ignore_errors=True)
    files = set()
    for folders, name in paths:
        folder = root.joinpath(*folders)
        if any((root.joinpath(*folders[: i + 1])).is_file() for i in range(len(folders))):
            continue  # a file already holds that name
        if (folder / name).is_dir():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
        files.add(str(folder / name))
    assume(files)
    spec = {"format": "folders", "path": str(root)}
    try:
        inv = inventory_source("t", spec, {"Normal": "Normal", "PNEUMONIA": "Pneumonia"})
        listed = inv.images["raw_path"].tolist() + inv.skipped["path"].tolist()
    except SourceError as err:  # nothing selected: an error that must still name the skipped files
        assert "no image matches" in str(err)
        return
    assert sorted(listed) == sorted(files)  # each file exactly once
    assert set(inv.images["label"]) <= {"Normal", "Pneumonia"}
