"""One image end to end: decode -> black-bar crop -> resize -> gray PNG + record JSON.

Called once per image (in a worker process or a thread) by the preprocessing rules.
A bad image never vanishes and never stops a run: whatever goes wrong while reading,
decoding, cropping, resizing or encoding one image quarantines that image with its
reason (``ImageError``: a known kind of bad input; anything else: ``internal error:
<type>: <message>``, with the traceback kept in the record). Only a failure to write
into results/ (disk full, permissions) is not about the image: it raises
``OutputError`` and fails the job.
"""

from __future__ import annotations

import json
import math
import os
import traceback
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .crop import box_in_original, crop_black_bars, resize_square
from .decode import ImageError, decode_image, file_decode_scale

# Many images run in parallel threads/jobs; OpenCV's own pool would oversubscribe the cores.
cv2.setNumThreads(1)

RECORD_KEYS: tuple[str, ...] = (
    "image_id",
    "raw_path",
    "status",
    "reason",
    "orig_width",
    "orig_height",
    "orig_channels",
    "orig_dtype",
    "decode_scale",
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
    "rows_removed",
    "cols_removed",
    "output_path",
    "output_width",
    "output_height",
    "format",
    "note",
    "traceback",
)
INTERNAL_ERROR = "internal error"
# The `preprocess` config keys that decide an image's output: process_image's settings
# and the batch cache key. Others (batch_size, max_quarantined_share) only say how jobs
# are cut or when to stop, and must not re-crop anything when they change.
CROP_KEYS: tuple[str, ...] = (
    "size",
    "black_threshold",
    "black_fraction",
    "protect",
    "interpolation",
    "min_side",
    "reduced_decode",
    "decode_margin",
    "max_pixels",
)
# Of CROP_KEYS, these only choose each image's decode scale; the content key holds the
# scale they give for that image instead, so changing them re-crops only the images
# whose scale changes (a PNG, or a JPEG too small to reduce, keeps its crop).
DECODE_KEYS: tuple[str, ...] = ("reduced_decode", "decode_margin")


