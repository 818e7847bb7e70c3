"""Reduced (DCT-domain) JPEG decoding: which files take it, what it changes, what it must not.

The quality check compares process_image with `reduced_decode` on and off, on generated
large JPEGs and on every real JPEG of ../shared/data that the default settings reduce.
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cxrflow.crop_batches import BatchItem, run_batch
from cxrflow.decode import decode_image, jpeg_frame, reduced_scale
from cxrflow.preprocess import key_settings, process_image
from workflow_helpers import crop_defaults

SETTINGS: dict[str, Any] = crop_defaults()  # size 224, decode_margin 2, reduced_decode on
BOX = ("crop_x0", "crop_y0", "crop_x1", "crop_y1")


def crop_batch(items: list[BatchItem], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The crop job's loop (batch.run_batch) in this process, without progress lines."""
    return run_batch(items, settings, map, logging.getLogger("test"), "test batch", progress_every=0)


def radiograph(seed: int, height: int, width: int, color: bool = False) -> np.ndarray:
    """Smooth body with two darker lungs, mottling and grain, black bars of random widths."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    body = 170 - 60 * ((xx - 0.5) ** 2 + (yy - 0.55) ** 2)
    for cx in (0.33, 0.67):
        body -= 45 * np.exp(-(((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    mottle = rng.normal(0, 10, (height // 16, width // 16)).astype(np.float32)
    body += cv2.resize(mottle, (width, height), interpolation=cv2.INTER_CUBIC)
    body += rng.normal(0, 4, body.shape).astype(np.float32)
    img = np.clip(body, 50, 235).astype(np.uint8)
    top, bottom = rng.integers(0, height // 7, 2)
    left, right = rng.integers(0, width // 7, 2)
    img[:top], img[height - bottom :] = 0, 0
    img[:, :left], img[:, width - right :] = 0, 0
    if color:
        img = cv2.merge([img, img, np.clip(img.astype(np.int16) + 5, 0, 255).astype(np.uint8)])
    return img


def write_jpeg(path: Path, img: np.ndarray, quality: int = 95, progressive: bool = False) -> Path:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    ok, buf = cv2.imencode(".jpg", img, params)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding only an Orientation tag right after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def both_ways(path: Path, tmp: Path) -> tuple[dict, dict, np.ndarray]:
    """Records with the reduced decode off and on, and |difference| of their PNGs."""
    full = process_image("f", path, tmp / "f.png", tmp / "f.json", **{**SETTINGS, "reduced_decode": False})
    red = process_image("r", path, tmp / "r.png", tmp / "r.json", **SETTINGS)
    assert full["status"] == red["status"] == "ok", (full["reason"], red["reason"])
    a = cv2.imread(str(tmp / "f.png"), cv2.IMREAD_UNCHANGED).astype(np.int16)
    b = cv2.imread(str(tmp / "r.png"), cv2.IMREAD_UNCHANGED).astype(np.int16)
    return full, red, np.abs(a - b)


def box_error(full: dict, red: dict) -> int:
    return max(abs(int(full[k]) - int(red[k])) for k in BOX)


# ------------------------------------------------------------------ header and scale
def test_frame_header_read_without_decoding(tmp_path: Path) -> None:
    gray = write_jpeg(tmp_path / "g.jpg", np.full((300, 500), 128, np.uint8)).read_bytes()
    frame = jpeg_frame(gray)
    assert frame is not None and (frame.width, frame.height, frame.components) == (500, 300, 1)
    assert frame.marker == 0xC0 and frame.precision == 8
    color = write_jpeg(tmp_path / "c.jpg", np.full((64, 32, 3), 99, np.uint8), progressive=True)
    frame = jpeg_frame(color.read_bytes())
    assert frame is not None and (frame.width, frame.height, frame.components, frame.marker) == (32, 64, 3, 0xC2)
    # APP segments before the frame header are skipped
    assert jpeg_frame(with_exif_orientation(gray, 6)) == jpeg_frame(gray)
    ok, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    assert jpeg_frame(png.tobytes()) is None
    assert jpeg_frame(gray[:4]) is None and jpeg_frame(b"") is None
    assert jpeg_frame(b"\xff\xd8\xff\xda\x00\x02") is None  # a scan before any frame header


def test_scale_is_the_largest_reduction_that_keeps_the_margin(tmp_path: Path) -> None:
    def frame(w: int, h: int, marker: int = 0xC0, precision: int = 8, components: int = 1):
        data = write_jpeg(tmp_path / "x.jpg", np.zeros((8, 8), np.uint8)).read_bytes()
        parsed = jpeg_frame(data)
        return type(parsed)(marker, precision, w, h, components)

    keep = 2 * 224
    assert reduced_scale(frame(1024, 1024), keep) == 2
    assert reduced_scale(frame(2000, 2400), keep) == 4
    assert reduced_scale(frame(4000, 3600), keep) == 8
    assert reduced_scale(frame(894, 2000), keep) == 1  # 447 < 448
    assert reduced_scale(frame(895, 2000), keep) == 2  # libjpeg rounds up: 448
    assert reduced_scale(frame(1024, 1024), 0) == 1  # switched off
    assert reduced_scale(frame(1024, 1024, marker=0xC3), keep) == 1  # lossless: no DCT
    assert reduced_scale(frame(1024, 1024, precision=12), keep) == 1
    assert reduced_scale(frame(1024, 1024, components=4), keep) == 1  # CMYK
    assert reduced_scale(None, keep) == 1


def test_reduced_decode_applies_exif_orientation_like_the_full_path(tmp_path: Path) -> None:
    """Orientation 6 (rotate 90 degrees clockwise): both paths show it upright, as viewers do."""
    img = radiograph(3, 600, 1200)
    data = with_exif_orientation(write_jpeg(tmp_path / "a.jpg", img).read_bytes(), 6)
    (tmp_path / "rot.jpg").write_bytes(data)
    full = decode_image(tmp_path / "rot.jpg")
    red = decode_image(tmp_path / "rot.jpg", keep_short_side=150)
    assert full.pixels.shape == (1200, 600) and full.scale == 1
    assert np.array_equal(full.pixels, cv2.rotate(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED
                                                               | cv2.IMREAD_IGNORE_ORIENTATION), cv2.ROTATE_90_CLOCKWISE))  # fmt: skip
    assert red.pixels.shape == (300, 150) and red.scale == 4
    assert (red.orig_width, red.orig_height, red.orig_channels, red.orig_dtype) == (600, 1200, 1, "uint8")
    assert full.note == red.note == "EXIF orientation 6 applied"
    color = decode_image(write_jpeg(tmp_path / "c.jpg", radiograph(1, 1001, 999, color=True)), 448)
    assert color.pixels.shape == (501, 500, 3) and color.scale == 2  # sides rounded up, BGR kept
    assert decode_image(write_jpeg(tmp_path / "s.jpg", img[:400, :400]), 448).scale == 1


def test_formats_without_reduced_decode_are_exact(tmp_path: Path) -> None:
    """PNG and 16-bit images take today's path: identical output, scale 1."""
    img16 = (radiograph(5, 1024, 1024).astype(np.uint16) * 257) // 3
    for name, img in (("a.png", radiograph(4, 1024, 1024)), ("b16.png", img16)):
        cv2.imwrite(str(tmp_path / name), img)
        full, red, diff = both_ways(tmp_path / name, tmp_path)
        assert red["decode_scale"] == full["decode_scale"] == 1
        assert diff.max() == 0 and [full[k] for k in BOX] == [red[k] for k in BOX]


