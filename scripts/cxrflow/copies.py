"""Copies of one radiograph across collections: candidate search on window thumbnails, then alignment.

Public COVID-19 sets republish each other's images cropped differently, squashed to
another aspect ratio, resized, re-encoded, converted to grey, a little brighter or
rotated by a few degrees. A global hash (pHash) sees a 10 % crop as another image, so
it finds a third of such twins. Here each image is matched in two stages:

1. Candidates (not all pairs). Every image is seen as two *views*, the raw decoded file
   and the black-bar-cropped 224 px image, each squashed to ``work_size`` squared (the
   aspect ratio is thereby factored out). Each view gives *window* thumbnails: the view
   with 0..``max_crop`` of its side removed on each of the four sides (a grid of
   ``crop_steps`` values per side), every window area-resized to ``thumb`` squared,
   centred and scaled to unit length (brightness/contrast out), then projected on
   ``dims`` principal components. A copy that lost up to ``max_crop`` per side equals one
   window of its original; two different crops of one original meet through their
   windows on both sides (queries are the full view and its one-side crops). The
   windows are indexed in an inverted file (k-means cells, the ``probe`` nearest
   cells searched per query), so the cost grows with n x (n / cells) x probe, not n².
2. Verification of each candidate image pair. Both views are ``prepare``d once: grey levels
   replaced by their rank among the film's pixels (monotone contrast, brightness and gamma
   changes vanish), black fill (near-black regions touching the frame: borders, rotation
   corners) and saturated white marked as without detail. The window match gives a first
   affine transform, refined by ECC (``cv2.findTransformECC``, affine, half then full work
   resolution); the score is the normalised correlation of the two *high-pass* images over
   the pixels with detail in both, in the frame of the coarser image. Band-pass detail (rib
   edges, vessels, tubes, JPEG-robust at this scale) is what distinguishes one film from
   another film of the same patient; the low frequencies that make all chest X-rays alike
   are removed.

Pairs with a score >= ``min_score`` are copies. Exact pixel copies are matched first
(digest of the decoded pixels) and skip the verification. With ``workers`` > 1 the files are
decoded and the pairs aligned in that many spawned processes (the prepared images in one
shared-memory array); the search itself runs in the calling process. Measured precision/recall and
speed: bench/README.md, docs/audits.md.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA

from .copy_cache import CopyCache, pair_key
from .decode import ImageError, decode_image

VIEWS = ("raw", "cropped")
PAIR_COLUMNS = ("image_id_a", "image_id_b", "method", "score", "view_a", "view_b", "overlap", "scale",
                "rotation_deg")  # fmt: skip
# Below this many windows the index is one cell (exact search): k-means would cost more than it saves.
_MIN_CELLED = 20_000
# Windows per cell the k-means cells are fitted on.
_CELL_SAMPLE = 40
# Views whose thumbnails fit the PCA (enough for 32 components, few enough to stay small).
_PCA_VIEWS = 400
# Query images searched together, and windows kept per query and cell before reduction.
_QUERY_IMAGES = 2000
_TOP_WINDOWS = 32
# Pairs scoring under this after the half-resolution fit are not refined (fixed, not tied to
# min_score, so that a threshold sweep from one run is exact).
_REFINE_FROM = 0.3
# Grey level up to which a pixel is black fill, not film.
_BLACK = 6
# Grey level from which a pixel is saturated white, without detail.
_WHITE = 250


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
    film = _film(work).astype(bool)
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


def align(template: np.ndarray, box_t: np.ndarray, image: np.ndarray, box_i: np.ndarray,
          s: Settings) -> tuple[float, np.ndarray, float]:  # fmt: skip
    """Refine the window match into an affine map template -> image; return (score, warp, overlap).

    ``score`` is the normalised correlation of the high-pass images over the overlap (``overlap``
    = its share of the template); -1 where ECC does not converge or the overlap is under a quarter.
    """
    info_t, info_i = _detail(template), _detail(image)
    template, image = template.astype(np.float32), image.astype(np.float32)
    x0, y0, x1, y1 = (float(v) for v in box_t)
    u0, v0, u1, v1 = (float(v) for v in box_i)
    sx, sy = (u1 - u0) / (x1 - x0), (v1 - v0) / (y1 - y0)
    warp = np.array([[sx, 0, u0 - sx * x0], [0, sy, v0 - sy * y0]], np.float32)
    # ECC at half resolution (a quarter of the cost), the score at full work resolution; the
    # input image's black fill (borders) is masked out: its sharp edges would pull the fit
    half_t, half_i = cv2.pyrDown(template), cv2.pyrDown(image)
    warp[:, 2] /= 2
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    try:
        _, warp = cv2.findTransformECC(half_t, half_i, warp, cv2.MOTION_AFFINE, criteria, _detail(half_i), 3)
    except cv2.error:
        return -1.0, warp, 0.0
    warp[:, 2] *= 2
    score, overlap = _aligned_score(template, image, warp, s.highpass_sigma, info_t, info_i)
    if score < _REFINE_FROM:  # clearly another film: full-resolution steps would not save it
        return score, warp, overlap
    try:  # a few full-resolution steps for the fine detail the score reads
        _, warp = cv2.findTransformECC(template, image, warp, cv2.MOTION_AFFINE, (criteria[0], 15, 1e-4), info_i, 3)
    except cv2.error:
        pass
    score, overlap = _aligned_score(template, image, warp, s.highpass_sigma, info_t, info_i)
    return score, warp, overlap


def prepare(work: np.ndarray) -> np.ndarray:
    """A uint8 work image as the verification reads it: film grey levels replaced by their rank
    (1..254, histogram equalisation: gamma, contrast and brightness changes are monotone, so they
    no longer change the image); black fill 0 and saturated white 255, both without detail."""
    film = _film(work).astype(bool)
    info = film & (work < _WHITE)
    if not info.any():
        return np.zeros_like(work)
    hist = np.bincount(work[info], minlength=256).astype(np.float64)
    lut = np.rint(1 + 253 * np.cumsum(hist) / hist.sum()).astype(np.uint8)
    out = lut[work]
    out[film & (work >= _WHITE)] = 255
    out[~film] = 0
    return out


def _detail(prepared: np.ndarray) -> np.ndarray:
    """1 where a ``prepare``d image has film detail (neither black fill nor saturated white)."""
    return ((prepared > 0) & (prepared < 255)).astype(np.uint8)


def _film(img: np.ndarray) -> np.ndarray:
    """0 on black fill (near-black regions touching the frame: borders, the corners a rotation
    leaves), 1 elsewhere; dark film inside the frame (lungs of a dark copy) stays film."""
    black = (img <= _BLACK).astype(np.uint8)
    if not black.any():
        return np.ones(img.shape, np.uint8)
    _, labels = cv2.connectedComponents(black, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return (~np.isin(labels, edge)).astype(np.uint8)


def _aligned_score(template: np.ndarray, image: np.ndarray, warp: np.ndarray, sigma: float,
                   info_t: np.ndarray, info_i: np.ndarray) -> tuple[float, float]:  # fmt: skip
    """High-pass correlation of the two images aligned by ``warp`` (template -> image), and the overlap.

    Compared in the frame of the coarser of the two (the finer one blurred down to its
    resolution first), so a copy cropped and enlarged is not penalised for detail its
    original never had at this work size. Black fill carries no identity but sharp edges:
    left out, with a margin of twice the high-pass sigma.
    """
    scale = float(np.sqrt(abs(np.linalg.det(warp[:, :2].astype(np.float64)))))  # image px per template px
    if scale >= 1:  # the image is finer: bring it into the template's frame
        ref, size, src, flags = template, template.shape[::-1], image, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        ratio, info_ref, info_src = scale, info_t, info_i
    else:  # the template is finer: bring it into the image's frame
        ref, size, src, flags = image, image.shape[::-1], template, cv2.INTER_LINEAR
        ratio, info_ref, info_src = 1 / scale, info_i, info_t
    if ratio > 1.05:
        src = cv2.GaussianBlur(src, (0, 0), 0.5 * np.sqrt(ratio**2 - 1))
    moved = cv2.warpAffine(src, warp, size, flags=flags)
    nearest = (flags & ~cv2.INTER_LINEAR) | cv2.INTER_NEAREST
    valid = cv2.warpAffine(info_src, warp, size, flags=nearest) & info_ref
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8), iterations=int(np.ceil(2 * sigma))) > 0
    overlap = float(valid.mean())
    if overlap < 0.25:
        return -1.0, overlap
    a, b = highpass(ref, sigma)[valid], highpass(moved, sigma)[valid]
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-6)), overlap


def _transform_summary(warp: np.ndarray) -> tuple[float, float]:
    """Mean scale (image px per template px) and rotation in degrees of an affine warp."""
    a = warp[:, :2].astype(np.float64)
    return float(np.sqrt(abs(np.linalg.det(a)))), float(np.degrees(np.arctan2(a[1, 0], a[0, 0])))


def align_pair(stack: np.ndarray, has: np.ndarray, a: int, b: int, view_a: int, box_a: np.ndarray, view_b: int,
               box_b: np.ndarray, s: Settings) -> tuple[float, np.ndarray, float, int, int]:  # fmt: skip
    """Align one candidate pair; return (score, warp, overlap, view_a, view_b) of its best view pair.

    ``stack[i, v]`` is the ``prepare``d view ``v`` of image ``i`` where ``has[i, v]``.
    """
    score, warp, overlap = align(stack[a, view_a], box_a, stack[b, view_b], box_b, s)
    if _REFINE_FROM <= score < s.min_score:
        # close: the other view pairs may align better (a copy of a raw file with the other raw file)
        full = np.array([0, 0, s.work_size, s.work_size])
        for va2, vb2 in product(range(len(VIEWS)), range(len(VIEWS))):
            if (va2, vb2) == (view_a, view_b) or not has[a, va2] or not has[b, vb2]:
                continue
            alt = align(stack[a, va2], box_a if va2 == view_a else full, stack[b, vb2],
                        box_b if vb2 == view_b else full, s)  # fmt: skip
            if alt[0] > score:
                score, warp, overlap, view_a, view_b = *alt, va2, vb2
    return score, warp, overlap, view_a, view_b


# Candidate pairs per task sent to a worker process: large enough that sending them costs
# little next to ~100 ECC fits, small enough that both workers finish together.
_PAIRS_PER_TASK = 64
# The worker's attachment to the shared image stack (by shared-memory name), opened once.
_ATTACHED: dict[str, Any] = {}


def _shared_arrays(buf: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The image stack and its ``has`` table (which views exist), one after the other in ``buf``."""
    size = int(np.prod(shape))
    return (np.ndarray(shape, np.uint8, buffer=buf),
            np.ndarray(shape[:2], np.bool_, buffer=buf, offset=size))  # fmt: skip


