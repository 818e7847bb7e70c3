"""Copies of one radiograph kept in one split: the pairs found, as split groups.

The same radiograph is often republished in several collections (re-encoded,
resized, cropped a little), under another patient id. If one copy lands in train
and another in test, the test score measures memory, not diagnosis. The copies
are decided by the aligned search of ``copies.find_copies`` (docs/audits.md);
``find_duplicates`` adds each pair's sources, patients and labels, and
``duplicate_groups`` turns the pairs into clusters that ``split`` keeps in one
split (its ``extra_groups``).

Each pair also carries the DCT perceptual hash (pHash) distance of the two cropped
images, for a reader to see how far apart the copies look; it decides nothing.
The hash is computed with ``cv2.dct`` (32x32 grayscale, 8x8 low-frequency block,
bits above the block median), as OpenCV is already a dependency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .copies import find_copies
from .copy_cache import CopyCache
from .data import read_gray
from .manifest import raw_files

_DCT_SIZE = 32  # pHash: DCT of a 32x32 thumbnail ...
_LOW = 8  # ... keeping the 8x8 lowest frequencies = 64 bits


def phash(image: np.ndarray) -> np.uint64:
    """64-bit DCT perceptual hash of one 2-D (or single-channel) image of any dtype."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"phash needs a 2-D grayscale image, got shape {img.shape}")
    small = cv2.resize(img.astype(np.float32), (_DCT_SIZE, _DCT_SIZE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:_LOW, :_LOW]
    bits = (low > np.median(low)).ravel()
    return np.frombuffer(np.packbits(bits).tobytes(), dtype=">u8")[0].astype(np.uint64)


def perceptual_hashes(paths: Iterable[str | Path]) -> np.ndarray:
    """pHash of each image file (read as grayscale), one at a time so 30k images fit in memory."""
    out = []
    for path in paths:
        out.append(phash(read_gray(path)))
    return np.asarray(out, dtype=np.uint64)


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance between uint64 hashes (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int64)
    # numpy 1.x: popcount byte by byte through a lookup table
    x = np.ascontiguousarray(x)
    return _POPCOUNT8[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.int64)


def duplicate_groups(pairs: pd.DataFrame) -> dict[str, str]:
    """image_id -> cluster key (connected components of the pairs) for ``split``'s extra_groups.

    The key is ``"dup:" + smallest image id of the component`` so that it is stable
    whatever the pair order; images in no pair are left out (they need no merging).
    """
    missing = {"image_id_a", "image_id_b"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs table lacks columns {sorted(missing)}")
    if pairs.empty:
        return {}
    a = pairs["image_id_a"].astype(str).to_numpy()
    b = pairs["image_id_b"].astype(str).to_numpy()
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(a)), (inverse[: len(a)], inverse[len(a) :])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # nodes are sorted, so the first node seen per component label is its smallest id
    first: dict[int, str] = {}
    for node, lab in zip(nodes, labels):
        first.setdefault(int(lab), str(node))
    return {str(node): f"dup:{first[int(lab)]}" for node, lab in zip(nodes, labels)}


PAIR_COLUMNS = ("image_id_a", "image_id_b", "method", "score", "distance", "view_a", "view_b", "overlap", "scale",
                "rotation_deg", "source_a", "source_b", "patient_id_a", "patient_id_b", "label_a", "label_b")  # fmt: skip


def remembered_hashes(paths: list[str], cache: CopyCache | None) -> list[np.uint64]:
    """``perceptual_hashes`` of the files; with ``cache``, remembered by each file's digest."""
    if cache is None:
        return list(perceptual_hashes(paths))
    digests = [cache.file_digest(p) for p in paths]
    known = [cache.get("phash", d) if d else None for d in digests]
    todo = [k for k, h in enumerate(known) if h is None]
    for k, h in zip(todo, perceptual_hashes([paths[k] for k in todo])):
        known[k] = h
        if digests[k]:
            cache.put("phash", digests[k], h)
    return known


def find_duplicates(table: pd.DataFrame, settings: Mapping[str, Any], workers: int = 1,
                    cache: CopyCache | None = None) -> tuple[pd.DataFrame, dict[str, str]]:  # fmt: skip
    """Pairs of ok images that show one radiograph (cxrflow.copies: raw file and cropped image searched,
    each pair aligned and scored; ``settings``: the config's audit.duplicates), with each side's source,
    patient and label so cross-source copies show at a glance, the cropped images' pHash distance, and
    image_id -> cluster key for ``split.assign_splits``' extra_groups; ``workers`` processes decode and align;
    ``cache`` (cxrflow.copy_cache) spares what earlier runs did, with the same result."""
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    pairs = find_copies(ok["image_id"].tolist(), raw_files(ok).tolist(), ok["output_path"].tolist(), settings,
                        workers, cache)  # fmt: skip
    # pHash only of the images in a pair (the distance column): one PNG read each, not one per image
    paired = ok[ok["image_id"].isin(set(pairs["image_id_a"]) | set(pairs["image_id_b"]))]
    hashes = dict(zip(paired["image_id"], remembered_hashes(paired["output_path"].tolist(), cache)))
    pairs["distance"] = hamming(pairs["image_id_a"].map(hashes).to_numpy(np.uint64),
                                pairs["image_id_b"].map(hashes).to_numpy(np.uint64))  # fmt: skip
    info = ok.set_index("image_id")[["source", "patient_id", "label"]]
    for side in ("a", "b"):
        rows = info.loc[pairs[f"image_id_{side}"]]
        for col in ("source", "patient_id", "label"):
            pairs[f"{col}_{side}"] = rows[col].to_numpy()
    return pairs[list(PAIR_COLUMNS)], duplicate_groups(pairs)
