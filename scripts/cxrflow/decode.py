"""Image file -> 8-bit array, with every way a file can be bad turned into an ``ImageError``.

Raw collections mix JPEG/PNG/WebP/GIF from papers and the web (gray, BGR, BGRA, 16-bit)
and DICOM from hospitals. The format is told by the content (``sniff_format``), never by
the extension: PACS exports have none, and a web page saved as ``.dcm`` is not DICOM.
Every decode first reads the image header and refuses more than ``max_pixels`` pixels
(``too large: W x H``), so a small file declaring a huge image never takes the memory.
Downstream steps only ever see uint8 gray (H, W) or BGR (H, W, 3), upright as a viewer
shows it (EXIF orientation applied).
"""

from __future__ import annotations

import functools
import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

# The size check below (max_pixels, read from the header) replaces Pillow's own bomb
# guard, which would raise before the size is known and give no reason to record.
Image.MAX_IMAGE_PIXELS = None

JPEG_SOI = b"\xff\xd8"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The whole IEND chunk (zero length, type, CRC): a 12-byte match cannot occur by chance.
PNG_IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"
DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
# Leading bytes of each raster format (TIFF: little- and big-endian; WebP: RIFF....WEBP).
SIGNATURES: tuple[tuple[str, bytes], ...] = (
    ("png", PNG_SIGNATURE),
    ("jpeg", b"\xff\xd8\xff"),
    ("gif", b"GIF87a"),
    ("gif", b"GIF89a"),
    ("tiff", b"II*\x00"),
    ("tiff", b"MM\x00*"),
    ("bmp", b"BM"),
)
# Decoded with Pillow (first frame): OpenCV reads no GIF and only still WebP.
PILLOW_FORMATS = frozenset({"gif", "webp"})
# The optional extra that brings decoders for compressed DICOM (pyproject.toml).
DICOM_EXTRA = "pip install 'cxrflow[dicom]'"
# EXIF orientation -> (rotation of cv2.rotate or None, flip code of cv2.flip or None), as viewers apply it.
_ORIENTATIONS: dict[int, tuple[int | None, int | None]] = {
    2: (None, 1),
    3: (cv2.ROTATE_180, None),
    4: (None, 0),
    5: (cv2.ROTATE_90_CLOCKWISE, 1),
    6: (cv2.ROTATE_90_CLOCKWISE, None),
    7: (cv2.ROTATE_90_COUNTERCLOCKWISE, 1),
    8: (cv2.ROTATE_90_COUNTERCLOCKWISE, None),
}
_EXIF_ORIENTATION = 0x0112
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
    format: str = ""  # what the content is: dicom, png, jpeg, gif, webp, tiff, bmp
    note: str = ""  # what was done beyond a plain decode (orientation, first frame, trailing data)


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


@functools.cache
def default_max_pixels() -> int:
    """``preprocess.max_pixels`` as the schema defaults it, for callers without a config."""
    from .config import load_schema

    return int(load_schema()["properties"]["preprocess"]["properties"]["max_pixels"]["default"])


def decode_image(path: Path, keep_short_side: int = 0, max_pixels: int | None = None) -> DecodedImage:
    """Read and decode one file; raise ``ImageError`` for missing, empty, truncated, too large or undecodable files.

    ``keep_short_side`` > 0 lets a JPEG decode reduced (see reduced_scale) as long as its
    short side keeps that many pixels; ``scale`` in the result says which factor was used.
    ``max_pixels`` (None: the schema default) bounds width x height, checked on the header
    before any pixel is decoded.
    """
    path = Path(path)
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
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
    fmt = sniff_format(data)
    if fmt is None:
        return decode_dicom(data, limit, magic=False)
    if fmt == "dicom":
        return decode_dicom(data, limit, magic=True)
    return decode_raster(data, keep_short_side, limit)


def sniff_format(data: bytes) -> str | None:
    """The format by content: ``dicom`` (DICM magic after the preamble) or a raster
    signature; None when neither (a DICOM file without preamble, or not an image)."""
    if data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC:
        return "dicom"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for fmt, signature in SIGNATURES:
        if data.startswith(signature):
            return fmt
    return None


