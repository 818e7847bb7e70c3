"""Peak memory (max RSS) of one crop worker and of the copy search over N real-size images.

The images are synthetic radiographs at the sizes real collections hold (gray JPEGs with
the short side 1,800-3,000 pixels, a few colour ones, a few 16-bit PNGs), plus one PNG
whose header declares 30000 x 30000 pixels: the size guard (``preprocess.max_pixels``)
must refuse it from its header, so the peaks stay those of the largest real image.

Each measurement runs in a fresh child process; its ``ru_maxrss`` is the peak. The crop
worker calls ``process_image`` on every image in turn, as one worker of the crop pool does;
the copy search is ``copies.find_copies`` over the images the crop passed (the bomb is
not one of them, as in the workflow) with one process (``--workers`` > 1: the largest
of the parent and its decode workers).

    python bench/peak_memory.py                 # 1,000 images
    python bench/peak_memory.py --images 200    # a smaller run
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

BASELINE = "import cxrflow.preprocess, cxrflow.copies, cv2, numpy, pandas, pydicom, PIL"
CROP = """
import json, sys
from pathlib import Path
from cxrflow.config import with_defaults
from cxrflow.preprocess import crop_settings, process_image
paths = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
settings = crop_settings(with_defaults({"sources": {"x": {"format": "folders", "path": "."}}})["preprocess"])
status = {}
for i, p in enumerate(paths):
    r = process_image(f"i{i}", p, out / f"i{i}.png", out / f"i{i}.json", **settings)
    key = r["status"] + (": " + r["reason"].split(":")[0] if r["reason"] else "")
    status[key] = status.get(key, 0) + 1
print(json.dumps(status))
"""
COPIES = """
import json, sys
from pathlib import Path
from cxrflow import copies, copy_index
# Only images the crop passed reach the copy search (cxrflow.copy_groups): the bomb is not one of them.
paths = [p for p in json.loads(Path(sys.argv[1]).read_text()) if not p.endswith("bomb.png")]
pairs = copies.find_copies([f"i{i}" for i in range(len(paths))], paths, [None] * len(paths),
                           copy_index.schema_defaults(), int(sys.argv[2]))
print(json.dumps({"pairs": len(pairs)}))
"""


def radiograph(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth body with darker lungs, noise and black bars, drawn small and resized up (fast)."""
    small = rng.normal(150, 25, (height // 16, width // 16)).astype(np.float32)
    img = cv2.resize(cv2.GaussianBlur(small, (0, 0), 2), (width, height), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    img[: int(rng.integers(0, height // 10))] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def bomb_png(side: int = 30000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # Every row compressed in (about 0.9 MB at level 9): a real bomb, 900 MB once decoded.
    packer = zlib.compressobj(9)
    idat = b"".join([packer.compress(bytes((side + 1) * 1000)) for _ in range(side // 1000)] + [packer.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` images of real sizes (distinct sizes drawn once, then re-noised per image)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count - 1):
        height, width = int(rng.integers(1800, 3001)), int(rng.integers(1800, 3001))
        img = radiograph(rng, height, width)
        if i % 50 == 1:
            path = folder / f"{i}.png"
            cv2.imwrite(str(path), img.astype(np.uint16) * 257)  # 16-bit, as exported from DICOM
        elif i % 50 == 2:
            path = folder / f"{i}.jpg"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        else:
            path = folder / f"{i}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(str(path))
    (folder / "bomb.png").write_bytes(bomb_png())
    paths.append(str(folder / "bomb.png"))
    return paths


# Appended to each child: its own peak and the largest of its workers', in KiB (Linux ru_maxrss).
PEAKS = """
import resource
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_mib(code: str, *args: str) -> tuple[float, float, str]:
    """(peak RSS MiB of the process or its largest worker, seconds, first output line) of
    ``python -c code args`` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + PEAKS, *args], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed:\n{proc.stderr}")
    seconds = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    own, workers = (int(v) for v in lines[-1].split())
    return max(own, workers) / 1024, seconds, lines[0] if len(lines) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="processes of the copy search")
    parser.add_argument("--data-dir", type=Path, default=None, help="where to write the images (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data_dir or Path(tmp) / "images"
        start = time.perf_counter()
        paths = make_images(folder, args.images)
        size = sum(Path(p).stat().st_size for p in paths) / 2**20
        print(f"{len(paths)} images ({size:.0f} MiB on disk, one 30000 x 30000 PNG bomb) in "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        listing = Path(tmp) / "paths.json"
        listing.write_text(json.dumps(paths))
        base, _, _ = peak_mib(BASELINE)
        print(f"python + imports alone:          peak {base:7.0f} MiB")
        out = Path(tmp) / "out"
        out.mkdir()
        crop, seconds, status = peak_mib(CROP, str(listing), str(out))
        print(f"crop worker, {len(paths)} images:      peak {crop:7.0f} MiB  ({seconds:.0f} s; {status})")
        found, seconds, result = peak_mib(COPIES, str(listing), str(args.workers))
        print(
            f"copy search, {len(paths) - 1} images, {args.workers} proc: peak {found:7.0f} MiB  ({seconds:.0f} s; {result})"
        )


if __name__ == "__main__":
    main()
