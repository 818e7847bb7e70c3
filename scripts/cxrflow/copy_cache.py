"""What the copy search remembers between runs, so that a dataset update costs what changed.

Stores under one folder (``results/cache/copies/`` in the workflow), all safe to delete at any
time (the next run recomputes what is missing, with the same result):

- *files*: each file's digest, remembered by (path, size, mtime, ctime), as the crop listings do,
  so that an unchanged file is not read again. An image's *content key* is a digest of its raw
  file's bytes, its cropped image's bytes and the settings that shape its work images.
- *views*: each image's two work images (raw file and cropped image at ``work_size``), by content
  key: read only for the images whose pairs must be aligned.
- *projection*, *cells*: the PCA and the multi-index's two codebooks, by the content keys of the
  16 images both are fitted on (and the codebooks' size), so that an update that leaves those
  images alone reuses them.
- *described*: each image's pixel digest and window and query vectors under one projection.
- *assigned*: each image's window cells and query probes under one set of cells.
- *lists*: each image's candidate list (``copy_index.CandidateList``) under one set of cells and
  search settings, by (image id, content key).
- *pairs*: each verified pair's alignment (template, score, warp, overlap, views), by the two
  content keys, the projection and the verification settings; *matched*: the same alignments by
  the window match they started from instead of the projection (a moved projection often leaves
  a pair's match where it was). An alignment is a function of exactly these, so a stored one is
  what a run from scratch would compute.
- *phash*: the cropped images' perceptual hashes (the pairs' distance column), by file digest.

Entries not used by a run (removed images, other settings) are dropped when it ends. With no
folder (``CopyCache(None)``) nothing is read or written: a run from scratch.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .crop_listings import file_stat
from .preprocess import atomic_write_bytes

# Bump when stored entries of an older code version must not be reused.
CACHE_VERSION = 3
_CHUNK = 1 << 20
_DIGEST_BYTES = 32  # hex characters of the stored pixel digest (blake2b, 16 bytes)
_STORES = ("files", "projection", "cells", "described", "assigned", "lists", "pairs", "matched", "phash")


def digest_key(*parts: Any) -> str:
    """A short digest naming a combination of settings and content keys."""
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


class CopyCache:
    """What earlier runs in ``root`` computed; ``save()`` keeps what this run used."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root)
        self._old: dict[str, dict] = {}
        self._new: dict[str, dict] = {name: {} for name in _STORES}
        self._views_used: set[str] = set()
        self.views_decoded = 0
        self.views_reused = 0
        self.described = 0
        self.described_reused = 0
        self.lists_searched = 0
        self.lists_reused = 0
        self.pairs_aligned = 0
        self.pairs_reused = 0
        self.seconds: dict[str, float] = {}  # wall time per stage of the search

    def _store(self, name: str) -> dict:
        if name not in self._old:
            self._old[name] = {} if self.root is None else _load_pickle(self.root / f"{name}.pkl")
        return self._old[name]

    def get(self, store: str, key: Any) -> Any:
        """A stored entry (kept for the next run), or None."""
        hit = self._new[store].get(key)
        if hit is None:
            hit = self._store(store).get(key)
            if hit is not None:
                self._new[store][key] = hit
        return hit

    def put(self, store: str, key: Any, value: Any) -> None:
        self._new[store][key] = value

    # ---------------------------------------------------------------- content keys
    def file_digest(self, path: str | Path | None) -> str:
        """Digest of a file's bytes ("" when absent or unreadable), remembered by its stat."""
        if not path:
            return ""
        path = str(path)
        st = file_stat(path)  # as the crop listings see a file
        if st is None:
            return ""
        known = self.get("files", path)
        if known is not None and tuple(known[:3]) == st:
            return known[3]
        digest = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
        except OSError:
            return ""
        self.put("files", path, (*st, digest.hexdigest()))
        return digest.hexdigest()

    def content_key(self, raw_path: str | Path | None, cropped_path: str | Path | None,
                    shaping: Mapping[str, Any]) -> str:  # fmt: skip
        """The image's key: both files' bytes and the settings that shape its views."""
        return digest_key(CACHE_VERSION, dict(shaping), self.file_digest(raw_path), self.file_digest(cropped_path))

    # ---------------------------------------------------------------- views
    def _view_path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / "views" / key[:2] / f"{key}.bin"

    def keep_views(self, key: str) -> None:
        """Keep an image's stored views without reading them."""
        self._views_used.add(key)

    def get_views(self, key: str, names: Sequence[str], size: int) -> tuple[dict[str, np.ndarray], str] | None:
        """The stored work images (``names`` in order, each ``size`` squared) and pixel digest, or None."""
        if self.root is None:
            return None
        try:
            data = self._view_path(key).read_bytes()
        except OSError:
            return None
        n, plane = len(names), size * size
        if len(data) != n + n * plane + _DIGEST_BYTES:
            return None
        has = np.frombuffer(data, np.uint8, n)
        planes = np.frombuffer(data, np.uint8, n * plane, offset=n).reshape(n, size, size)
        self._views_used.add(key)
        self.views_reused += 1
        digest = data[n + n * plane :].decode("ascii").strip()
        return {name: planes[k].copy() for k, name in enumerate(names) if has[k]}, digest

    def put_views(self, key: str, names: Sequence[str], size: int, views: Mapping[str, np.ndarray],
                  digest: str) -> None:  # fmt: skip
        """Store one image's work images and pixel digest under its content key."""
        self.views_decoded += 1
        if self.root is None:
            return
        planes = np.zeros((len(names), size, size), np.uint8)
        has = np.zeros(len(names), np.uint8)
        for k, name in enumerate(names):
            if name in views:
                planes[k], has[k] = views[name], 1
        payload = has.tobytes() + planes.tobytes() + digest.ljust(_DIGEST_BYTES)[:_DIGEST_BYTES].encode("ascii")
        atomic_write_bytes(self._view_path(key), payload)
        self._views_used.add(key)

    # ---------------------------------------------------------------- end of run
    def save(self) -> None:
        """Keep what this run used: removed images' entries, and other settings', go."""
        if self.root is None:
            return
        for name in _STORES:
            atomic_write_bytes(self.root / f"{name}.pkl", pickle.dumps(self._new[name], protocol=5))
        views = self.root / "views"
        if views.is_dir():
            for sub in views.iterdir():
                for path in sub.glob("*.bin"):
                    if path.stem not in self._views_used:
                        path.unlink(missing_ok=True)

    def summary(self) -> str:
        return (f"{self.views_decoded} images decoded, {self.views_reused} views read back; "
                f"{self.described} images described, {self.described_reused} from the cache; "
                f"{self.lists_searched} candidate lists searched, {self.lists_reused} updated; "
                f"{self.pairs_aligned} pairs aligned, {self.pairs_reused} from the cache; seconds: "
                + ", ".join(f"{stage} {t:.1f}" for stage, t in self.seconds.items()))  # fmt: skip


def _load_pickle(path: Path) -> dict:
    """A stored table, or {} when it is missing or unreadable (a cache may be deleted or cut short)."""
    try:
        with open(path, "rb") as handle:
            value = pickle.load(handle)
    except Exception:  # noqa: BLE001 (whatever a damaged or foreign file raises, the cache is only missing)
        return {}
    return value if isinstance(value, dict) else {}
