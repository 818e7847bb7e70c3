"""The candidate stage of the copy search: each image's two views (raw and cropped, squashed
to ``work_size``), their window thumbnails, and the inverted file over them (PCA, k-means
cells) that proposes candidate pairs instead of all pairs. The method: ``copies``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA

from .copy_cache import CopyCache
from .decode import ImageError, decode_image


VIEWS = ("raw", "cropped")


# Grey level up to which a pixel is black fill, not film.
_BLACK = 6
# Below this many windows the index is one cell (exact search): k-means would cost more than it saves.
_MIN_CELLED = 20_000


# Windows per cell the k-means cells are fitted on.
_CELL_SAMPLE = 40


# Views whose thumbnails fit the PCA (enough for 32 components, few enough to stay small).
_PCA_VIEWS = 400


# Query images searched together, and windows kept per query and cell before reduction.
_QUERY_IMAGES = 2000


_TOP_WINDOWS = 32


@dataclass(frozen=True)
class Settings:
    """``audit.duplicates`` of the config (the schema holds the defaults and their reasons)."""

    work_size: int
    thumb: int
    max_crop: float
    crop_steps: int
    query_crop: float
    dims: int
    cells_per_sqrt: float
    probe: int
    candidates: int
    candidate_min: float
    min_score: float
    highpass_sigma: float
    decode_margin: float

    @classmethod
    def from_config(cls, duplicates: Mapping[str, Any]) -> Settings:
        return cls(**{f: duplicates[f] for f in cls.__dataclass_fields__})


def schema_defaults() -> dict[str, Any]:
    """``audit.duplicates`` as the schema's defaults (for tests and benchmarks outside a workflow)."""
    from .config import schema_defaults as config_defaults

    return config_defaults()["audit"]["duplicates"]


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2GRAY)


def work_image(img: np.ndarray, size: int) -> np.ndarray:
    """Grey ``size`` x ``size`` uint8 of the whole image (aspect squashed out: copies change it)."""
    return cv2.resize(_gray(img), (size, size), interpolation=cv2.INTER_AREA)


def load_views(raw_path: str | Path | None, cropped_path: str | Path | None, size: int,
               decode_margin: float = 0) -> tuple[dict[str, np.ndarray], str]:  # fmt: skip
    """Work images of the raw file and of the cropped image (whichever exist) and a digest of the decoded raw pixels.

    A raw JPEG decodes reduced while its short side keeps ``decode_margin`` x ``size`` pixels (0:
    in full): at 1x or 2x the area resize aliases and the high-pass detail the score reads drifts
    (correlation 0.91-0.98 with the full decode), at 4x it is 0.998. The digest is of the pixels as
    decoded (and the reduction): identical files still match, a lossless re-save of a JPEG's pixels
    is left to the alignment.

    Raises ``ImageError`` when neither can be read.
    """
    views: dict[str, np.ndarray] = {}
    digest = ""
    if raw_path:
        try:
            decoded = decode_image(Path(raw_path), keep_short_side=int(np.ceil(decode_margin * size)))
            pixels = _gray(decoded.pixels)
            digest = hashlib.blake2b(pixels.tobytes() + f"{pixels.shape}/{decoded.scale}".encode(),
                                     digest_size=16).hexdigest()  # fmt: skip
            views["raw"] = work_image(pixels, size)
        except ImageError:
            pass
    if cropped_path:
        img = cv2.imread(str(cropped_path), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            views["cropped"] = work_image(img, size)
    if not views:
        raise ImageError(f"neither the raw nor the cropped image can be read: {raw_path}, {cropped_path}")
    return views, digest


def window_boxes(size: int, max_crop: float, steps: int) -> np.ndarray:
    """(x0, y0, x1, y1) of every window removing one of ``steps`` fractions in [0, max_crop] from each side."""
    cuts = np.rint(np.linspace(0.0, max_crop, steps) * size).astype(int)
    return np.array([(l, t, size - r, size - b) for l, t, r, b in product(cuts, cuts, cuts, cuts)])


def query_boxes(size: int, query_crop: float) -> np.ndarray:
    """The full view and the view with ``query_crop`` removed from one side (each side in turn)."""
    c = int(round(query_crop * size))
    return np.array([(0, 0, size, size), (c, 0, size, size), (0, c, size, size), (0, 0, size - c, size),
                     (0, 0, size, size - c)])  # fmt: skip


def descriptor_image(work: np.ndarray) -> np.ndarray:
    """The work image as the search sees it: black fill (borders, rotation corners) set to the
    film's median, so that a copy with other borders or corners still looks like its original."""
    out = work.astype(np.float32)
    film = film_mask(work).astype(bool)
    if film.all() or not film.any():
        return out
    out[~film] = float(np.median(out[film]))
    return out


def thumbnails(work: np.ndarray, boxes: np.ndarray, thumb: int) -> np.ndarray:
    """Unit-length, zero-mean ``thumb``² thumbnails of each box of a work image (rows)."""
    work = descriptor_image(work)
    out = np.empty((len(boxes), thumb * thumb), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k] = cv2.resize(work[y0:y1, x0:x1], (thumb, thumb), interpolation=cv2.INTER_AREA).ravel()
    out -= out.mean(axis=1, keepdims=True)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    return out


def highpass(work: np.ndarray, sigma: float) -> np.ndarray:
    """The image minus its Gaussian blur: the detail that tells two films apart."""
    return work - cv2.GaussianBlur(work, (0, 0), sigma)


@dataclass
class Index:
    """Window descriptors of every view, their owners, and an inverted file over them."""

    pca: PCA
    vectors: np.ndarray  # (n_windows, dims) float32, unit length
    image: np.ndarray  # owning image index per window
    view: np.ndarray  # owning view (index into VIEWS) per window
    box: np.ndarray  # (n_windows, 4) window box in the view's work image
    centroids: np.ndarray
    cell: np.ndarray  # cell of each window
    queries: Any = None  # Queries of every view, projected while the index was built


def _project(pca: PCA, x: np.ndarray) -> np.ndarray:
    y = pca.transform(x).astype(np.float32)
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-6)


