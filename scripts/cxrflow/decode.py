"""Image file -> 8-bit array, with every way a file can be bad turned into an ``ImageError``.

Raw collections mix JPEG/PNG from papers (gray, BGR, BGRA, 16-bit) and DICOM from
hospitals. Downstream steps only ever see uint8 gray (H, W) or BGR (H, W, 3).
"""

from __future__ import annotations

import io
import math
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
# Reduced (DCT-domain) decoding: libjpeg scales by 1/2, 1/4, 1/8 while decoding, which
# skips most of the IDCT and colour work. Only 8-bit Huffman-coded JPEGs (baseline,
# extended, progressive) with gray or 3-channel colour take it; anything else decodes
# in full as before (PNG, 16-bit, lossless or arithmetic-coded JPEG, CMYK, DICOM).
REDUCTIONS: tuple[int, ...] = (8, 4, 2)
REDUCIBLE_SOF = frozenset({0xC0, 0xC1, 0xC2})
# The frame header must lie within this many leading bytes (EXIF/ICC segments come
# first); the content key reads the same prefix, so both pick the same scale.
HEADER_SCAN_BYTES = 1 << 20
_FIRST_READ = 1 << 16  # enough for the frame header of almost every file
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
# IGNORE_ORIENTATION: the full path (IMREAD_UNCHANGED) ignores EXIF rotation too.
_REDUCED_FLAGS: dict[tuple[int, int], int] = {
    (2, 1): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, 1): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (8, 1): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    (2, 3): cv2.IMREAD_REDUCED_COLOR_2,
    (4, 3): cv2.IMREAD_REDUCED_COLOR_4,
    (8, 3): cv2.IMREAD_REDUCED_COLOR_8,
}


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
    scale: int = 1  # pixels are the original reduced by this factor (ceil of each side)


@dataclass(frozen=True)
class JpegFrame:
    """What a JPEG's frame header (SOFn) says, read without decoding."""

    marker: int  # 0xC0..0xCF: the coding process (baseline, progressive, lossless, ...)
    precision: int  # bits per sample
    width: int
    height: int
    components: int


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """The frame header of a JPEG, or None (not a JPEG, or no SOF in the first HEADER_SCAN_BYTES).

    OpenCV has no header-only call and Pillow is not a dependency of the project, so this
    walks the marker segments up to the first SOF: a few dozen bytes read, microseconds,
    against milliseconds for a decode.
    """
    if not data.startswith(JPEG_SOI):
        return None
    end = min(len(data), HEADER_SCAN_BYTES)
    pos = 2
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a segment
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan: no frame header came
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 8 or pos + 10 > end:
                return None
            seg = data[pos + 4 : pos + 10]
            return JpegFrame(
                marker=marker,
                precision=seg[0],
                height=int.from_bytes(seg[1:3], "big"),
                width=int.from_bytes(seg[3:5], "big"),
                components=seg[5],
            )
        pos += 2 + length
    return None


def reduced_scale(frame: JpegFrame | None, keep_short_side: int) -> int:
    """The largest reduction (8, 4, 2) whose decoded short side is still >= keep_short_side; 1 = full.

    ``keep_short_side`` 0 turns reduction off. libjpeg rounds each reduced side up.
    """
    if (
        keep_short_side <= 0
        or frame is None
        or frame.marker not in REDUCIBLE_SOF
        or frame.precision != 8
        or frame.components not in (1, 3)
        or min(frame.width, frame.height) == 0
    ):
        return 1
    short = min(frame.width, frame.height)
    for scale in REDUCTIONS:
        if math.ceil(short / scale) >= keep_short_side:
            return scale
    return 1


def file_decode_scale(path: str | Path, keep_short_side: int) -> int:
    """reduced_scale of a file from its leading bytes; 1 when it cannot be read (decoding will say why)."""
    if keep_short_side <= 0:
        return 1
    try:
        with open(path, "rb") as handle:
            head = handle.read(_FIRST_READ)
            frame = jpeg_frame(head)
            if frame is None and len(head) == _FIRST_READ:  # the header may go on (large EXIF/ICC)
                frame = jpeg_frame(head + handle.read(HEADER_SCAN_BYTES - _FIRST_READ))
    except OSError:
        return 1
    return reduced_scale(frame, keep_short_side)


def decode_image(path: Path, keep_short_side: int = 0) -> DecodedImage:
    """Read and decode one file; raise ``ImageError`` for missing, empty, truncated or undecodable files.

    ``keep_short_side`` > 0 lets a JPEG decode reduced (see reduced_scale) as long as its
    short side keeps that many pixels; ``scale`` in the result says which factor was used.
    """
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
    return decode_raster(data, keep_short_side)


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


def decode_raster(data: bytes, keep_short_side: int = 0) -> DecodedImage:
    """Decode JPEG/PNG/other cv2 formats as stored (no EXIF rotation, no colour conversion)."""
    check_complete(data)
    frame = jpeg_frame(data)
    scale = reduced_scale(frame, keep_short_side)
    if frame is not None and scale > 1:
        reduced = decode_reduced(data, frame, scale)
        if reduced is not None:
            return reduced
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


def decode_reduced(data: bytes, frame: JpegFrame, scale: int) -> DecodedImage | None:
    """libjpeg's scaled decode; None when its result is not the expected size (the full path decides)."""
    try:
        arr = cv2.imdecode(
            np.frombuffer(data, np.uint8),
            _REDUCED_FLAGS[(scale, frame.components)] | cv2.IMREAD_IGNORE_ORIENTATION,
        )
    except cv2.error:
        return None
    expected = (math.ceil(frame.height / scale), math.ceil(frame.width / scale))
    if arr is None or arr.dtype != np.uint8 or arr.shape[:2] != expected:
        return None
    return DecodedImage(
        pixels=np.ascontiguousarray(arr),
        orig_width=frame.width,
        orig_height=frame.height,
        orig_channels=frame.components,
        orig_dtype="uint8",
        scale=scale,
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
