"""Image file -> 8-bit array, with every way a file can be bad turned into an ``ImageError``.

Raw collections mix JPEG/PNG from papers (gray, BGR, BGRA, 16-bit) and DICOM from
hospitals. Downstream steps only ever see uint8 gray (H, W) or BGR (H, W, 3).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The whole IEND chunk (zero length, type, CRC): a 12-byte match cannot occur by chance.
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"


class ImageError(Exception):
    """A bad input image; ``reason`` is the short human string stored in its record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """8-bit pixels plus what the file held, so records can report the original format."""

    pixels: np.ndarray  # uint8, (H, W) gray or (H, W, 3) BGR
    orig_width: int
    orig_height: int
    orig_channels: int
    orig_dtype: str


def decode_image(path: Path) -> DecodedImage:
    """Read and decode one file; raise ``ImageError`` for missing, empty, truncated or undecodable files."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError("missing file") from None
    except IsADirectoryError:
        raise ImageError("unreadable: is a directory") from None
    except OSError as exc:
        raise ImageError(f"unreadable: {exc.strerror or exc}") from None
    if not data:
        raise ImageError("empty file")
    if is_dicom(path, data):
        return decode_dicom(data)
    return decode_raster(data)


def is_dicom(path: Path, data: bytes) -> bool:
    """DICOM by extension or by the preamble magic (files from PACS often have no extension)."""
    return (
        path.suffix.lower() == ".dcm"
        or data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC
    )


def check_complete(data: bytes) -> None:
    """Reject truncated JPEG/PNG: cv2 decodes them anyway and fills the missing part with grey."""
    if data.startswith(JPEG_SOI):
        if not data.rstrip(b"\x00").endswith(JPEG_EOI):
            raise ImageError("truncated file")
    elif data.startswith(PNG_SIGNATURE):
        if data.rfind(PNG_IEND_CHUNK) < 0:
            raise ImageError("truncated file")


def decode_raster(data: bytes) -> DecodedImage:
    """Decode JPEG/PNG/other cv2 formats as stored (no EXIF rotation, no colour conversion)."""
    check_complete(data)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"unreadable: {str(exc).strip().splitlines()[-1]}") from None
    if arr is None or arr.size == 0:
        raise ImageError("unreadable: not a decodable image")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    height, width = arr.shape[:2]
    return DecodedImage(
        pixels=to_uint8_bgr_or_gray(arr),
        orig_width=int(width),
        orig_height=int(height),
        orig_channels=int(channels),
        orig_dtype=str(arr.dtype),
    )


def to_uint8_bgr_or_gray(arr: np.ndarray) -> np.ndarray:
    """Drop alpha (composited over black, as a viewer shows it) and bring any depth to uint8."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = composite_over_black(arr)
    if arr.ndim == 3 and arr.shape[2] != 3:
        raise ImageError(f"unreadable: unsupported channel count {arr.shape[2]}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return minmax_uint8(arr)


def composite_over_black(arr: np.ndarray) -> np.ndarray:
    """Colour times alpha; the result keeps the input dtype so 16-bit data keeps its precision."""
    color, alpha = arr[:, :, :-1], arr[:, :, -1:]
    full = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
    if np.all(alpha == full):
        out = color
    else:
        out = (color.astype(np.float32) * (alpha.astype(np.float32) / full)).astype(arr.dtype)
    return out[:, :, 0] if out.shape[2] == 1 else np.ascontiguousarray(out)


def minmax_uint8(arr: np.ndarray) -> np.ndarray:
    """Stretch the image's own range to 0..255; a constant image carries no contrast -> zeros."""
    values = np.asarray(arr, dtype=np.float64)
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def decode_dicom(data: bytes) -> DecodedImage:
    """DICOM -> 8-bit gray as a reader sees it: modality LUT, VOI window, MONOCHROME1 inverted."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageError(f"unreadable: {type(exc).__name__}: {exc}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ImageError("unreadable: DICOM without pixel data")
    try:
        raw = ds.pixel_array
    except Exception as exc:  # missing decoder plugin, truncated pixel data, bad tags
        raise ImageError(f"unreadable: {type(exc).__name__}: {exc}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(f"unreadable: multi-frame DICOM ({frames} frames)")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    orig_dtype = str(raw.dtype)
    height, width = raw.shape[:2]
    if samples == 1:
        values = apply_modality_lut(raw, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds)
        gray = minmax_uint8(values)
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            gray = 255 - gray
    else:
        # pydicom hands colour data out as RGB; an X-ray in colour is a screenshot, gray is enough.
        rgb = raw if raw.dtype == np.uint8 else minmax_uint8(raw)
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return DecodedImage(
        pixels=np.ascontiguousarray(gray),
        orig_width=int(width),
        orig_height=int(height),
        orig_channels=samples,
        orig_dtype=orig_dtype,
    )