def view_digests(works: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    """A digest of each image's work images: what orders images where the order must follow content."""
    out = []
    for views in works:
        h = hashlib.blake2b(digest_size=16)
        for name in VIEWS:
            h.update(name.encode() + (views[name].tobytes() if name in views else b"-"))
        out.append(h.hexdigest())
    return out


def pca_sample(works: Sequence[Mapping[str, np.ndarray]], digests: Sequence[str]) -> list[tuple[int, int]]:
    """(image, view) of the views the PCA is fitted on: those of the images with the smallest work-image
    digests, up to ``_PCA_VIEWS``. A function of content, not of the collection's size or order, so
    that adding or removing images leaves the projection (and every pair's window match) as it was,
    unless one of the few sampled images is among them."""
    sample: list[tuple[int, int]] = []
    for i in sorted(range(len(works)), key=lambda k: digests[k]):
        sample += [(i, v) for v, name in enumerate(VIEWS) if name in works[i]]
        if len(sample) >= _PCA_VIEWS:
            break
    return sample[:_PCA_VIEWS]


def descriptors(views: Mapping[str, np.ndarray], pca: PCA, boxes: np.ndarray, qboxes: np.ndarray,
                thumb: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One image's search descriptors: its views' window vectors (float16, as the index holds them)
    and query-window vectors (float32), views in ``VIEWS`` order."""
    names = [name for name in VIEWS if name in views]
    win = np.concatenate([_project(pca, thumbnails(views[name], boxes, thumb)) for name in names]).astype(np.float16)
    query = np.concatenate([_project(pca, thumbnails(views[name], qboxes, thumb)) for name in names])
    return win, query


def projection_key(pca: PCA, s: Settings) -> str:
    """Names a fitted projection and the windows it is applied to: stored descriptors are reused only
    under the same one."""
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps([s.work_size, s.thumb, s.max_crop, s.crop_steps, s.query_crop]).encode())
    for part in (pca.components_, pca.mean_, pca.explained_variance_):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def cell_count(n_windows: int, s: Settings) -> int:
    """Cells of the inverted file: ``cells_per_sqrt`` x sqrt(windows), rounded to the nearest power of
    two (one cell below ``_MIN_CELLED`` windows), so that a small update keeps the count, and with it
    the cells and every candidate list they shape."""
    if n_windows < _MIN_CELLED:
        return 1
    return int(2 ** np.rint(np.log2(s.cells_per_sqrt * np.sqrt(n_windows))))


def cell_sample(owner: np.ndarray, digests: Sequence[str], size: int) -> np.ndarray:
    """Rows (windows) the k-means cells are fitted on: every window of the images with the smallest
    work-image digests (``pca_sample``'s order), until ``size`` windows. Chosen by content, like the
    PCA's sample, so an update moves the cells only when it adds or removes one of these images."""
    starts = np.searchsorted(owner, np.arange(len(digests) + 1))
    rows: list[np.ndarray] = []
    taken = 0
    for i in sorted(range(len(digests)), key=lambda k: digests[k]):
        rows.append(np.arange(starts[i], starts[i + 1]))
        taken += starts[i + 1] - starts[i]
        if taken >= size:
            break
    return np.concatenate(rows)[:size]


def fit_cells(sample: np.ndarray, n_cells: int, seed: int, cache: CopyCache | None = None) -> np.ndarray:
    """k-means centroids (float32) of the window sample; with ``cache``, a fit of the same sample and
    count is read back (the fit is a function of exactly these, so it is what a refit would give)."""
    key = ""
    if cache is not None:
        h = hashlib.blake2b(np.ascontiguousarray(sample).tobytes(), digest_size=16)
        h.update(json.dumps([n_cells, seed, len(sample)]).encode())
        key = h.hexdigest()
        hit = cache.get_cells(key)
        if hit is not None and hit.shape == (n_cells, sample.shape[1]):
            return hit
    km = MiniBatchKMeans(n_clusters=n_cells, random_state=seed, n_init=1, batch_size=4096, max_iter=20)
    centroids = km.fit(sample).cluster_centers_.astype(np.float32)
    if cache is not None:
        cache.put_cells(key, centroids)
    return centroids


def build_index(works: Sequence[Mapping[str, np.ndarray]], s: Settings, seed: int = 0,
                digests: Sequence[str] | None = None, cache: CopyCache | None = None,
                keys: Sequence[str] = ()) -> Index:  # fmt: skip
    """Window thumbnails of all views, PCA-compressed (fitted on ``pca_sample``, then applied image by
    image so the 256-d thumbnails never all sit in memory) and bucketed into k-means cells
    (``cell_count`` of them, fitted on ``cell_sample``); the query
    windows are projected on the way (``Index.queries``). ``digests``: ``view_digests(works)``, when
    the caller has them; with ``cache`` (content keys in ``keys``), an image's descriptors under the
    same projection are read back, not computed."""
    boxes = window_boxes(s.work_size, s.max_crop, s.crop_steps)
    qboxes = query_boxes(s.work_size, s.query_crop)
    views = [(i, v) for i, w in enumerate(works) for v, name in enumerate(VIEWS) if name in w]
    digests = view_digests(works) if digests is None else digests
    sample = pca_sample(works, digests)
    fit = np.concatenate([thumbnails(works[i][VIEWS[v]], boxes, s.thumb) for i, v in sample])
    pca = PCA(n_components=min(s.dims, *fit.shape), whiten=True, random_state=seed).fit(fit)
    projection = projection_key(pca, s) if cache is not None else ""
    vectors = np.empty((len(views) * len(boxes), pca.n_components_), np.float16)
    q_parts, q_img, q_view = [], [], []
    row = 0
    for i, image_views in enumerate(works):
        hit = cache.get_descriptors(projection, keys[i]) if cache is not None else None
        if hit is None:
            hit = descriptors(image_views, pca, boxes, qboxes, s.thumb)
            if cache is not None:
                cache.put_descriptors(projection, keys[i], *hit)
        win, query = hit
        vectors[row : row + len(win)] = win
        row += len(win)
        q_parts.append(query)
        present = [v for v, name in enumerate(VIEWS) if name in image_views]
        q_img.append(np.full(len(query), i))
        q_view.append(np.repeat(present, len(qboxes)))
    queries = Queries(np.concatenate(q_parts), np.concatenate(q_img), np.concatenate(q_view),
                      np.tile(qboxes, (sum(len(p) for p in q_parts) // len(qboxes), 1)))  # fmt: skip
    owner = np.repeat([i for i, _ in views], len(boxes))
    view = np.repeat([v for _, v in views], len(boxes))
    n_cells = cell_count(len(vectors), s)
    if n_cells > 1:
        rows = cell_sample(owner, digests, _CELL_SAMPLE * n_cells)
        centroids = fit_cells(vectors[rows].astype(np.float32), n_cells, seed, cache)
        cell = np.concatenate([np.argmax(vectors[k : k + 65536].astype(np.float32) @ centroids.T, axis=1)
                               for k in range(0, len(vectors), 65536)])  # fmt: skip
    else:
        centroids, cell = np.zeros((1, vectors.shape[1]), np.float32), np.zeros(len(vectors), int)
    return Index(pca, vectors, owner, view, np.tile(boxes, (len(views), 1)), centroids, cell, queries)


@dataclass
class Queries:
    """Query windows of every view (the full view and its one-side crops), projected like the index."""

    vectors: np.ndarray  # (n_queries, dims) float32, unit length
    image: np.ndarray  # owning image per query (non-decreasing)
    view: np.ndarray
    box: np.ndarray


def query_vectors(works: Sequence[Mapping[str, np.ndarray]], index: Index, s: Settings) -> Queries:
    """Every view's query windows, projected by the index's PCA (``build_index`` made them)."""
    if index.queries is not None:
        return index.queries
    qboxes = query_boxes(s.work_size, s.query_crop)
    parts, q_img, q_view, q_box = [], [], [], []
    for i, views in enumerate(works):
        for v, name in enumerate(VIEWS):
            if name in views:
                parts.append(_project(index.pca, thumbnails(views[name], qboxes, s.thumb)))
                q_img.append(np.full(len(qboxes), i))
                q_view.append(np.full(len(qboxes), v))
                q_box.append(qboxes)
    return Queries(np.concatenate(parts), np.concatenate(q_img), np.concatenate(q_view), np.concatenate(q_box))


def candidate_matches(works: Sequence[Mapping[str, np.ndarray]], index: Index, s: Settings,
                      queries: Queries | None = None) -> pd.DataFrame:  # fmt: skip
    """Best window match per (query image, other image) among each query's nearest cells, above ``candidate_min``.

    Columns: a, b (image indices, a != b), sim, view_a, box_a, view_b, box_b.
    """
    queries = query_vectors(works, index, s) if queries is None else queries
    q, q_img_a, q_view_a, q_box_a = queries.vectors, queries.image, queries.view, queries.box
    probe = min(s.probe, len(index.centroids))
    n_cells = len(index.centroids)
    w_order = np.argsort(index.cell, kind="stable")
    w_bounds = np.searchsorted(index.cell[w_order], np.arange(n_cells + 1))
    per_image: list[pd.DataFrame] = []
    # query images in chunks: the hits of one chunk are reduced to its candidates before the next
    for first in range(0, len(works), _QUERY_IMAGES):
        qsel = np.flatnonzero((q_img_a >= first) & (q_img_a < first + _QUERY_IMAGES))
        cells = np.argsort(-(q[qsel] @ index.centroids.T), axis=1)[:, :probe]
        pair_q, pair_c = np.repeat(qsel, probe), cells.ravel()
        q_order = np.argsort(pair_c, kind="stable")
        q_bounds = np.searchsorted(pair_c[q_order], np.arange(n_cells + 1))
        hits_q, hits_w, hits_s = [], [], []
        for c in range(n_cells):
            mem = w_order[w_bounds[c] : w_bounds[c + 1]]
            qs = pair_q[q_order[q_bounds[c] : q_bounds[c + 1]]]
            if len(mem) == 0 or len(qs) == 0:
                continue
            vecs = index.vectors[mem].astype(np.float32)
            for start in range(0, len(qs), 1024):
                block = qs[start : start + 1024]
                sims = q[block] @ vecs.T
                sims[index.image[mem][None, :] == q_img_a[block][:, None]] = -1.0  # never oneself
                k = min(_TOP_WINDOWS, len(mem))
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                best = np.take_along_axis(sims, top, axis=1)
                qi, ki = np.nonzero(best >= s.candidate_min)
                hits_q.append(block[qi])
                hits_w.append(mem[top[qi, ki]])
                hits_s.append(best[qi, ki])
        if not hits_q:
            continue
        hq, hw, hs = np.concatenate(hits_q), np.concatenate(hits_w), np.concatenate(hits_s)
        hits = pd.DataFrame({"a": q_img_a[hq], "b": index.image[hw], "sim": hs, "q": hq, "w": hw})
        # per query image: its best match in each other image, then the ``candidates`` best other images
        hits = hits.sort_values("sim", ascending=False, kind="stable").drop_duplicates(["a", "b"])
        per_image.append(hits.groupby("a", sort=False).head(s.candidates))
    cols = ["a", "b", "sim", "view_a", "box_a", "view_b", "box_b"]
    if not per_image:
        return pd.DataFrame(columns=cols)
    hits = pd.concat(per_image, ignore_index=True)
    return pd.DataFrame({
        "a": hits["a"].to_numpy(), "b": hits["b"].to_numpy(), "sim": hits["sim"].to_numpy(),
        "view_a": q_view_a[hits["q"]], "box_a": list(q_box_a[hits["q"]]),
        "view_b": index.view[hits["w"]], "box_b": list(index.box[hits["w"]]),
    })  # fmt: skip


def pair_matches(index: Index, queries: Queries, pairs: Sequence[tuple[int, int]],
                 digests: Sequence[str]) -> list[tuple]:  # fmt: skip
    """The window match each candidate pair is aligned from: the best of all query windows of one image
    against all windows of the other, in both directions (the better one; on a tie, the image with
    the smaller work-image digest as template). A function of the two images (and the projection)
    alone, unlike the match the cells happened to return, so that an alignment from an earlier run
    is the one a run from scratch would make.

    Rows: (template, image, view_t, box_t, view_i, box_i).
    """
    w_lo = np.searchsorted(index.image, np.arange(len(digests)), "left")
    w_hi = np.searchsorted(index.image, np.arange(len(digests)), "right")
    q_lo = np.searchsorted(queries.image, np.arange(len(digests)), "left")
    q_hi = np.searchsorted(queries.image, np.arange(len(digests)), "right")
    directed: dict[int, list[int]] = {}
    for a, b in pairs:
        directed.setdefault(a, []).append(b)
        directed.setdefault(b, []).append(a)
    best: dict[tuple[int, int], tuple[float, int, int]] = {}
    for a, partners in directed.items():
        qv = queries.vectors[q_lo[a] : q_hi[a]]
        cols = np.concatenate([np.arange(w_lo[b], w_hi[b]) for b in partners])
        sims = qv @ index.vectors[cols].astype(np.float32).T
        flat = sims.max(axis=0)
        starts = np.cumsum([0] + [w_hi[b] - w_lo[b] for b in partners])[:-1]
        for k, b in enumerate(partners):
            seg = flat[starts[k] : starts[k] + w_hi[b] - w_lo[b]]
            w = int(np.argmax(seg))
            col = int(starts[k]) + w
            best[(a, b)] = (float(seg[w]), int(q_lo[a] + np.argmax(sims[:, col])), int(cols[col]))
    rows = []
    for a, b in pairs:
        ab, ba = best[(a, b)], best[(b, a)]
        if ba[0] > ab[0] or (ba[0] == ab[0] and digests[b] < digests[a]):
            a, b, ab = b, a, ba
        _, qi, wi = ab
        rows.append((a, b, int(queries.view[qi]), queries.box[qi], int(index.view[wi]), index.box[wi]))
    return rows


def film_mask(img: np.ndarray) -> np.ndarray:
    """0 on black fill (near-black regions touching the frame: borders, the corners a rotation
    leaves), 1 elsewhere; dark film inside the frame (lungs of a dark copy) stays film."""
    black = (img <= _BLACK).astype(np.uint8)
    if not black.any():
        return np.ones(img.shape, np.uint8)
    _, labels = cv2.connectedComponents(black, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return (~np.isin(labels, edge)).astype(np.uint8)