# ------------------------------------------------------------------ what the reduction changes
def quality(paths: list[Path], tmp: Path) -> dict[str, Any]:
    rows = []
    for path in paths:
        full, red, diff = both_ways(path, tmp)
        if red["decode_scale"] == 1:
            continue
        assert full["decode_scale"] == 1 and red["orig_width"] == full["orig_width"]
        rows.append((path.name, red["decode_scale"], float(diff.mean()), float(np.percentile(diff, 99)),
                     box_error(full, red)))  # fmt: skip
    means = np.array([r[2] for r in rows])
    p99s = np.array([r[3] for r in rows])
    within = [r[4] <= r[1] for r in rows]
    print(f"\n{len(rows)} reduced images: median mean {np.median(means):.2f}, median p99 {np.median(p99s):.0f}, "
          f"{np.mean((means <= 1.0) & (p99s <= 4)):.0%} within mean 1 / p99 4, box within one step: "
          f"{np.mean(within):.0%}; worst: {sorted(rows, key=lambda r: -r[2])[:3]}")  # fmt: skip
    return {"n": len(rows), "means": means, "p99s": p99s, "within": np.array(within), "rows": rows}


def test_generated_large_jpegs_stay_close_to_the_full_decode(tmp_path: Path) -> None:
    shapes = [(1024, 1024, False)] * 6 + [(2400, 2000, False)] * 4 + [(2048, 2500, True)] * 2
    paths = [write_jpeg(tmp_path / f"{i}.jpg", radiograph(i, h, w, c), 90 if h == 1024 else 95)
             for i, (h, w, c) in enumerate(shapes)]  # fmt: skip
    q = quality(paths, tmp_path)
    assert q["n"] == len(shapes)
    assert {r[1] for r in q["rows"][:6]} == {2} and {r[1] for r in q["rows"][6:]} == {4}
    # every box within one reduction step; grey levels: the typical image within
    # mean 1 / p99 4 and no image far off (a one-step box shift moves the grain)
    assert q["within"].all()
    assert np.median(q["means"]) <= 1.0 and np.median(q["p99s"]) <= 4
    assert q["means"].max() <= 2.0 and q["p99s"].max() <= 8


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_jpegs_stay_close_to_the_full_decode(tmp_path: Path, shared_data: Path) -> None:
    images = shared_data / "ieee8023-covid-chestxray-2020-03-24" / "images"
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    q = quality(paths, tmp_path)
    assert q["n"] >= 80  # most of the collection is large enough to be reduced
    assert np.median(q["means"]) <= 1.0 and np.median(q["p99s"]) <= 4
    assert np.mean((q["means"] <= 1.0) & (q["p99s"] <= 4)) >= 0.6
    assert q["within"].mean() >= 0.9