def crop_settings(preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """The crop settings of a validated `preprocess` config section."""
    return {key: preprocess[key] for key in CROP_KEYS}


def keep_short_side(size: int, reduced_decode: bool, decode_margin: float) -> int:
    """Pixels the reduced decode must leave on the short side; 0 = decode in full."""
    return math.ceil(decode_margin * size) if reduced_decode else 0


def key_settings(settings: Mapping[str, Any], raw_path: str | Path | None) -> dict[str, Any]:
    """The settings as they decide this image's output: the decode keys replaced by its scale.

    Reads the file's header only (decode.file_decode_scale); ``raw_path`` None (a known
    bad image) or an unreadable file counts as scale 1, which is what decoding it would use.
    """
    keep = keep_short_side(settings["size"], settings["reduced_decode"], settings["decode_margin"])
    scale = file_decode_scale(raw_path, keep) if raw_path is not None else 1
    return {**{k: v for k, v in settings.items() if k not in DECODE_KEYS}, "decode_scale": scale}


class OutputError(OSError):
    """Writing into results/ failed: not a problem of the image, so the job must fail."""


def process_image(
    image_id: str,
    raw_path: str | Path,
    out_png: str | Path,
    out_json: str | Path,
    *,
    size: int,
    black_threshold: float,
    black_fraction: float,
    protect: tuple[float, float] | list[float],
    interpolation: str,
    min_side: int,
    reduced_decode: bool,
    decode_margin: float,
    max_pixels: int | None = None,
    problem: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the cropped gray PNG (if the image is good) and its record JSON, once; return the record.

    ``problem`` non-empty means the caller already knows the image is bad (missing file,
    unsafe path): it is recorded as the quarantine reason without touching the file.
    ``extra`` fields (the batch cache key) go into the same JSON, written after the PNG.
    ``reduced_decode``: a JPEG large enough decodes at 1/2, 1/4 or 1/8 scale, keeping at
    least ``decode_margin`` x ``size`` pixels on its short side; the black-bar box is found
    there and recorded in original pixels, with ``decode_scale``. ``max_pixels`` (None: the
    schema default) refuses an image whose header declares more pixels, before decoding it.
    ``format`` and ``note`` record what the content was and what decoding did beyond the
    plain read (EXIF orientation, first frame, trailing data). Raises only ``OutputError``.
    """
    out_png, out_json = Path(out_png), Path(out_json)
    record = empty_record(image_id, raw_path)
    if problem:
        return quarantine(record, problem, out_png, out_json, extra)
    try:
        keep = keep_short_side(size, reduced_decode, decode_margin)
        decoded = decode_image(Path(raw_path), keep, max_pixels)
        record.update(
            format=decoded.format,
            note=decoded.note,
            orig_width=decoded.orig_width,
            orig_height=decoded.orig_height,
            orig_channels=decoded.orig_channels,
            orig_dtype=decoded.orig_dtype,
            decode_scale=decoded.scale,
        )
        check_size(decoded.orig_width, decoded.orig_height, min_side, "image")
        crop = crop_black_bars(decoded.pixels, black_threshold, black_fraction, (protect[0], protect[1]))
        box, rows_removed, cols_removed = box_in_original(crop, decoded.scale, decoded.orig_width, decoded.orig_height)
        crop_w, crop_h = decoded.orig_width - cols_removed, decoded.orig_height - rows_removed
        check_size(crop_w, crop_h, min_side, "crop")
        out = resize_square(to_gray(crop.image), size, interpolation)
        png = encode_png(out)
    except ImageError as exc:
        return quarantine(record, exc.reason, out_png, out_json, extra)
    except Exception as exc:  # noqa: BLE001 - any other failure is this image's, not the run's
        record["traceback"] = traceback.format_exc()
        reason = f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}"
        return quarantine(record, reason, out_png, out_json, extra)
    write_output(out_png, png)
    x0, y0, x1, y1 = box
    record.update(
        status="ok",
        crop_x0=x0,
        crop_y0=y0,
        crop_x1=x1,
        crop_y1=y1,
        rows_removed=rows_removed,
        cols_removed=cols_removed,
        output_path=str(out_png),
        output_width=int(out.shape[1]),
        output_height=int(out.shape[0]),
    )
    write_record(out_json, record, extra)
    return record


def check_size(width: int, height: int, min_side: int, what: str) -> None:
    """A side under ``min_side`` cannot give a meaningful ``size`` x ``size`` image."""
    if min(width, height) < min_side:
        raise ImageError(f"too small: {what} {width}x{height} px, under preprocess.min_side {min_side}")


def empty_record(image_id: str, raw_path: str | Path) -> dict[str, Any]:
    """All keys present from the start so every record has the same schema; unknowns are null."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(image_id=image_id, raw_path=str(raw_path), status="", reason="", output_path="", format="", note="")
    return record


def quarantine(
    record: dict[str, Any],
    reason: str,
    out_png: Path,
    out_json: Path,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the reason and make sure no stale PNG from an earlier run survives."""
    record.update(status="quarantined", reason=reason, output_path="")
    try:
        out_png.unlink(missing_ok=True)
    except OSError as err:
        raise OutputError(f"cannot remove the stale output {out_png}: {err}") from err
    write_record(out_json, record, extra)
    return record


def write_output(path: Path, data: bytes) -> None:
    """atomic_write_bytes into results/; its failure is the job's, not the image's."""
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err}") from err


def write_record(path: Path, record: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> None:
    """The record JSON, with the caller's extra fields, in one atomic write."""
    payload = {**record, **(extra or {})}
    write_output(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def to_gray(img: np.ndarray) -> np.ndarray:
    """Luminance gray for the saved PNG; done after the crop, whose rule uses the unweighted mean."""
    if img.ndim == 2:
        return img
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the target folder + os.replace: readers never see a half-written file.

    os.open with 0o666 keeps the usual umask permissions (mkstemp would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_leftover_temp_files(root: Path) -> int:
    """Delete the temporary files (``atomic_write_bytes``' names) that a killed run left under ``root``;
    call only when no job writes there. Their images were written again by the run that recovered
    (a record exists only beside its finished image), so nothing is lost; the count is returned."""
    removed = 0
    for path in root.rglob(".*.tmp"):
        name = path.name.rsplit(".", 2)
        if len(name) == 3 and len(name[1]) == 32 and all(c in "0123456789abcdef" for c in name[1]):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def encode_png(img: np.ndarray) -> bytes:
    """Encode in memory (cv2.imwrite picks the format from the temp name, so it cannot be used)."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed on a {img.shape} {img.dtype} image")
    return buf.tobytes()