def not_an_image_reason(data: bytes) -> str:
    """A true reason for content that is neither DICOM nor a known raster format."""
    head = data[:1024]
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in lowered:
        return "unreadable: not an image but an HTML/XML page"
    if head and sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / len(head) > 0.95:
        return "unreadable: not an image but a text file"
    return "unreadable: unknown format (not DICOM, PNG, JPEG, GIF, WebP, TIFF or BMP)"


def jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan marker (after every header segment, EXIF thumbnails included)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xD9:
            return None
        if marker == 0xDA:
            return pos
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        pos += 2 + length
    return None


def jpeg_image_end(data: bytes) -> int:
    """Bytes up to and including the end-of-image marker that follows the scans; ``ImageError`` if none.

    In entropy-coded data 0xFF is always followed by 0x00 or a marker, so the first EOI
    after the first scan is the image's end; what follows (camera or web junk) is data
    viewers ignore. An EOI inside an EXIF thumbnail lies before the scan and does not count.
    """
    scan = jpeg_scan_start(data)
    end = data.find(JPEG_EOI, scan) if scan is not None else -1
    if end < 0:
        raise ImageError("truncated file")
    return end + 2


def check_complete(data: bytes) -> None:
    """Reject truncated JPEG/PNG: cv2 decodes them anyway and fills the missing part with grey."""
    if data.startswith(JPEG_SOI):
        jpeg_image_end(data)
    elif data.startswith(PNG_SIGNATURE):
        if data.rfind(PNG_IEND_CHUNK) < 0:
            raise ImageError("truncated file")


@dataclass(frozen=True)
class Header:
    """What a raster file's header says, read without decoding pixels."""

    format: str
    width: int
    height: int
    frames: int
    orientation: int  # EXIF orientation, 1 = as stored


def raster_header(data: bytes, fmt: str, max_pixels: int) -> Header | None:
    """Size, frame count and EXIF orientation from the header (Pillow opens lazily); None if Pillow cannot.

    The size is checked (check_pixels) before anything else is asked: Pillow decodes a whole
    PNG to look for an EXIF chunk after the pixels, so a PNG's EXIF is read only when its
    header already holds one.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            check_pixels(int(width), int(height), max_pixels)
            frames = int(getattr(img, "n_frames", 1) or 1) if fmt in PILLOW_FORMATS else 1
            orientation = 1
            if fmt != "png" or "exif" in img.info:
                try:
                    orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
                except Exception:  # noqa: BLE001 - a damaged EXIF block must not lose the image
                    orientation = 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        return None
    return Header(fmt, int(width), int(height), frames, orientation if orientation in _ORIENTATIONS else 1)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """The memory guard: refuse an image whose header declares more than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise ImageError(f"too large: {width} x {height} px, over preprocess.max_pixels {max_pixels}")


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation as viewers do (rotate, then mirror)."""
    rotate, flip = _ORIENTATIONS.get(orientation, (None, None))
    if rotate is not None:
        pixels = cv2.rotate(pixels, rotate)
    if flip is not None:
        pixels = cv2.flip(pixels, flip)
    return np.ascontiguousarray(pixels)


def decode_raster(data: bytes, keep_short_side: int = 0, max_pixels: int | None = None) -> DecodedImage:
    """Decode PNG/JPEG/GIF/WebP/TIFF/BMP upright (EXIF orientation applied), no colour conversion."""
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    fmt = sniff_format(data) or "unknown"
    notes = []
    if data.startswith(JPEG_SOI):
        end = jpeg_image_end(data)
        if len(data.rstrip(b"\x00")) > end:
            notes.append(f"{len(data) - end} bytes after the JPEG end marker ignored")
            data = data[:end]
    else:
        check_complete(data)
    header = raster_header(data, fmt, limit)
    frame = jpeg_frame(data)
    if frame is not None:
        check_pixels(frame.width, frame.height, limit)
    if header is None and frame is None:  # no size known: never decode blind
        raise ImageError(f"unreadable: no readable {fmt} header")
    orientation = header.orientation if header is not None else 1
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
    if header is not None and header.frames > 1:
        notes.append(f"first of {header.frames} frames")
    if fmt in PILLOW_FORMATS:
        decoded = decode_pillow(data)
    else:
        decoded = decode_cv2(data, frame, keep_short_side)
    pixels = orient(decoded.pixels, orientation) if orientation != 1 else decoded.pixels
    width, height = decoded.orig_width, decoded.orig_height
    if orientation >= 5:  # the four orientations that swap the sides
        width, height = height, width
    return DecodedImage(
        pixels=pixels,
        orig_width=width,
        orig_height=height,
        orig_channels=decoded.orig_channels,
        orig_dtype=decoded.orig_dtype,
        scale=decoded.scale,
        format=fmt,
        note="; ".join(notes),
    )


def decode_pillow(data: bytes) -> DecodedImage:
    """First frame of a GIF or WebP through Pillow, as gray, BGR or BGRA."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            mode = img.mode
            if mode in ("L", "I;16", "I", "F"):
                arr = np.asarray(img)
            elif mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in img.info):
                arr = cv2.cvtColor(np.asarray(img.convert("RGBA")), cv2.COLOR_RGBA2BGRA)
            elif mode == "P" and _palette_is_gray(img):
                arr = np.asarray(img.convert("L"))
            else:
                arr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"unreadable: {type(exc).__name__}: {exc}") from None
    if arr.size == 0:
        raise ImageError("unreadable: not a decodable image")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return DecodedImage(
        pixels=to_uint8_bgr_or_gray(arr),
        orig_width=int(arr.shape[1]),
        orig_height=int(arr.shape[0]),
        orig_channels=int(channels),
        orig_dtype=str(arr.dtype),
    )