# ------------------------------------------------------------------ content key
def test_changing_the_setting_recrops_only_images_whose_scale_changes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_jpeg(raw / "big.jpg", radiograph(1, 1024, 1024))  # scale 2 at margin 2, 1 at 2.3 (512 < 516)
    write_jpeg(raw / "huge.jpg", radiograph(2, 2400, 2400))  # scale 4 at margin 2 and 2.3 (600)
    write_jpeg(raw / "small.jpg", radiograph(3, 600, 600))  # too small to reduce
    cv2.imwrite(str(raw / "big.png"), radiograph(4, 1024, 1024))  # no reduced decode for PNG
    out = tmp_path / "out"
    items = [BatchItem(p.stem + p.suffix, str(p), "", str(out / f"{p.name}.png"), str(out / f"{p.name}.json"))
             for p in sorted(raw.iterdir())]  # fmt: skip
    names = [i.image_id for i in items]

    def reused(settings: dict[str, Any]) -> dict[str, bool]:
        return {s["image_id"]: s["reused"] for s in crop_batch(items, settings)}

    first = crop_batch(items, SETTINGS)
    assert {s["image_id"]: s["record"]["decode_scale"] for s in first} == {
        "big.jpg": 2, "huge.jpg": 4, "small.jpg": 1, "big.png": 1}  # fmt: skip
    assert all(reused(SETTINGS).values())
    assert reused({**SETTINGS, "decode_margin": 2.3}) == {n: n != "big.jpg" for n in names}
    assert reused({**SETTINGS, "decode_margin": 2.3}) == dict.fromkeys(names, True)
    off = {**SETTINGS, "reduced_decode": False}
    assert reused(off) == {n: n != "huge.jpg" for n in names}  # big.jpg is at scale 1 already
    record = json.loads((out / "huge.jpg.json").read_text())
    assert record["decode_scale"] == 1
    # per-image mode re-runs a job when its key settings change: the same images
    changed = [key_settings(SETTINGS, i.raw_path) != key_settings(off, i.raw_path) for i in items]
    assert dict(zip(names, changed)) == {n: n in ("big.jpg", "huge.jpg") for n in names}
    assert key_settings(SETTINGS, None)["decode_scale"] == 1  # a known-bad image is never read


def test_header_after_large_app_segments_is_found_up_to_the_scan_limit(tmp_path: Path) -> None:
    """Key and decode read the same leading bytes: a frame header past them means a full decode."""
    from cxrflow.decode import HEADER_SCAN_BYTES, file_decode_scale

    data = write_jpeg(tmp_path / "a.jpg", radiograph(7, 1024, 1024)).read_bytes()
    app = b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)  # one maximal APP2 segment

    def with_apps(count: int) -> Path:
        path = tmp_path / f"apps{count}.jpg"
        path.write_bytes(data[:2] + app * count + data[2:])
        return path

    near, far = with_apps(2), with_apps(HEADER_SCAN_BYTES // len(app) + 1)
    assert file_decode_scale(near, 448) == 2 and decode_image(near, 448).scale == 2
    assert file_decode_scale(far, 448) == 1 and decode_image(far, 448).scale == 1