def _align_task(shm_name: str, shape: tuple[int, ...], rows: list[tuple], s: Settings) -> list[tuple]:
    """``align_pair`` over some pairs, in a worker process, reading the images from shared memory."""
    if _ATTACHED.get("name") != shm_name:
        cv2.setNumThreads(1)  # one worker per core: OpenCV's own threads would only compete
        shm = shared_memory.SharedMemory(name=shm_name)
        _ATTACHED.update(name=shm_name, shm=shm, arrays=_shared_arrays(shm.buf, shape))
    stack, has = _ATTACHED["arrays"]
    return [align_pair(stack, has, *row, s) for row in rows]


def _load_task(raw: str | Path | None, cropped: str | Path | None, size: int,
               decode_margin: float) -> tuple[dict[str, np.ndarray], str]:  # fmt: skip
    cv2.setNumThreads(1)
    return load_views(raw, cropped, size, decode_margin)


def verify(stack: np.ndarray, has: np.ndarray, rows: Sequence[tuple], s: Settings,
           pool: ProcessPoolExecutor | None = None, shm_name: str = "",
           cache: CopyCache | None = None, keys: Sequence[str] = ()) -> pd.DataFrame:  # fmt: skip
    """Align each candidate pair (rows of ``pair_matches``), keep those scoring >= ``min_score``; with
    ``pool``, the pairs are aligned there (``stack`` and ``has`` then live in the shared memory
    ``shm_name``, ``_shared_arrays``), in the same order and with the same results as here. With
    ``cache`` (each image's content key in ``keys``, ``projection`` naming the PCA the window match
    was found with), a pair aligned by an earlier run is taken from it, not aligned again.
    """
    results: list[Any] = [None] * len(rows)
    pkeys: list[tuple] = []
    if cache is not None:
        settings = verify_settings(s)
        pkeys = [pair_key(keys[r[0]], keys[r[1]], r[2], r[3], r[4], r[5], settings) for r in rows]
        for k, pk in enumerate(pkeys):
            hit = cache.get_pair(pk)
            if hit is not None:
                score, warp, overlap, va, vb = hit
                results[k] = (score, np.asarray(warp, np.float32).reshape(2, 3), overlap, va, vb)
    todo = [k for k, r in enumerate(results) if r is None]
    if pool is None or not todo:
        fresh = [align_pair(stack, has, *rows[k], s) for k in todo]
    else:
        tasks = [pool.submit(_align_task, shm_name, stack.shape, [rows[k] for k in todo[j : j + _PAIRS_PER_TASK]], s)
                 for j in range(0, len(todo), _PAIRS_PER_TASK)]  # fmt: skip
        fresh = [r for t in tasks for r in t.result()]
    for k, result in zip(todo, fresh):
        score, warp, overlap, va, vb = result
        results[k] = (float(score), np.asarray(warp, np.float32), float(overlap), int(va), int(vb))
        if cache is not None:
            cache.put_pair(pkeys[k], (float(score), tuple(float(v) for v in np.ravel(warp)), float(overlap),
                                      int(va), int(vb)))  # fmt: skip
    out = []
    for row, (score, warp, overlap, va, vb) in zip(rows, results):
        if score >= s.min_score:
            scale, rot = _transform_summary(warp)
            out.append({"a": row[0], "b": row[1], "method": "aligned", "score": score, "view_a": VIEWS[va],
                        "view_b": VIEWS[vb], "overlap": overlap, "scale": scale, "rotation_deg": rot})  # fmt: skip
    return pd.DataFrame(out, columns=["a", "b", "method", "score", "view_a", "view_b", "overlap", "scale",
                                      "rotation_deg"])  # fmt: skip