def _palette_is_gray(img: Image.Image) -> bool:
    palette = np.asarray(img.getpalette() or [], np.uint8).reshape(-1, 3)
    return bool(palette.size) and bool((palette == palette[:, :1]).all())


def decode_cv2(data: bytes, frame: JpegFrame | None, keep_short_side: int) -> DecodedImage:
    """OpenCV's decode as stored (orientation ignored: decode_raster applies it once, for every path)."""
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


def decode_dicom(data: bytes, max_pixels: int | None = None, magic: bool = True) -> DecodedImage:
    """DICOM -> 8-bit gray as a reader sees it: modality LUT, VOI window, MONOCHROME1 inverted.

    ``magic`` False: the file has neither the DICM magic nor a raster signature; it is read
    as DICOM without preamble (forced), and anything that is not DICOM gets a true reason
    (an HTML page, a text file, an unknown format) instead of "DICOM without pixel data".
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        if not magic:
            raise ImageError(not_an_image_reason(data)) from None
        raise ImageError(f"unreadable: {type(exc).__name__}: {exc}") from None
    has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
    if not magic and not has_pixels and not _looks_like_dicom(ds):
        raise ImageError(not_an_image_reason(data))
    if not has_pixels:
        raise ImageError("unreadable: DICOM without pixel data")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    check_pixels(cols, rows, limit)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # missing decoder plugin, truncated pixel data, bad tags
        raise ImageError(dicom_pixel_reason(ds, exc)) from None
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
        format="dicom",
        note="" if magic else "DICOM without preamble",
    )


def _looks_like_dicom(ds: object) -> bool:
    """A forced read of non-DICOM bytes yields a dataset of nonsense tags; real ones have these."""
    return any(key in ds for key in ("SOPClassUID", "Modality", "StudyInstanceUID", "Rows"))  # type: ignore[operator]


def dicom_pixel_reason(ds: object, exc: Exception) -> str:
    """Why pixel data would not decode; a compressed transfer syntax without its decoder says which extra to install."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and getattr(syntax, "is_compressed", False):
        text = str(exc)
        if any(word in text.lower() for word in ("plugin", "decoder", "no pixel data handler", "unable to decode")):
            return f"unsupported compression: {syntax.name} ({syntax}); install the decoders: {DICOM_EXTRA}"
    return f"unreadable: {type(exc).__name__}: {exc}"
