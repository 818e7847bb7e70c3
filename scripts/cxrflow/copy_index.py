"""The candidate stage of the copy search: each image's two views (raw and cropped, squashed
to ``work_size``), their window thumbnails, and the inverted file over them (PCA, the cells of
an inverted multi-index) that proposes candidate pairs instead of all pairs. The method: ``copies``.

Everything here is a function of content, so that a dataset update can reuse what an earlier
run computed and still get the result of a run from scratch: the PCA and the cells are fitted
on the 16 images with the smallest content keys; each image's descriptors, cells and candidate
list depend on its own windows and on the others' only through exact, order-free
comparisons (descriptors are stored as integers small enough that their dot products are
exact in float32, so any blocking of the search gives the same numbers; ties go to the
smaller image id).
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
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from .decode import ImageError, decode_image


VIEWS = ("raw", "cropped")


# Grey level up to which a pixel is black fill, not film.
_BLACK = 6
# Below this many windows the index is one cell (exact search): k-means would cost more than it saves.
_MIN_CELLED = 20_000


# Images whose windows fit the PCA (16 images: 2,592 windows for 32 components; measured recall
# on the planted copies 0.975 with 25 images, 0.970 with 200, bench/README.md).
_PCA_IMAGES = 16
# Query rows multiplied against one cell's windows at a time (bounds the similarity block).
_BLOCK = 2048
# Search hits held before they are reduced to what can still be among each image's best.
_COMPACT = 20_000_000


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
    coarse_min: float
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


@dataclass(frozen=True)
class Projection:
    """The whitened PCA of window thumbnails (``fit_projection``) and the windows it is applied to."""

    mean: np.ndarray  # (thumb²,) float32
    matrix: np.ndarray  # (thumb², dims) float32: components over the square root of their variance
    key: str  # names the fit and the window settings: stored descriptors are reused only under the same one

    def apply(self, thumbs: np.ndarray) -> np.ndarray:
        y = (thumbs - self.mean) @ self.matrix
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-6)


def fit_projection(sample: Sequence[Mapping[str, np.ndarray]], s: Settings) -> Projection:
    """The PCA (whitened, ``dims`` components) of every window thumbnail of the sample images' views
    (``projection_sample``: the images with the smallest content keys)."""
    boxes = window_boxes(s.work_size, s.max_crop, s.crop_steps)
    fit = np.concatenate([thumbnails(views[name], boxes, s.thumb) for views in sample for name in VIEWS
                          if name in views])  # fmt: skip
    pca = PCA(n_components=min(s.dims, *fit.shape), whiten=True, random_state=0).fit(fit)
    matrix = (pca.components_.T / np.sqrt(pca.explained_variance_)).astype(np.float32)
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps([s.work_size, s.thumb, s.max_crop, s.crop_steps, s.query_crop]).encode())
    h.update(pca.mean_.astype(np.float32).tobytes() + matrix.tobytes())
    return Projection(pca.mean_.astype(np.float32), matrix, h.hexdigest())


def content_order(keys: Sequence[str], ids: Sequence[str]) -> list[int]:
    """Images by content key (then id): the order in which samples are drawn, so that they depend on
    the images' content and not on the collection's size or order."""
    return sorted(range(len(keys)), key=lambda i: (keys[i], ids[i]))


def projection_sample(keys: Sequence[str], ids: Sequence[str]) -> list[int]:
    """The images the PCA is fitted on: an update moves the projection only when it adds or removes one."""
    return content_order(keys, ids)[:_PCA_IMAGES]


def quantized(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors as int16 multiples of 1/``quantum(dims)``: every dot product of two of them is an
    integer below 2**24, which float32 holds exactly whatever the order of the sum (the search
    runs at float32 speed and still gives the same numbers however it is cut into blocks)."""
    return np.rint(vectors * quantum(vectors.shape[1])).astype(np.int16)


def quantum(dims: int) -> int:
    return int(np.sqrt(2**24 / dims))


def exact(x: np.ndarray) -> np.ndarray:
    """Quantized vectors as float32 for matrix products (exact: ``quantized``)."""
    return x.astype(np.float32)


