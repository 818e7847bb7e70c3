"""process_image: every good format -> size x size gray PNG; every bad input -> its reason, no PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from workflow_helpers import crop_defaults
from cxrflow.preprocess import RECORD_KEYS, process_image

SETTINGS: dict[str, Any] = crop_defaults(size=32, min_side=8)
KEYS = {
    "image_id", "raw_path", "status", "reason", "orig_width", "orig_height", "orig_channels",
    "orig_dtype", "decode_scale", "crop_x0", "crop_y0", "crop_x1", "crop_y1", "rows_removed", "cols_removed",
    "output_path", "output_width", "output_height", "format", "note", "traceback",
}  # fmt: skip


def xray(h: int = 120, w: int = 100, channels: int = 3, dtype: type = np.uint8) -> np.ndarray:
    """Textured bright content with a black bar on top and on the left."""
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max
    img = rng.integers(top // 3, top - top // 10, (h, w, channels) if channels > 1 else (h, w))
    img = img.astype(dtype)
    img[:10] = 0
    img[:, :6] = 0
    if channels == 4:
        img[..., 3] = top
    return img


def run(tmp_path: Path, raw: Path, **kw: Any) -> tuple[dict[str, Any], Path, Path]:
    png, js = tmp_path / "out" / "sub" / "x.png", tmp_path / "out" / "rec" / "x.json"
    record = process_image("x", raw, png, js, **{**SETTINGS, **kw})
    assert json.loads(js.read_text()) == record
    assert set(record) == KEYS and tuple(record) == RECORD_KEYS
    return record, png, js


def assert_quarantined(tmp_path: Path, raw: Path, reason: str, **kw: Any) -> dict[str, Any]:
    png = tmp_path / "out" / "sub" / "x.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"stale output of an earlier run")
    record, png, _ = run(tmp_path, raw, **kw)
    assert record["status"] == "quarantined"
    if reason.endswith("*"):
        assert record["reason"].startswith(reason[:-1])
    else:
        assert record["reason"] == reason
    assert record["output_path"] == "" and record["output_width"] is None
    assert record["crop_x0"] is None and record["rows_removed"] is None
    assert not png.exists()
    return record


# --- bad inputs ---------------------------------------------------------------------------


def test_missing(tmp_path: Path) -> None:
    rec = assert_quarantined(tmp_path, tmp_path / "absent.jpg", "missing file")
    assert rec["orig_width"] is None and rec["orig_dtype"] is None


def test_problem_known_to_caller_skips_decoding(tmp_path: Path) -> None:
    raw = tmp_path / "fine.png"
    cv2.imwrite(str(raw), xray())
    assert_quarantined(tmp_path, raw, "unsafe path: ../x.jpg", problem="unsafe path: ../x.jpg")


def test_empty(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    assert_quarantined(tmp_path, tmp_path / "e.png", "empty file")


def test_garbage(tmp_path: Path) -> None:
    (tmp_path / "g.jpg").write_bytes(bytes(range(256)) * 4)
    assert_quarantined(tmp_path, tmp_path / "g.jpg", "unreadable: *")


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated(tmp_path: Path, ext: str) -> None:
    ok, buf = cv2.imencode(ext, xray())
    data = buf.tobytes()
    (tmp_path / f"t{ext}").write_bytes(data[: len(data) * 2 // 3])
    assert_quarantined(tmp_path, tmp_path / f"t{ext}", "truncated file")


def test_all_black(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), np.full((50, 40, 3), 20, np.uint8))
    rec = assert_quarantined(tmp_path, tmp_path / "b.png", "all black")
    assert (rec["orig_width"], rec["orig_height"], rec["orig_channels"]) == (40, 50, 3)


def test_crop_removed_everything(tmp_path: Path) -> None:
    img = np.zeros((40, 40), np.uint8)
    img[:, :4] = 200  # every row black, four bright columns: not all black
    cv2.imwrite(str(tmp_path / "s.png"), img)
    # an empty protected band on an even height leaves no row to keep
    assert_quarantined(tmp_path, tmp_path / "s.png", "crop removed everything", protect=[0.5, 0.5])


# --- good inputs --------------------------------------------------------------------------


def check_ok(record: dict[str, Any], png: Path) -> np.ndarray:
    assert record["status"] == "ok" and record["reason"] == ""
    assert record["output_path"] == str(png)
    assert (record["output_width"], record["output_height"]) == (32, 32)
    out = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    return out


@pytest.mark.parametrize(
    ("channels", "dtype"),
    [(1, np.uint8), (3, np.uint8), (4, np.uint8), (1, np.uint16), (4, np.uint16)],
)
def test_png_formats(tmp_path: Path, channels: int, dtype: type) -> None:
    raw = tmp_path / "in.png"
    cv2.imwrite(str(raw), xray(channels=channels, dtype=dtype))
    record, png, _ = run(tmp_path, raw)
    check_ok(record, png)
    assert (record["orig_width"], record["orig_height"]) == (100, 120)
    assert (record["orig_channels"], record["orig_dtype"]) == (channels, np.dtype(dtype).name)
    # bars: 10 rows on top, 6 cols left -> 110 x 94, then 16 rows trimmed (8 + 8)
    assert (record["crop_x0"], record["crop_y0"], record["crop_x1"], record["crop_y1"]) == (
        6, 18, 100, 112,
    )  # fmt: skip
    assert (record["rows_removed"], record["cols_removed"]) == (26, 6)


def test_colour_saved_as_luminance_gray(tmp_path: Path) -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[...] = (30, 30, 240)  # mean 100: not dark; red -> luminance ~ 87
    raw = tmp_path / "r.png"
    cv2.imwrite(str(raw), img)
    record, png, _ = run(tmp_path, raw)
    out = check_ok(record, png)
    assert int(out.mean()) == int(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_dicom(tmp_path: Path, photometric: str) -> None:
    pixels = xray(channels=1, dtype=np.uint16) >> 4  # 12-bit data in 16-bit words
    if photometric == "MONOCHROME1":
        pixels = 4095 - pixels  # stored inverted: bars are high values
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.set_pixel_data(pixels.astype(np.uint16), photometric_interpretation=photometric, bits_stored=12)
    raw = tmp_path / "x.dcm"
    ds.save_as(raw, enforce_file_format=True)
    record, png, _ = run(tmp_path, raw)
    check_ok(record, png)
    assert (record["orig_channels"], record["orig_dtype"]) == (1, "uint16")
    assert (record["crop_x0"], record["crop_y0"]) == (6, 18)  # bars found in both encodings


def test_rerun_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    raw = tmp_path / "in.png"
    cv2.imwrite(str(raw), xray())
    run(tmp_path, raw)
    record, png, js = run(tmp_path, raw)
    assert record["status"] == "ok"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "x.json",
        "x.png",
    ]


def test_leftover_temporary_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    """A worker killed inside atomic_write_bytes leaves its temporary file; the manifest job removes
    exactly those (other hidden files stay)."""
    from cxrflow.preprocess import atomic_write_bytes, remove_leftover_temp_files

    atomic_write_bytes(tmp_path / "images" / "a.png", b"png")
    left = tmp_path / "images" / f".b.png.{'0' * 31}f.tmp"
    left.write_bytes(b"half")
    other = tmp_path / "records" / ".notes.tmp"
    other.parent.mkdir()
    other.write_text("mine")
    assert remove_leftover_temp_files(tmp_path) == 1
    assert not left.exists() and other.exists() and (tmp_path / "images" / "a.png").read_bytes() == b"png"
