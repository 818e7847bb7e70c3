"""Benchmark of the per-image preprocessing on synthetic 1024x1024 colour JPEGs.

Prints ms/image for (a) our crop step alone, (b) the naive port of the original
(bench/naive_crop.py, seconds per image, so only a few), (c) the floor of any
preprocessing: imread + resize(224, INTER_AREA) + imwrite, and (d) our full
process_image (decode + crop + resize + PNG + JSON); then naive/ours and full/floor.

    .venv/bin/python bench/crop_kernel.py --images 40 --naive-images 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for naive_crop beside this file

from naive_crop import naive_crop  # noqa: E402

from cxrflow.crop import crop_black_bars, resize_square  # noqa: E402
from cxrflow.preprocess import process_image  # noqa: E402

SIDE = 1024
SETTINGS = dict(size=224, black_threshold=40, black_fraction=0.5, protect=(0.195, 0.781), interpolation="area")


def synthetic_xray(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Bright body, darker lungs, texture, and black bars (multiples of 8: JPEG-block aligned)."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    body = 170 - 60 * ((xx - 0.5) ** 2 + (yy - 0.55) ** 2)
    for cx in (0.33, 0.67):
        body -= 45 * np.exp(-(((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    body += rng.normal(0, 8, body.shape).astype(np.float32)
    gray = np.clip(cv2.GaussianBlur(body, (0, 0), 2), 60, 235).astype(np.uint8)
    img = cv2.merge([gray, gray, np.clip(gray.astype(np.int16) + 4, 0, 255).astype(np.uint8)])
    top, bottom, left, right = (int(v) * 8 for v in rng.integers(0, 18, 4))
    img[:top] = 0
    img[SIDE - bottom :] = 0
    img[:, :left] = 0
    img[:, SIDE - right :] = 0
    return img, (left, top, SIDE - right, SIDE - bottom)


def ms_per_item(func: Callable[[int], object], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        func(i)
    return (time.perf_counter() - start) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images for (a), (c), (d)")
    parser.add_argument("--naive-images", type=int, default=1, help="images for (b), seconds each")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in the workflow: one image per thread
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths, boxes = [], []
        for i in range(args.images):
            img, box = synthetic_xray(rng)
            paths.append(root / f"img{i:04d}.jpg")
            cv2.imwrite(str(paths[-1]), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            boxes.append(box)
        decoded = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]

        def ours(i: int) -> object:
            return crop_black_bars(decoded[i], 40, 0.5, (0.195, 0.781))

        crop_ms = ms_per_item(ours, len(decoded))
        naive_n = min(args.naive_images, len(decoded))
        naive_ms = ms_per_item(lambda i: naive_crop(decoded[i]), naive_n) if naive_n else float("nan")

        def floor(i: int) -> None:
            img = cv2.imread(str(paths[i]), cv2.IMREAD_UNCHANGED)
            small = cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / f"floor{i}.png"), small)

        floor_ms = ms_per_item(floor, len(paths))

        def full(i: int) -> None:
            out = root / "out"
            process_image(f"img{i}", paths[i], out / f"{i}.png", out / f"{i}.json", **SETTINGS)

        full_ms = ms_per_item(full, len(paths))

        # sanity: bars of multiples of 8 survive JPEG, so the crop must find them
        found = 0
        for img, (x0, y0, x1, y1) in zip(decoded, boxes):
            res = crop_black_bars(img, 40, 0.5, (0.195, 0.781))
            h, w = y1 - y0, x1 - x0
            d = abs(h - w)
            if h > w:
                y0, y1 = y0 + d // 2, y1 - (d - d // 2)
            else:
                x0, x1 = x0 + d // 2, x1 - (d - d // 2)
            found += res.box == (x0, y0, x1, y1)
            resize_square(res.image, 224, "area")

    print(f"synthetic {SIDE}x{SIDE} 3-channel JPEGs, cv2 threads=1, opencv {cv2.__version__}")
    print(f"exact box found: {found}/{len(decoded)}")
    print(f"{'step':<58}{'images':>7}{'ms/image':>11}")
    rows = [
        ("(a) ours: crop step alone (crop_black_bars)", len(decoded), crop_ms),
        ("(b) naive port of the original (bench/naive_crop.py)", naive_n, naive_ms),
        ("(c) floor: imread + resize(224, AREA) + imwrite PNG", len(paths), floor_ms),
        ("(d) ours: process_image (decode+crop+resize+PNG+JSON)", len(paths), full_ms),
    ]
    for name, n, ms in rows:
        print(f"{name:<58}{n:>7}{ms:>11.2f}")
    print(f"naive / ours (crop step): {naive_ms / crop_ms:,.0f}x")
    print(f"full / floor:             {full_ms / floor_ms:.2f}x")


if __name__ == "__main__":
    main()