@dataclass(frozen=True)
class Described:
    """One image's search descriptors: the pixel digest (exact copies), which views exist, the window
    vectors (views present x ``window_boxes``) and the query vectors (views present x ``query_boxes``),
    both ``quantized`` unit vectors."""

    digest: str
    views: tuple[int, ...]
    windows: np.ndarray
    queries: np.ndarray


def describe(views: Mapping[str, np.ndarray], digest: str, projection: Projection, s: Settings) -> Described:
    boxes = window_boxes(s.work_size, s.max_crop, s.crop_steps)
    qboxes = query_boxes(s.work_size, s.query_crop)
    present = tuple(v for v, name in enumerate(VIEWS) if name in views)
    win = np.concatenate([projection.apply(thumbnails(views[VIEWS[v]], boxes, s.thumb)) for v in present])
    query = np.concatenate([projection.apply(thumbnails(views[VIEWS[v]], qboxes, s.thumb)) for v in present])
    return Described(digest, present, quantized(win), quantized(query))


@dataclass
class Index:
    """Every image's windows and queries in one array each, image by image (``starts``)."""

    windows: np.ndarray  # (n_windows, dims) int16, ``quantized``
    w_img: np.ndarray  # owning image per window (non-decreasing)
    w_start: np.ndarray  # (n_images + 1,) first window of each image
    queries: np.ndarray  # (n_queries, dims) int16
    q_img: np.ndarray
    q_start: np.ndarray
    views: list[tuple[int, ...]]  # views present per image

    @classmethod
    def of(cls, described: Sequence[Described]) -> Index:
        w_len = np.array([len(d.windows) for d in described])
        q_len = np.array([len(d.queries) for d in described])
        return cls(np.concatenate([d.windows for d in described]), np.repeat(np.arange(len(described)), w_len),
                   np.concatenate([[0], np.cumsum(w_len)]), np.concatenate([d.queries for d in described]),
                   np.repeat(np.arange(len(described)), q_len), np.concatenate([[0], np.cumsum(q_len)]),
                   [d.views for d in described])  # fmt: skip

    def placed(self, row: int, owner: np.ndarray, start: np.ndarray, boxes: np.ndarray) -> tuple[int, np.ndarray]:
        """(view, box) of a window row (``owner``, ``start``: ``w_img``, ``w_start``; ``boxes``:
        ``window_boxes``) or of a query row (``q_img``, ``q_start``, ``query_boxes``)."""
        i = int(owner[row])
        k = row - int(start[i])
        return self.views[i][k // len(boxes)], boxes[k % len(boxes)]


def spans(start: np.ndarray, images: Sequence[int]) -> np.ndarray:
    """The rows of ``images`` in an array laid out image by image (``start``: ``Index.w_start`` or ``q_start``)."""
    if not len(images):
        return np.zeros(0, int)
    return np.concatenate([np.arange(start[i], start[i + 1]) for i in images])


def cell_count(n_windows: int, s: Settings) -> int:
    """Cells of the inverted file: ``cells_per_sqrt`` x sqrt(windows), rounded to the nearest power of
    two (one cell below ``_MIN_CELLED`` windows), so that a small update keeps the count, and with it
    the cells and every candidate list they shape."""
    if n_windows < _MIN_CELLED:
        return 1
    return int(2 ** np.rint(np.log2(s.cells_per_sqrt * np.sqrt(n_windows))))


def codebook_size(n_cells: int) -> int:
    """Centroids per half of the dims: the inverted multi-index has their square as cells, the
    nearest square to ``n_cells``."""
    return max(1, int(np.rint(np.sqrt(n_cells))))


def fit_cells(sample: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The inverted multi-index's two codebooks: k-means (``k`` centroids) of the first and of the
    second half of the sample windows' dims, side by side in one (k, dims) array (first half's
    centroids in the first dims // 2 columns), in the windows' integer units, so that each half's
    squared distance, as ``assign_cells`` ranks it, is an exact integer.

    The sample is the windows of the projection's images (``projection_sample``): the cells then
    move exactly when the projection does (k centroids per half need only k, not k x k, clusters'
    worth of windows: 16 images' 2,592 windows fit 45-64 centroids a half)."""
    half = sample.shape[1] // 2
    books = []
    for part in (sample[:, :half], sample[:, half:]):
        km = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=100).fit(part.astype(np.float32))
        books.append(np.rint(km.cluster_centers_).astype(np.int16))
    return np.concatenate(books, axis=1)


def cells_key(centroids: np.ndarray, probe: int) -> str:
    return hashlib.blake2b(np.ascontiguousarray(centroids).tobytes() + str(probe).encode(), digest_size=8).hexdigest()


def _half_scores(x: np.ndarray, book: np.ndarray) -> np.ndarray:
    """2 x.c - |c|^2 for each row of ``x`` and centroid ``c`` (higher is nearer: |x - c|^2 less the
    row's own |x|^2), exact integers: x.c in float32 (``quantized``: below 2**24), the rest in float64."""
    c = exact(book)
    return 2 * (exact(x) @ c.T).astype(np.float64) - (c.astype(np.float64) ** 2).sum(axis=1)


def _best(key: np.ndarray, n: int) -> np.ndarray:
    """Column indices of each row's ``n`` largest keys, largest first (keys distinct: exact float64)."""
    top = np.argpartition(-key, n - 1, axis=1)[:, :n] if n < key.shape[1] else np.tile(np.arange(key.shape[1]),
                                                                                        (len(key), 1))  # fmt: skip
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(key, top, axis=1), axis=1), axis=1)


