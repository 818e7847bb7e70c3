"""Embedded demo data: synthetic chest X-rays in the real collections' on-disk formats.

A fresh clone must run offline, so the default sources point at files this module
writes: an ieee8023-style ``metadata.csv`` + ``images/`` (COVID-19, plus rows the
default filters must exclude) and an RSNA-style class table + JPEG folder (Normal,
plus excluded classes). COVID-19 images carry patchy lower/peripheral opacities,
so a model can learn the disease; black bars are far more common on Normal images,
the confounder the original article warns about. Everything derives from
``demo.seed``, and ``plan_demo`` needs no disk, so the workflow can list the demo
images at parse time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

LOG = logging.getLogger(__name__)
IEEE_CSV = "ieee8023/metadata.csv"
RSNA_CSV = "rsna/stage_2_detailed_class_info.csv"
# The March-2020 header exactly, trailing comma included (an unnamed empty last column).
IEEE_HEADER = [
    "Patientid",
    "offset",
    "sex",
    "age",
    "finding",
    "survival",
    "view",
    "modality",
    "date",
    "location",
    "filename",
    "doi",
    " url",
    "license",
    "clinical notes",
    "other notes",
    "",
]
JPEG_QUALITY = 90
PNG_COMPRESSION = 1  # noise makes PNG barely compressible: favour speed
_CANVAS = 256  # anatomy is drawn at this size, then resized: fast at any raw size
# Rows the default filters (COVID-19 / X-ray / PA; class Normal) must exclude.
_IEEE_EXTRAS = [("SARS", "PA", "X-ray")] * 2 + [("COVID-19", "AP", "X-ray")] * 2 + [("COVID-19", "Axial", "CT")]
_RSNA_EXTRAS = [("Lung Opacity", 2)] * 3 + [("No Lung Opacity / Not Normal", 1)]


@dataclass(frozen=True)
class _Image:
    path: str  # relative to demo.path
    height: int
    width: int
    opacities: bool
    bars: bool
    rgb: bool
    ct: bool
    seed: tuple[int, ...]


def _plan(demo: Mapping[str, Any]) -> tuple[dict[str, pd.DataFrame], list[_Image]]:
    covid, normal = demo["covid"], demo["normal"]
    if covid["patients"] > covid["images"]:
        raise ValueError(f"demo.covid.patients ({covid['patients']}) exceeds demo.covid.images ({covid['images']})")
    rng = np.random.default_rng([demo["seed"], 0])
    ieee_rows, rsna_rows, images = [], [], []

    # Width and height of each COVID-19 image: raw_size times a factor drawn from this range.
    # [1, 1] frames them exactly like the square Normal images; the draw happens either way,
    # so every other random choice (and so every other file) stays the same.
    low, high = covid["size_range"]  # the schema's default: mixed sizes, as in the real ieee8023 collection

    def size() -> tuple[int, int]:
        return tuple(int(round(demo["raw_size"] * f)) for f in rng.uniform(low, high, 2))

    # ieee8023: several images per patient, one id with a letter (the real `324a`).
    per_patient = 1 + rng.multinomial(covid["images"] - covid["patients"], [1 / covid["patients"]] * covid["patients"])
    barred = set(rng.choice(covid["images"], round(covid["bar_fraction"] * covid["images"]), replace=False).tolist())
    entries = [("COVID-19", "PA", "X-ray", p) for p, n in enumerate(per_patient) for _ in range(n)]
    for k, extra in enumerate(_IEEE_EXTRAS):
        entries.insert(int(rng.integers(0, len(entries) + 1)), (*extra, covid["patients"] + k))
    offsets: dict[int, int] = {}
    main = 0
    for i, (finding, view, modality, patient) in enumerate(entries):
        is_main = (finding, view, modality) == ("COVID-19", "PA", "X-ray")
        ext = "png" if rng.random() < 0.3 else "jpg"
        name = f"demo-{finding.lower().replace('-', '')}-{view.lower()}-{i:03d}.{ext}"
        height, width = size()
        pid = f"{patient + 1}a" if patient == 1 else str(patient + 1)
        offsets[patient] = offsets.get(patient, -1) + 1 + int(rng.integers(0, 4))
        ieee_rows.append(
            [
                pid,
                str(offsets[patient]),
                "MF"[patient % 2],
                str(30 + (patient * 7) % 50),
                finding,
                "",
                view,
                modality,
                "",
                "Synthetic",
                name,
                "",
                "",
                "CC0",
                "synthetic demo image",
                "",
                "",
            ]
        )
        images.append(
            _Image(
                f"ieee8023/images/{name}",
                height,
                width,
                opacities=finding != "Normal",
                bars=is_main and main in barred,
                rgb=bool(rng.random() < 0.4),
                ct=modality == "CT",
                seed=(demo["seed"], 1, i),
            )
        )
        main += is_main

    # RSNA: one row per box, so some patientIds repeat (Normal ones too, as asked of the reader).
    barred = set(rng.choice(normal["images"], round(normal["bar_fraction"] * normal["images"]), replace=False).tolist())
    patients = [("Normal", 1 + int(rng.random() < 0.15), k) for k in range(normal["images"])]
    patients += [(cls, rows, None) for cls, rows in _RSNA_EXTRAS]
    for i in rng.permutation(len(patients)):
        cls, rows, k = patients[i]
        pid = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        rsna_rows += [[pid, cls]] * rows
        images.append(
            _Image(
                f"rsna/stage_2_train_images_jpg/{pid}.jpg",
                demo["raw_size"],
                demo["raw_size"],
                opacities=cls == "Lung Opacity",
                bars=k is not None and k in barred,
                rgb=False,
                ct=False,
                seed=(demo["seed"], 2, int(i)),
            )
        )
    tables = {
        IEEE_CSV: pd.DataFrame(ieee_rows, columns=IEEE_HEADER, dtype=str),
        RSNA_CSV: pd.DataFrame(rsna_rows, columns=["patientId", "class"], dtype=str),
    }
    return tables, images


def plan_demo(demo: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Metadata tables the generator writes, keyed by path relative to demo.path; touches no disk."""
    return _plan(demo)[0]


