"""One image end to end: decode -> black-bar crop -> resize -> gray PNG + record JSON.

Called once per image (in a thread) by the preprocessing rule. A bad image never
vanishes: it yields a "quarantined" record with its reason and no PNG. Anything
that is not an ``ImageError`` is a bug and propagates.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .crop import crop_black_bars, resize_square
from .decode import ImageError, decode_image

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
    "crop_x0",
    "crop_y0",
    "crop_x1",
    "crop_y1",
    "rows_removed",
    "cols_removed",
    "output_path",
    "output_width",
    "output_height",
)


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
    problem: str = "",
) -> dict[str, Any]:
    """Write the cropped gray PNG (if the image is good) and its record JSON; return the record.

    ``problem`` non-empty means the caller already knows the image is bad (missing file,
    unsafe path): it is recorded as the quarantine reason without touching the file.
    """
    out_png, out_json = Path(out_png), Path(out_json)
    record = empty_record(image_id, raw_path)
    if problem:
        return quarantine(record, problem, out_png, out_json)
    try:
        decoded = decode_image(Path(raw_path))
        record.update(
            orig_width=decoded.orig_width,
            orig_height=decoded.orig_height,
            orig_channels=decoded.orig_channels,
            orig_dtype=decoded.orig_dtype,
        )
        crop = crop_black_bars(
            decoded.pixels, black_threshold, black_fraction, (protect[0], protect[1])
        )
    except ImageError as exc:
        return quarantine(record, exc.reason, out_png, out_json)
    gray = to_gray(crop.image)
    out = resize_square(gray, size, interpolation)
    write_png(out_png, out)
    x0, y0, x1, y1 = crop.box
    record.update(
        status="ok",
        crop_x0=x0,
        crop_y0=y0,
        crop_x1=x1,
        crop_y1=y1,
        rows_removed=crop.rows_removed,
        cols_removed=crop.cols_removed,
        output_path=str(out_png),
        output_width=int(out.shape[1]),
        output_height=int(out.shape[0]),
    )
    write_json(out_json, record)
    return record


def empty_record(image_id: str, raw_path: str | Path) -> dict[str, Any]:
    """All keys present from the start so every record has the same schema; unknowns are null."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(image_id=image_id, raw_path=str(raw_path), status="", reason="", output_path="")
    return record


def quarantine(
    record: dict[str, Any], reason: str, out_png: Path, out_json: Path
) -> dict[str, Any]:
    """Record the reason and make sure no stale PNG from an earlier run survives."""
    record.update(status="quarantined", reason=reason, output_path="")
    out_png.unlink(missing_ok=True)
    write_json(out_json, record)
    return record


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


def write_png(path: Path, img: np.ndarray) -> None:
    """Encode in memory (cv2.imwrite picks the format from the temp name, so it cannot be used)."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for {path}")
    atomic_write_bytes(path, buf.tobytes())


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Pretty, key-ordered JSON with a trailing newline (stable diffs)."""
    atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