def assign_cells(windows: np.ndarray, queries: np.ndarray, centroids: np.ndarray,
                 probe: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each window's cell and each query's ``probe`` nearest cells (nearest first; on a tie the lower
    cell), computed exactly, so that an image's cells do not depend on what it was computed with.

    A cell is a pair of centroids (``fit_cells``), one per half of the dims, id c1 x k + c2; its
    distance to a vector is the sum of the halves' distances. A window's cell is each half's nearest
    centroid; a query's ``probe`` nearest cells are among the pairs of each half's ``probe``
    nearest (a pair outside them has ``probe`` pairs nearer, or as near with a lower id), so the
    search ranks probe x probe sums, not k x k.
    """
    k, half = len(centroids), centroids.shape[1] // 2
    halves = ((slice(None, half), centroids[:, :half]), (slice(half, None), centroids[:, half:]))
    probe, per_half = min(probe, k * k), min(probe, k)
    rows = max(1, _BLOCK * 8 * 1024 // k)  # ~128 MB of scores at a time
    cell = np.zeros(len(windows), np.int32)
    for at in range(0, len(windows), rows):
        c1, c2 = (np.argmax(_half_scores(windows[at : at + rows, cols], book), axis=1) for cols, book in halves)
        cell[at : at + rows] = c1 * k + c2
    parts = []
    for at in range(0, len(queries), rows):
        q = queries[at : at + rows]
        tops, scores = [], []
        for cols, book in halves:
            score = _half_scores(q[:, cols], book)
            tops.append(_best(score * k - np.arange(k), per_half))  # by score, then by the lower centroid
            scores.append(np.take_along_axis(score, tops[-1], axis=1))
        pair = (tops[0][:, :, None] * k + tops[1][:, None, :]).reshape(len(q), -1)
        total = (scores[0][:, :, None] + scores[1][:, None, :]).reshape(len(q), -1)
        parts.append(np.take_along_axis(pair, _best(total * (k * k) - pair, probe), axis=1))  # then the lower cell
    near = np.concatenate(parts or [np.zeros((0, probe), int)]).astype(np.int32)
    return cell, near


def best_others(index: Index, q_rows: np.ndarray, q_cells: np.ndarray, w_rows: np.ndarray, w_cell: np.ndarray,
                keep: int, min_sim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(a, b, sim): for query images a (the owners of ``q_rows``, probing ``q_cells``) and window owners
    b (of ``w_rows``, in cells ``w_cell``), the best similarity of a query of a and a window of b
    in one of its probed cells, where it is >= ``min_sim``, b != a. Only pairs that can be among a's
    ``keep`` best are returned: per query and cell, the owners at or above the ``keep``-th best
    (all ties kept); the best ``keep`` of a over any set of owners are therefore among them.
    """
    probe = q_cells.shape[1]
    scale = float(quantum(index.windows.shape[1]) ** 2)  # similarity 1 as a quantized dot product
    pq = np.repeat(q_rows, probe)
    pc = q_cells.ravel()
    q_order = np.lexsort((pq, pc))
    pq, pc = pq[q_order], pc[q_order]
    w_order = np.lexsort((w_rows, w_cell))
    wr, wc = w_rows[w_order], w_cell[w_order]
    cells = np.intersect1d(pc, wc)
    q_lo, q_hi = np.searchsorted(pc, cells, "left"), np.searchsorted(pc, cells, "right")
    w_lo, w_hi = np.searchsorted(wc, cells, "left"), np.searchsorted(wc, cells, "right")
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    out_s: list[np.ndarray] = []
    held = 0
    for k in range(len(cells)):
        mem = wr[w_lo[k] : w_hi[k]]
        owners = index.w_img[mem]
        starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
        count = np.diff(np.r_[starts, len(mem)])
        # most owners have one window in a cell: those columns are taken as they are, the others'
        # (placed after them) reduced to each owner's best
        lone = count[np.searchsorted(starts, np.arange(len(mem)), "right") - 1] == 1
        mem = np.r_[mem[lone], mem[~lone]]
        n_lone = int(lone.sum())
        cols = np.r_[owners[starts[count == 1]], owners[starts[count > 1]]]
        tail = np.r_[0, np.cumsum(count[count > 1])[:-1]].astype(int)
        sorter = np.argsort(cols, kind="stable")
        vecs = exact(index.windows[mem]).T
        qs = pq[q_lo[k] : q_hi[k]]
        for first in range(0, len(qs), _BLOCK):
            block = qs[first : first + _BLOCK]
            img = index.q_img[block]  # rows stay queries: two queries of one image rarely share a cell
            sims = exact(index.queries[block]) @ vecs
            if n_lone < len(mem):
                sims = np.concatenate([sims[:, :n_lone], np.maximum.reduceat(sims[:, n_lone:], tail, axis=1)], axis=1)
            at = np.minimum(np.searchsorted(cols, img, sorter=sorter), len(cols) - 1)
            hit = np.flatnonzero(cols[sorter[at]] == img)
            sims[hit, sorter[at[hit]]] = -np.inf  # never oneself
            floor = np.full(len(img), min_sim * scale)
            if sims.shape[1] > keep:
                floor = np.maximum(floor, np.partition(sims, -keep, axis=1)[:, -keep])
            r, c = np.nonzero(sims >= floor[:, None])
            out_a.append(img[r])
            out_b.append(cols[c])
            out_s.append(sims[r, c])
            held += len(r)
        if held > _COMPACT:  # bound the memory: only what can still be among each image's best
            ca, cb, cs = _compact(out_a, out_b, out_s, keep)
            out_a, out_b, out_s, held = [ca], [cb], [cs], len(ca)
    if not out_a:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    a, b, sim = _compact(out_a, out_b, out_s, keep)
    return a, b, sim.astype(np.float64) / scale


def _compact(out_a: list[np.ndarray], out_b: list[np.ndarray], out_s: list[np.ndarray],
             keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Hits reduced to each (a, b)'s best, then to the b at or above a's ``keep``-th best (ties kept):
    exactly what a's ``keep`` best over these hits and any later ones can draw on."""
    a, b, sim = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)
    order = np.lexsort((b, -sim, a))  # per a, best first (then by b, so that the order is fixed)
    a, b, sim = a[order], b[order], sim[order]
    seen = np.zeros(len(a), bool)
    pair = a.astype(np.int64) * (int(b.max(initial=0)) + 1) + b
    _, first = np.unique(pair, return_index=True)
    seen[first] = True  # each (a, b) at its best
    a, b, sim = a[seen], b[seen], sim[seen]
    start = np.searchsorted(a, a, "left")
    rank = np.arange(len(a)) - start
    kth = sim[np.minimum(start + keep - 1, np.searchsorted(a, a, "right") - 1)]
    kept = (rank < keep) | (sim >= kth)
    return a[kept], b[kept], sim[kept]


# A candidate list: (similarity, other id, other content key), best first, ties to the smaller id;
# and whether it holds every other image at or above candidate_min (else only the best ``keep``).
Entry = tuple[float, str, str]


@dataclass
class CandidateList:
    entries: list[Entry]
    complete: bool


def ranked(entries: Sequence[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (-e[0], e[1], e[2]))


def lists_from(a: np.ndarray, b: np.ndarray, sim: np.ndarray, images: Sequence[int], ids: Sequence[str],
               keys: Sequence[str], keep: int) -> dict[int, CandidateList]:  # fmt: skip
    """Each of ``images``' candidate list from ``best_others`` over all owners."""
    found: dict[int, list[Entry]] = {int(i): [] for i in images}
    for x, y, v in zip(a.tolist(), b.tolist(), sim.tolist()):
        found[x].append((v, ids[y], keys[y]))
    return {i: CandidateList(ranked(e)[:keep], len(e) <= keep) for i, e in found.items()}


def merged(stored: CandidateList, new: Sequence[Entry], keep: int) -> CandidateList:
    """A stored list (its departed entries already dropped) with the entries of new images: the
    result a full search would give, as far as it is known (a truncated list is cut after its own
    last entry, beyond which images it never held may rank)."""
    both = ranked([*stored.entries, *new])
    if stored.complete:
        return CandidateList(both[:keep], len(both) <= keep)
    last = both.index(stored.entries[-1]) + 1 if stored.entries else 0
    return CandidateList(both[: min(keep, last)], False)


def pair_matches(index: Index, pairs: Sequence[tuple[int, int]], order_key: Sequence[tuple[str, str]],
                 s: Settings) -> list[tuple]:  # fmt: skip
    """The window match each candidate pair is aligned from: the best of all query windows of one image
    against all windows of the other, in both directions (the better one; on a tie, the image first
    in ``order_key`` (content key, id) as template). A function of the two images alone, unlike the
    match the cells happened to return, so that an alignment from an earlier run is the one a run
    from scratch would make.

    Rows: (template, image, view_t, box_t, view_i, box_i).
    """
    directed: dict[int, list[int]] = {}
    for a, b in pairs:
        directed.setdefault(a, []).append(b)
        directed.setdefault(b, []).append(a)
    best: dict[tuple[int, int], tuple[float, int, int]] = {}
    for a, partners in directed.items():
        qv = exact(index.queries[index.q_start[a] : index.q_start[a + 1]])
        cols = spans(index.w_start, partners)
        sims = qv @ exact(index.windows[cols]).T
        flat = sims.max(axis=0)
        lengths = [index.w_start[b + 1] - index.w_start[b] for b in partners]
        starts = np.cumsum([0, *lengths])[:-1]
        for k, b in enumerate(partners):
            seg = flat[starts[k] : starts[k] + lengths[k]]
            w = int(np.argmax(seg))
            col = int(starts[k]) + w
            best[(a, b)] = (float(seg[w]), int(index.q_start[a] + np.argmax(sims[:, col])), int(cols[col]))
    boxes = window_boxes(s.work_size, s.max_crop, s.crop_steps)
    qboxes = query_boxes(s.work_size, s.query_crop)
    rows = []
    for a, b in pairs:
        ab, ba = best[(a, b)], best[(b, a)]
        if ba[0] > ab[0] or (ba[0] == ab[0] and order_key[b] < order_key[a]):
            a, b, ab = b, a, ba
        _, qi, wi = ab
        rows.append(
            (
                a,
                b,
                *index.placed(qi, index.q_img, index.q_start, qboxes),
                *index.placed(wi, index.w_img, index.w_start, boxes),
            )
        )
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