def demo_files(demo: Mapping[str, Any]) -> list[str]:
    """Every file write_demo writes, relative to demo.path, metadata first."""
    tables, images = _plan(demo)
    return list(tables) + [image.path for image in images]


# ---------------------------------------------------------------- drawing
def _ellipse(canvas: np.ndarray, center, axes, angle: float, value: float) -> None:
    cv2.ellipse(
        canvas, (int(center[0]), int(center[1])), (max(int(axes[0]), 1), max(int(axes[1]), 1)), angle, 0, 360, value, -1
    )


def _chest(rng: np.random.Generator, height: int, width: int, opacities: bool) -> np.ndarray:
    """Frontal chest radiograph look-alike, float32 in 0..255 at canvas scale."""
    scale = _CANVAS / max(height, width)
    h, w = max(int(height * scale), 16), max(int(width * scale), 16)
    j = lambda spread: rng.uniform(-spread, spread)  # noqa: E731  (small anatomical jitter)
    body_value = rng.uniform(125, 165)
    img = np.full((h, w), rng.uniform(5, 25), np.float32)
    _ellipse(img, (w * (0.5 + j(0.02)), h * 0.9), (w * rng.uniform(0.42, 0.48), h * 0.8), 0, body_value)  # trunk
    for side in (-1, 1):  # shoulders
        _ellipse(img, (w * (0.5 + side * 0.3), h * 0.24), (w * 0.2, h * 0.1), side * -15, body_value - 10)
    _ellipse(img, (w * 0.5, h * 0.1), (w * 0.09, h * 0.15), 0, body_value)  # neck
    lungs = np.zeros((h, w), np.float32)
    cx, cy = w * 0.5, h * (0.5 + j(0.03))
    for side in (-1, 1):
        _ellipse(
            lungs,
            (cx + side * w * rng.uniform(0.17, 0.2), cy),
            (w * rng.uniform(0.13, 0.15), h * rng.uniform(0.27, 0.31)),
            side * rng.uniform(3, 9),
            1.0,
        )
    lungs = cv2.GaussianBlur(lungs, (0, 0), max(w * 0.012, 1))  # soft pleural edges
    gradient = np.linspace(1.0, 0.7, h, dtype=np.float32)[:, None]  # bases look denser
    img -= lungs * rng.uniform(65, 90) * gradient
    ribs = np.zeros((h, w), np.float32)
    thickness = max(int(h * 0.012), 1)
    for k in range(10):
        y = h * (0.22 + 0.055 * k)
        for side in (-1, 1):
            start, end = (180, 330) if side < 0 else (210, 360)
            cv2.ellipse(ribs, (int(cx), int(y)), (int(w * 0.36), int(h * 0.12)), 0, start, end, 1.0, thickness)
    img += ribs * lungs * rng.uniform(18, 30)
    cv2.rectangle(img, (int(cx - w * 0.03), int(h * 0.08)), (int(cx + w * 0.03), h), body_value + 25, -1)  # spine
    heart = np.zeros((h, w), np.float32)
    _ellipse(heart, (cx + w * rng.uniform(0.04, 0.07), h * 0.66), (w * rng.uniform(0.12, 0.15), h * 0.13), 20, 1.0)
    heart = cv2.GaussianBlur(heart, (0, 0), max(w * 0.01, 1))
    img = img * (1 - heart) + heart * (body_value + 5)
    for side in (-1, 1):  # clavicles
        cv2.line(
            img,
            (int(cx + side * w * 0.04), int(h * 0.2)),
            (int(cx + side * w * 0.3), int(h * 0.16)),
            body_value + 30,
            max(int(h * 0.02), 1),
        )
    if opacities:
        patches = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(3, 8))):
            side = rng.choice([-1, 1])
            x = cx + side * w * rng.uniform(0.2, 0.3)  # peripheral
            y = cy + h * rng.uniform(0.0, 0.22)  # lower zones
            _ellipse(
                patches,
                (x, y),
                (w * rng.uniform(0.04, 0.08), h * rng.uniform(0.04, 0.08)),
                rng.uniform(0, 180),
                rng.uniform(0.7, 1.0),
            )
        texture = cv2.resize(rng.uniform(0.2, 1.0, (h // 12 + 1, w // 12 + 1)).astype(np.float32), (w, h))
        patches = cv2.GaussianBlur(patches * texture, (0, 0), max(w * 0.02, 1))
        img += patches * cv2.GaussianBlur(lungs, (0, 0), 2) * rng.uniform(60, 85)
    return cv2.GaussianBlur(img, (0, 0), 1.2)


def _ct(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Axial CT slice look-alike (only a row the X-ray filter must drop)."""
    h, w = max(int(height * _CANVAS / max(height, width)), 16), max(int(width * _CANVAS / max(height, width)), 16)
    img = np.full((h, w), 5.0, np.float32)
    _ellipse(img, (w / 2, h / 2), (w * 0.42, h * 0.32), 0, 140)
    for side in (-1, 1):
        _ellipse(img, (w / 2 + side * w * 0.18, h * 0.47), (w * 0.14, h * 0.2), 0, 30 + rng.uniform(0, 10))
    _ellipse(img, (w / 2, h * 0.74), (w * 0.05, h * 0.05), 0, 230)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _add_bars(rng: np.random.Generator, img: np.ndarray) -> None:
    """Black bars top/bottom and/or left/right, 2-15 % of the side each (scanner/export borders)."""
    h, w = img.shape[:2]
    mode = rng.choice(["rows", "cols", "both"])
    if mode in ("rows", "both"):
        img[: int(h * rng.uniform(0.02, 0.15))] = 0
        img[h - int(h * rng.uniform(0.02, 0.15)) :] = 0
    if mode in ("cols", "both"):
        img[:, : int(w * rng.uniform(0.02, 0.15))] = 0
        img[:, w - int(w * rng.uniform(0.02, 0.15)) :] = 0


def render(image: _Image) -> np.ndarray:
    """One image as uint8 (gray, or BGR where image.rgb), at its full size."""
    rng = np.random.default_rng(list(image.seed))
    small = _ct(rng, image.height, image.width) if image.ct else _chest(rng, image.height, image.width, image.opacities)
    full = cv2.resize(small, (image.width, image.height), interpolation=cv2.INTER_LINEAR)
    full += rng.standard_normal(full.shape, dtype=np.float32) * np.float32(rng.uniform(3, 7))
    full = np.clip(full, 0, 255).astype(np.uint8)
    if image.bars:
        _add_bars(rng, full)
    if image.rgb:
        full = cv2.merge([full, full, full])
        full = np.clip(full.astype(np.float32) * rng.uniform(0.93, 1.0, 3).astype(np.float32), 0, 255).astype(np.uint8)
    return full


def _encode(image: np.ndarray, path: str) -> bytes:
    if path.endswith(".png"):
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    else:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    return data.tobytes()


def write_demo(demo: Mapping[str, Any], out_root: Path) -> None:
    """Write every file of demo_files under out_root, byte-identical on every run."""
    out_root = Path(out_root)
    tables, images = _plan(demo)
    for relative, table in tables.items():
        (out_root / relative).parent.mkdir(parents=True, exist_ok=True)
        (out_root / relative).write_bytes(table.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    for image in images:
        target = out_root / image.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_encode(render(image), image.path))
    LOG.info("wrote %d demo images and %d tables under %s", len(images), len(tables), out_root)