def find_copies(ids: Sequence[str], raw_paths: Sequence[str | Path | None], cropped_paths: Sequence[str | Path | None],
                duplicates: Mapping[str, Any], workers: int = 1,
                cache: CopyCache | None = None) -> pd.DataFrame:  # fmt: skip
    """Pairs of images that show one radiograph (``PAIR_COLUMNS``), best score first.

    ``duplicates`` is the config's audit.duplicates. ``method`` is ``exact`` (same decoded
    pixels, score 1) or ``aligned`` (window candidate, ECC affine, high-pass correlation =
    ``score``); ``view_a``/``view_b`` say which views matched (raw file or cropped image),
    ``overlap`` the share of image a covered by b, ``scale``/``rotation_deg`` the transform.
    ``workers`` > 1 decodes and aligns in that many processes (the result is the same).
    With ``cache`` (cxrflow.copy_cache), images and pairs of earlier runs are not decoded or
    aligned again, and the result is still that of a run from scratch; ``cache.save()`` is the
    caller's.
    """
    ids = [str(i) for i in ids]
    if not len(ids) == len(raw_paths) == len(cropped_paths):
        raise ValueError(f"{len(ids)} ids, {len(raw_paths)} raw paths, {len(cropped_paths)} cropped paths")
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    s = Settings.from_config(duplicates)
    keys: list[str] = []
    loaded: list[Any] = [None] * len(ids)
    if cache is not None:
        shaping = shaping_settings(s)
        keys = [cache.content_key(raw, cropped, shaping) for raw, cropped in zip(raw_paths, cropped_paths)]
        loaded = [cache.get_views(k, VIEWS, s.work_size) for k in keys]
    todo = [i for i, hit in enumerate(loaded) if hit is None]
    if workers <= 1 or len(ids) < 2:
        for i in todo:
            loaded[i] = load_views(raw_paths[i], cropped_paths[i], s.work_size, s.decode_margin)
        _store_views(cache, keys, loaded, todo, s)
        return pairs_from_views(ids, [w for w, _ in loaded], [d for _, d in loaded], s, cache=cache, keys=keys)
    # spawn, not fork: forking a process whose BLAS/OpenCV threads ran can deadlock (cxrflow.crop_jobs).
    # The pool starts its processes on the first task: a run with everything cached starts none.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        fresh = pool.map(_load_task, [raw_paths[i] for i in todo], [cropped_paths[i] for i in todo],
                         [s.work_size] * len(todo), [s.decode_margin] * len(todo), chunksize=32)  # fmt: skip
        for i, views in zip(todo, fresh):
            loaded[i] = views
        _store_views(cache, keys, loaded, todo, s)
        return pairs_from_views(ids, [w for w, _ in loaded], [d for _, d in loaded], s, pool, cache=cache, keys=keys)


