"""What the copy search remembers between runs, so that a dataset update costs what changed.

Four stores under one folder (``results/cache/copies/`` in the workflow), all safe to delete at
any time (the next run recomputes what is missing, with the same result):

- *views*: each image's two work images (raw file and cropped image at ``work_size``) and the
  digest of its decoded pixels, keyed by the image's *content key*: a digest of the raw file's
  bytes, the cropped image's bytes and the settings that shape the views (``work_size``,
  ``decode_margin``). An image whose key is stored is not decoded again. File digests are
  remembered by (path, size, mtime, ctime), as the crop listings do, so an unchanged file is not
  read again either.
- *descriptors*: each image's window and query vectors (what the index and the search read),
  keyed by its content key and the projection they were made with (the PCA and the window
  settings); a projection that moves (``copy_index.pca_sample``) makes them again.
- *cells*: the k-means centroids of the inverted file, keyed by the window sample they were fitted
  on (``copy_index.cell_sample``: the windows of the images with the smallest digests) and their count
  (a power of two), so that an update that leaves the sample alone reuses the cells, and with them
  the candidate lists.
- *pairs*: each verified candidate pair's alignment (score, warp, overlap, views), keyed by the two
  content keys, the window match it started from and the verification settings (``min_score``,
  ``highpass_sigma``). The alignment is a function of exactly these, so a stored one is what a
  run from scratch would compute.

The PCA is fitted on every run, on a content-chosen sample of ~200 images (cheap next to decoding
and aligning); the cells are fitted on a content-chosen sample too, so both rarely move, and a
stored fit is exactly the refit a run from scratch would make. Entries not used by a run (removed images, other settings) are dropped when it ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .preprocess import atomic_write_bytes

# Bump when stored views or alignments of an older code version must not be reused.
CACHE_VERSION = 1
_CHUNK = 1 << 20
_DIGEST_BYTES = 32  # hex characters of the stored pixel digest (blake2b, 16 bytes)


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


class CopyCache:
    """The views and pair alignments of earlier runs in ``root``; ``save()`` writes what this run used."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.views_dir = self.root / "views"
        self._files = _load_pickle(self.root / "files.pkl", {})
        self._files_used: dict[str, tuple[int, int, int, str]] = {}
        self._pairs: dict[tuple, tuple] = _load_pickle(self.root / "pairs.pkl", {})
        self._pairs_used: dict[tuple, tuple] = {}
        self._views_used: set[str] = set()
        self._descriptors_used: set[tuple[str, str]] = set()
        self._cells_used: set[str] = set()
        self.descriptors_computed = 0
        self.descriptors_reused = 0
        self.views_decoded = 0
        self.views_reused = 0
        self.pairs_aligned = 0
        self.pairs_reused = 0

    # ---------------------------------------------------------------- content keys
    def file_digest(self, path: str | Path | None) -> str:
        """Digest of a file's bytes ("" when absent or unreadable), remembered by its stat."""
        if not path:
            return ""
        path = str(path)
        st = _stat(path)
        if st is None:
            return ""
        known = self._files.get(path)
        if known is not None and tuple(known[:3]) == st:
            self._files_used[path] = known
            return known[3]
        digest = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError:
            return ""
        self._files_used[path] = (*st, digest.hexdigest())
        return digest.hexdigest()

    def content_key(self, raw_path: str | Path | None, cropped_path: str | Path | None,
                    shaping: Mapping[str, Any]) -> str:  # fmt: skip
        """The image's key: both files' bytes and the settings that shape its views."""
        meta = json.dumps({"v": CACHE_VERSION, "settings": dict(shaping)}, sort_keys=True)
        parts = [meta, self.file_digest(raw_path), self.file_digest(cropped_path)]
        return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()

    # ---------------------------------------------------------------- views
    def _view_path(self, key: str) -> Path:
        return self.views_dir / key[:2] / f"{key}.bin"

    def get_views(self, key: str, names: Sequence[str], size: int) -> tuple[dict[str, np.ndarray], str] | None:
        """The stored work images (``names`` in order, each ``size`` squared) and pixel digest, or None."""
        try:
            data = self._view_path(key).read_bytes()
        except OSError:
            return None
        n, plane = len(names), size * size
        if len(data) != n + n * plane + _DIGEST_BYTES:
            return None
        has = np.frombuffer(data, np.uint8, n)
        planes = np.frombuffer(data, np.uint8, n * plane, offset=n).reshape(n, size, size)
        views = {name: planes[k].copy() for k, name in enumerate(names) if has[k]}
        digest = data[n + n * plane :].decode("ascii").strip()
        self._views_used.add(key)
        self.views_reused += 1
        return views, digest

    def put_views(self, key: str, names: Sequence[str], size: int, views: Mapping[str, np.ndarray],
                  digest: str) -> None:  # fmt: skip
        """Store one image's work images and pixel digest under its content key."""
        planes = np.zeros((len(names), size, size), np.uint8)
        has = np.zeros(len(names), np.uint8)
        for k, name in enumerate(names):
            if name in views:
                planes[k], has[k] = views[name], 1
        payload = has.tobytes() + planes.tobytes() + digest.ljust(_DIGEST_BYTES)[:_DIGEST_BYTES].encode("ascii")
        atomic_write_bytes(self._view_path(key), payload)
        self._views_used.add(key)
        self.views_decoded += 1

    # ---------------------------------------------------------------- descriptors
    def _descriptor_path(self, projection: str, key: str) -> Path:
        return self.root / "descriptors" / projection / key[:2] / f"{key}.npy"

    def get_descriptors(self, projection: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """An image's window vectors (float16) and query vectors under one projection, or None."""
        try:
            stored = np.load(self._descriptor_path(projection, key), allow_pickle=False)
            n_win = int(stored[0, 0])
        except Exception:  # noqa: BLE001 (missing or damaged: computed again)
            return None
        self._descriptors_used.add((projection, key))
        self.descriptors_reused += 1
        return stored[1 : 1 + n_win].astype(np.float16), stored[1 + n_win :]

    def put_descriptors(self, projection: str, key: str, win: np.ndarray, query: np.ndarray) -> None:
        """Store them: one float32 array, a header row holding the window count (float16 -> float32 is exact)."""
        head = np.zeros((1, win.shape[1]), np.float32)
        head[0, 0] = len(win)
        buf = io.BytesIO()
        np.save(buf, np.concatenate([head, win.astype(np.float32), query.astype(np.float32)]))
        atomic_write_bytes(self._descriptor_path(projection, key), buf.getvalue())
        self._descriptors_used.add((projection, key))
        self.descriptors_computed += 1

    # ---------------------------------------------------------------- cells
    def _cells_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.npy"

    def get_cells(self, key: str) -> np.ndarray | None:
        """The k-means centroids fitted on one window sample (its key: ``copy_index.fit_cells``), or None."""
        try:
            centroids = np.load(self._cells_path(key), allow_pickle=False)
        except Exception:  # noqa: BLE001 (missing or damaged: fitted again)
            return None
        self._cells_used.add(key)
        return centroids

    def put_cells(self, key: str, centroids: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(centroids, np.float32))
        atomic_write_bytes(self._cells_path(key), buf.getvalue())
        self._cells_used.add(key)

    # ---------------------------------------------------------------- pairs
    def get_pair(self, key: tuple) -> tuple | None:
        hit = self._pairs.get(key)
        if hit is not None:
            self._pairs_used[key] = hit
            self.pairs_reused += 1
        return hit

    def put_pair(self, key: tuple, result: tuple) -> None:
        self._pairs_used[key] = result
        self.pairs_aligned += 1

    # ---------------------------------------------------------------- end of run
    def save(self) -> None:
        """Keep what this run used: removed images' views and pairs, and other settings', go."""
        atomic_write_bytes(self.root / "files.pkl", pickle.dumps(self._files_used, protocol=5))
        atomic_write_bytes(self.root / "pairs.pkl", pickle.dumps(self._pairs_used, protocol=5))
        if self.views_dir.is_dir():
            for sub in self.views_dir.iterdir():
                for path in sub.glob("*.bin"):
                    if path.stem not in self._views_used:
                        path.unlink(missing_ok=True)
        cells = self.root / "cells"
        if cells.is_dir():
            for path in cells.glob("*.npy"):
                if path.stem not in self._cells_used:
                    path.unlink(missing_ok=True)
        projections = {p for p, _ in self._descriptors_used}
        described = self.root / "descriptors"
        if described.is_dir():
            for folder in described.iterdir():
                if folder.name not in projections:
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                for path in folder.glob("*/*.npy"):
                    if (folder.name, path.stem) not in self._descriptors_used:
                        path.unlink(missing_ok=True)

    def summary(self) -> str:
        return (f"{self.views_decoded} images decoded, {self.views_reused} from the cache; "
                f"{self.descriptors_computed} images described, {self.descriptors_reused} from the cache; "
                f"{self.pairs_aligned} pairs aligned, {self.pairs_reused} from the cache")  # fmt: skip


def _load_pickle(path: Path, default: Any) -> Any:
    """A stored table, or ``default`` when it is missing or unreadable (a cache may be deleted or cut short)."""
    try:
        with open(path, "rb") as handle:
            value = pickle.load(handle)
    except Exception:  # noqa: BLE001 (whatever a damaged or foreign file raises, the cache is only missing)
        return default
    return value if isinstance(value, type(default)) else default


def pair_key(key_a: str, key_b: str, view_a: int, box_a: np.ndarray, view_b: int, box_b: np.ndarray,
             verify_settings: tuple) -> tuple:  # fmt: skip
    """What one alignment depends on: both images, the window match it starts from, the settings."""
    return (key_a, key_b, int(view_a), tuple(int(v) for v in box_a), int(view_b), tuple(int(v) for v in box_b),
            verify_settings)  # fmt: skip