def shaping_settings(s: Settings) -> dict[str, Any]:
    """The settings that shape an image's work images (its cached views are keyed by them)."""
    return {"work_size": s.work_size, "decode_margin": s.decode_margin}


def verify_settings(s: Settings) -> tuple:
    """The settings an alignment depends on beyond its two images and window match."""
    return ("min_score", s.min_score, "highpass_sigma", s.highpass_sigma)


def _store_views(cache: CopyCache | None, keys: Sequence[str], loaded: Sequence[Any], todo: Sequence[int],
                 s: Settings) -> None:  # fmt: skip
    if cache is None:
        return
    for i in todo:
        views, digest = loaded[i]
        cache.put_views(keys[i], VIEWS, s.work_size, views, digest)


def _prepared_stack(works: Sequence[dict[str, np.ndarray]], s: Settings, stack: np.ndarray,
                    has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Every view ``prepare``d into ``stack[image, view]``, and which exist into ``has`` (all False on
    entry); each view is moved out of ``works`` as it is done, so that one copy of the images stays
    in memory."""
    for i, views in enumerate(works):
        for v, name in enumerate(VIEWS):
            if name in views:
                stack[i, v], has[i, v] = prepare(views.pop(name)), True
    return stack, has


def pairs_from_views(ids: Sequence[str], works: Sequence[dict[str, np.ndarray]], digests: Sequence[str],
                     s: Settings, pool: ProcessPoolExecutor | None = None, cache: CopyCache | None = None,
                     keys: Sequence[str] = ()) -> pd.DataFrame:  # fmt: skip
    """``find_copies`` on loaded uint8 work images (``load_views``); each is moved, ``prepare``d, into
    one array once the search no longer needs it (shared memory when ``pool`` aligns the pairs);
    ``cache`` and ``keys`` as ``verify`` takes them."""
    exact = []
    by_digest: dict[str, int] = {}
    for i, d in enumerate(digests):
        if d and d in by_digest:
            exact.append({"a": by_digest[d], "b": i, "method": "exact", "score": 1.0, "view_a": "raw",
                          "view_b": "raw", "overlap": 1.0, "scale": 1.0, "rotation_deg": 0.0})  # fmt: skip
        elif d:
            by_digest[d] = i
    verified = pd.DataFrame(columns=["a", "b"])
    if len(works) > 1:
        view_keys = view_digests(works)
        index = build_index(works, s, digests=view_keys, cache=cache, keys=keys)
        queries = query_vectors(works, index, s)
        cands = candidate_matches(works, index, s, queries)
        done = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in exact}
        pairs = sorted({(min(a, b), max(a, b)) for a, b in zip(cands["a"], cands["b"])} - done)
        rows = pair_matches(index, queries, pairs, view_keys)
        del index, queries, cands
        shape = (len(works), len(VIEWS), s.work_size, s.work_size)
        if pool is None:
            stack, has = _prepared_stack(works, s, np.zeros(shape, np.uint8), np.zeros(shape[:2], bool))
            verified = verify(stack, has, rows, s, cache=cache, keys=keys)
        else:
            shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) + int(np.prod(shape[:2])))
            try:
                stack, has = _prepared_stack(works, s, *_shared_arrays(shm.buf, shape))
                verified = verify(stack, has, rows, s, pool, shm.name, cache, keys)
                del stack, has  # no view of the buffer may outlive it
            finally:
                shm.close()
                shm.unlink()
    pairs = pd.concat([pd.DataFrame(exact), verified], ignore_index=True) if exact else verified
    if pairs.empty:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    id_arr = np.asarray(ids, dtype=object)
    a, b = pairs["a"].to_numpy(int), pairs["b"].to_numpy(int)
    first = np.where(id_arr[a] <= id_arr[b], a, b)
    second = np.where(id_arr[a] <= id_arr[b], b, a)
    swap = first != a
    out = pd.DataFrame({"image_id_a": id_arr[first], "image_id_b": id_arr[second]})
    for col in ("method", "score", "overlap", "scale", "rotation_deg"):
        out[col] = pairs[col].to_numpy()
    out["view_a"] = np.where(swap, pairs["view_b"], pairs["view_a"])
    out["view_b"] = np.where(swap, pairs["view_a"], pairs["view_b"])
    out["score"] = out["score"].astype(float).round(4)
    for col in ("overlap", "scale", "rotation_deg"):
        out[col] = out[col].astype(float).round(3)
    return out[list(PAIR_COLUMNS)].sort_values(["score", "image_id_a", "image_id_b"], ascending=[False, True, True],
                                               ignore_index=True)  # fmt: skip
