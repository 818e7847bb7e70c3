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
   windows are indexed in an inverted multi-index (a k-means codebook per half of the
   dims, a cell per pair of centroids, the ``probe`` nearest cells searched per query),
   so the cost grows with n x (n / cells) x probe, not n².
2. Verification of each candidate image pair. Both views are ``prepare``d once: grey levels
   replaced by their rank among the film's pixels (monotone contrast, brightness and gamma
   changes vanish), black fill (near-black regions touching the frame: borders, rotation
   corners) and saturated white marked as without detail. The window match gives a first
   affine transform; a pair whose blurred half-resolution images do not correlate under it
   (``coarse_min``) is not aligned; the others are refined by ECC (``cv2.findTransformECC``,
   affine, half then full work resolution); the score is the normalised correlation of the two *high-pass* images over
   the pixels with detail in both, in the frame of the coarser image. Band-pass detail (rib
   edges, vessels, tubes, JPEG-robust at this scale) is what distinguishes one film from
   another film of the same patient; the low frequencies that make all chest X-rays alike
   are removed.

Pairs with a score >= ``min_score`` are copies. Exact pixel copies are matched first
(digest of the decoded pixels) and skip the verification. With ``workers`` > 1 the files are
decoded and described and the pairs aligned in that many spawned processes (the prepared images
in one shared-memory array); the search itself runs in the calling process. With a cache, a run
computes only what involves images it has not seen (``_Search.candidates``), and its result is
that of a run from scratch. Measured precision/recall and
speed: bench/README.md, docs/audits.md. Stage 1 lives in ``copy_index``, stage 2 in ``copy_align``;
this module runs them, with the worker pool and the cache (``copy_cache``).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from .copy_align import align_pair, prepare, transform_summary
from .copy_cache import CopyCache, digest_key
from .copy_index import (
    VIEWS,
    CandidateList,
    Described,
    Entry,
    Index,
    Projection,
    Settings,
    assign_cells,
    best_others,
    cell_count,
    cells_key,
    codebook_size,
    content_order,
    describe,
    fit_cells,
    fit_projection,
    lists_from,
    load_views,
    merged,
    pair_matches,
    projection_sample,
    spans,
)

PAIR_COLUMNS = ("image_id_a", "image_id_b", "method", "score", "view_a", "view_b", "overlap", "scale",
                "rotation_deg")  # fmt: skip


# Candidate list length per ``candidates`` (the longer list survives removals without a new search).
_LIST_FACTOR = 2
# Candidate pairs per task sent to a worker process: large enough that sending them costs
# little next to ~100 ECC fits, small enough that both workers finish together.
_PAIRS_PER_TASK = 64
# Below these, images are decoded and pairs aligned in this process: starting the pool's processes
# (~1-2 s) costs more than an update's few new images and pairs.
_POOL_IMAGES = 64
_POOL_PAIRS = 1024
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


def _describe_task(raw: str | Path | None, cropped: str | Path | None,
                   at_hand: tuple[dict[str, np.ndarray], str] | None, projection: Projection,
                   s: Settings) -> tuple[tuple[dict[str, np.ndarray], str], Described]:  # fmt: skip
    """Decode an image (unless its work images and digest are ``at_hand``) and describe it; in a worker process."""
    cv2.setNumThreads(1)
    views, digest = load_views(raw, cropped, s.work_size, s.decode_margin) if at_hand is None else at_hand
    return (views, digest), describe(views, digest, projection, s)


def _load_task(raw: str | Path | None, cropped: str | Path | None, size: int,
               decode_margin: float) -> tuple[dict[str, np.ndarray], str]:  # fmt: skip
    cv2.setNumThreads(1)
    return load_views(raw, cropped, size, decode_margin)


class _Search:
    """One run of ``find_copies``: the images, their keys, the work images at hand, the pool."""

    def __init__(self, ids: list[str], raw: Sequence[Any], cropped: Sequence[Any], s: Settings, cache: CopyCache,
                 pool: ProcessPoolExecutor | None) -> None:  # fmt: skip
        self.ids, self.raw, self.cropped, self.s, self.cache, self.pool = ids, raw, cropped, s, cache, pool
        self.keys = [cache.content_key(r, c, shaping_settings(s)) for r, c in zip(raw, cropped)]
        self.order = content_order(self.keys, ids)
        # work images and pixel digest of the images decoded or read back this run
        self.views: dict[int, tuple[dict[str, np.ndarray], str]] = {}

    def work_images(self, images: Sequence[int]) -> dict[int, tuple[dict[str, np.ndarray], str]]:
        """The work images of ``images``: at hand, read back from the cache, or decoded."""
        s, todo = self.s, []
        for i in images:
            if i not in self.views:
                hit = self.cache.get_views(self.keys[i], VIEWS, s.work_size)
                if hit is None:
                    todo.append(i)
                else:
                    self.views[i] = hit
        args = ([self.raw[i] for i in todo], [self.cropped[i] for i in todo], [s.work_size] * len(todo),
                [s.decode_margin] * len(todo))  # fmt: skip
        loaded = (map(_load_task, *args) if self.pool is None or len(todo) < _POOL_IMAGES
                  else self.pool.map(_load_task, *args, chunksize=16))  # fmt: skip
        for i, (views, digest) in zip(todo, loaded):
            self.views[i] = views, digest
            self.cache.put_views(self.keys[i], VIEWS, s.work_size, views, digest)
        return {i: self.views[i] for i in images}

    def projection(self) -> Projection:
        sample = projection_sample(self.keys, self.ids)
        key = digest_key("projection", [self.keys[i] for i in sample], descriptor_settings(self.s))
        fitted = self.cache.get("projection", key)
        if fitted is None:
            views = self.work_images(sample)
            fitted = fit_projection([views[i][0] for i in sample], self.s)
            self.cache.put("projection", key, fitted)
        return fitted

    def described(self, projection: Projection) -> list[Described]:
        """Every image's descriptors: from the cache, or from its work images (decoded where needed)."""
        s, cache = self.s, self.cache
        out: list[Any] = [cache.get("described", (projection.key, k)) for k in self.keys]
        todo = [i for i, d in enumerate(out) if d is None]
        cache.described += len(todo)
        cache.described_reused += len(out) - len(todo)
        at_hand = {i: self.views.get(i) or cache.get_views(self.keys[i], VIEWS, s.work_size) for i in todo}
        args = ([self.raw[i] for i in todo], [self.cropped[i] for i in todo], [at_hand[i] for i in todo],
                [projection] * len(todo), [s] * len(todo))  # fmt: skip
        done = (map(_describe_task, *args) if self.pool is None or len(todo) < _POOL_IMAGES
                else self.pool.map(_describe_task, *args, chunksize=16))  # fmt: skip
        for i, (views, d) in zip(todo, done):
            if at_hand[i] is None:
                cache.put_views(self.keys[i], VIEWS, s.work_size, *views)
            self.views[i] = views
            out[i] = d
            cache.put("described", (projection.key, self.keys[i]), d)
        for k in self.keys:
            cache.keep_views(k)
        return out

    def cells(self, index: Index, projection: Projection) -> tuple[str, np.ndarray, np.ndarray]:
        """The cells' key, each window's cell and each query's probed cells (from the cache where known)."""
        s, cache = self.s, self.cache
        per_half = codebook_size(cell_count(len(index.windows), s))
        if per_half == 1:
            centroids = np.zeros((1, index.windows.shape[1]), np.int16)
        else:
            # fitted on the projection's images: they move together, and an update that leaves those
            # 16 images alone reuses both
            sample = projection_sample(self.keys, self.ids)
            key = digest_key("cells", projection.key, [self.keys[i] for i in sample], per_half)
            centroids = cache.get("cells", key)
            if centroids is None:
                centroids = fit_cells(index.windows[spans(index.w_start, sample)], per_half)
                cache.put("cells", key, centroids)
        ckey = cells_key(centroids, s.probe) + projection.key
        stored = [cache.get("assigned", (ckey, k)) for k in self.keys]
        todo = [i for i, hit in enumerate(stored) if hit is None]
        if todo:
            w, q = spans(index.w_start, todo), spans(index.q_start, todo)
            w_cell, q_near = assign_cells(index.windows[w], index.queries[q], centroids, s.probe)
            w_at = np.cumsum([0] + [index.w_start[i + 1] - index.w_start[i] for i in todo])
            q_at = np.cumsum([0] + [index.q_start[i + 1] - index.q_start[i] for i in todo])
            for k, i in enumerate(todo):
                stored[i] = (w_cell[w_at[k] : w_at[k + 1]], q_near[q_at[k] : q_at[k + 1]])
                cache.put("assigned", (ckey, self.keys[i]), stored[i])
        return ckey, np.concatenate([c for c, _ in stored]), np.concatenate([n for _, n in stored])

    def candidates(self, index: Index, ckey: str, w_cell: np.ndarray, q_near: np.ndarray) -> list[tuple[int, int]]:
        """Candidate pairs: each image with the ``candidates`` first of its candidate list. Lists of
        earlier runs are updated with the images added since (their windows searched by the
        stored images' queries) and cleared of those removed; new images, and lists that lost too
        much of a truncated tail, are searched in full. The lists equal those of a full search."""
        s, cache, ids, keys = self.s, self.cache, self.ids, self.keys
        keep = _LIST_FACTOR * s.candidates
        skey = digest_key("lists", ckey, s.candidate_min, keep)
        at = {(ids[i], keys[i]): i for i in range(len(ids))}
        lists: dict[int, CandidateList] = {}
        for i in range(len(ids)):
            hit = cache.get("lists", (skey, ids[i], keys[i]))
            if hit is not None:
                kept = [e for e in hit.entries if (e[1], e[2]) in at]
                if hit.complete or len(kept) >= s.candidates:
                    lists[i] = CandidateList(kept, hit.complete)
        full = np.array([i for i in range(len(ids)) if i not in lists], int)
        old = np.array(sorted(lists), int)
        cache.lists_searched += len(full)
        cache.lists_reused += len(old)

        all_w = np.arange(len(index.windows))
        if len(full):
            q = spans(index.q_start, full)
            found = best_others(index, q, q_near[q], all_w, w_cell, keep + 1, s.candidate_min)
            lists.update(lists_from(*found, full.tolist(), ids, keys, keep))
        if len(old):
            new: dict[int, list[Entry]] = {}
            if len(full):
                q, w = spans(index.q_start, old), spans(index.w_start, full)
                for a, b, v in zip(*(x.tolist() for x in best_others(index, q, q_near[q], w, w_cell[w], keep + 1,
                                                                      s.candidate_min))):  # fmt: skip
                    new.setdefault(a, []).append((v, ids[b], keys[b]))
            for i in old.tolist():
                lists[i] = merged(lists[i], new.get(i, []), keep)
        pairs = set()
        for i, found_list in lists.items():
            cache.put("lists", (skey, ids[i], keys[i]), found_list)
            for _, other_id, other_key in found_list.entries[: s.candidates]:
                j = at[(other_id, other_key)]
                pairs.add((min(i, j), max(i, j)))
        return sorted(pairs)

    def verify(self, index: Index, pairs: Sequence[tuple[int, int]], projection: Projection) -> pd.DataFrame:
        """Align each candidate pair from its window match (``pair_matches``), keep those scoring >=
        ``min_score``. A pair aligned by an earlier run is taken from the cache: its window match,
        and so its alignment, is a function of the two images' content and the projection; under
        another projection, the alignment of the same window match is reused. Only
        the images of pairs still to align are loaded (``work_images``) and ``prepare``d, into
        shared memory when a pool aligns them."""
        s, cache, keys = self.s, self.cache, self.keys
        settings = verify_settings(s)
        pkeys = [(*sorted((keys[a], keys[b])), projection.key, settings) for a, b in pairs]
        results: list[Any] = [cache.get("pairs", k) for k in pkeys]
        cache.pairs_reused += sum(r is not None for r in results)
        todo = [k for k, r in enumerate(results) if r is None]
        if todo:  # a moved projection: the window match may still be the same, and so the alignment
            rows = pair_matches(index, [pairs[k] for k in todo], [(k, i) for k, i in zip(keys, self.ids)], s)
            mkeys = [(keys[r[0]], keys[r[1]], r[2], tuple(int(v) for v in r[3]), r[4], tuple(int(v) for v in r[5]),
                      settings) for r in rows]  # fmt: skip
            for k, mkey in zip(todo, mkeys):
                hit = cache.get("matched", mkey)
                if hit is not None:
                    results[k] = (mkey[0], *hit)
                    cache.pairs_reused += 1
            left = [n for n, k in enumerate(todo) if results[k] is None]
            todo, rows, mkeys = [todo[n] for n in left], [rows[n] for n in left], [mkeys[n] for n in left]
        cache.pairs_aligned += len(todo)
        if todo:
            images = sorted({i for row in rows for i in row[:2]})
            local = {i: n for n, i in enumerate(images)}
            views = self.work_images(images)
            local_rows = [(local[row[0]], local[row[1]], *row[2:]) for row in rows]
            shape = (len(images), len(VIEWS), s.work_size, s.work_size)
            if self.pool is None or len(todo) < _POOL_PAIRS:
                stack, has = _prepared_stack([views[i][0] for i in images], np.zeros(shape, np.uint8),
                                             np.zeros(shape[:2], bool))  # fmt: skip
                fresh = [align_pair(stack, has, *row, s) for row in local_rows]
            else:
                shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) + int(np.prod(shape[:2])))
                try:
                    stack, has = _prepared_stack([views[i][0] for i in images], *_shared_arrays(shm.buf, shape))
                    tasks = [self.pool.submit(_align_task, shm.name, shape, local_rows[j : j + _PAIRS_PER_TASK], s)
                             for j in range(0, len(local_rows), _PAIRS_PER_TASK)]  # fmt: skip
                    fresh = [r for t in tasks for r in t.result()]
                    del stack, has  # no view of the buffer may outlive it
                finally:
                    shm.close()
                    shm.unlink()
            for k, row, mkey, (score, warp, overlap, va, vb) in zip(todo, rows, mkeys, fresh):
                results[k] = (keys[row[0]], float(score), tuple(float(v) for v in np.ravel(warp)), float(overlap),
                              int(va), int(vb))  # fmt: skip
                cache.put("matched", mkey, results[k][1:])
        out = []
        for (a, b), key, result in zip(pairs, pkeys, results):
            cache.put("pairs", key, result)
            template, score, warp, overlap, va, vb = result
            if score >= s.min_score:
                if keys[a] != template:
                    a, b = b, a
                scale, rot = transform_summary(np.asarray(warp, np.float32).reshape(2, 3))
                out.append({"a": a, "b": b, "method": "aligned", "score": score, "view_a": VIEWS[va],
                            "view_b": VIEWS[vb], "overlap": overlap, "scale": scale, "rotation_deg": rot})  # fmt: skip
        return pd.DataFrame(out, columns=["a", "b", "method", "score", "view_a", "view_b", "overlap", "scale",
                                          "rotation_deg"])  # fmt: skip

    def run(self) -> pd.DataFrame:
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.cache.seconds[stage] = self.cache.seconds.get(stage, 0.0) + now - clock
            clock = now

        projection = self.projection()
        described = self.described(projection)
        lap("describe")
        exact = []
        by_digest: dict[str, int] = {}
        for i in self.order:
            d = described[i].digest
            if d and d in by_digest:
                exact.append({"a": by_digest[d], "b": i, "method": "exact", "score": 1.0, "view_a": "raw",
                              "view_b": "raw", "overlap": 1.0, "scale": 1.0, "rotation_deg": 0.0})  # fmt: skip
            elif d:
                by_digest[d] = i
        verified = pd.DataFrame(columns=["a", "b"])
        if len(described) > 1:
            index = Index.of(described)
            ckey, w_cell, q_near = self.cells(index, projection)
            lap("cells")
            done = {(min(r["a"], r["b"]), max(r["a"], r["b"])) for r in exact}
            pairs = [p for p in self.candidates(index, ckey, w_cell, q_near) if p not in done]
            del w_cell, q_near
            lap("search")
            verified = self.verify(index, pairs, projection)
            lap("align")
        return _pair_table(self.ids, pd.concat([pd.DataFrame(exact), verified], ignore_index=True) if exact
                           else verified)  # fmt: skip


def find_copies(ids: Sequence[str], raw_paths: Sequence[str | Path | None], cropped_paths: Sequence[str | Path | None],
                duplicates: Mapping[str, Any], workers: int = 1,
                cache: CopyCache | None = None) -> pd.DataFrame:  # fmt: skip
    """Pairs of images that show one radiograph (``PAIR_COLUMNS``), best score first.

    ``duplicates`` is the config's audit.duplicates. ``method`` is ``exact`` (same decoded
    pixels, score 1) or ``aligned`` (window candidate, ECC affine, high-pass correlation =
    ``score``); ``view_a``/``view_b`` say which views matched (raw file or cropped image),
    ``overlap`` the share of image a covered by b, ``scale``/``rotation_deg`` the transform.
    ``workers`` > 1 decodes, describes and aligns in that many processes (the result is the same).
    With ``cache`` (cxrflow.copy_cache), what earlier runs computed for unchanged images is not
    computed again, and the result is still that of a run from scratch; ``cache.save()`` is the
    caller's.
    """
    ids = [str(i) for i in ids]
    if not len(ids) == len(raw_paths) == len(cropped_paths):
        raise ValueError(f"{len(ids)} ids, {len(raw_paths)} raw paths, {len(cropped_paths)} cropped paths")
    if len(set(ids)) != len(ids):
        raise ValueError("image ids must be unique")
    if not ids:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    s = Settings.from_config(duplicates)
    cache = CopyCache(None) if cache is None else cache
    if workers <= 1 or len(ids) < 2:
        return _Search(ids, raw_paths, cropped_paths, s, cache, None).run()
    # spawn, not fork: forking a process whose BLAS/OpenCV threads ran can deadlock (cxrflow.crop_jobs).
    # The pool starts its processes on the first task: a run with everything cached starts none.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return _Search(ids, raw_paths, cropped_paths, s, cache, pool).run()


def shaping_settings(s: Settings) -> dict[str, Any]:
    """The settings that shape an image's work images (its stored views are keyed by them)."""
    return {"work_size": s.work_size, "decode_margin": s.decode_margin}


def descriptor_settings(s: Settings) -> dict[str, Any]:
    """The settings that shape the window thumbnails the projection is fitted on and applied to."""
    return {"work_size": s.work_size, "thumb": s.thumb, "max_crop": s.max_crop, "crop_steps": s.crop_steps,
            "query_crop": s.query_crop, "dims": s.dims}  # fmt: skip


def verify_settings(s: Settings) -> tuple:
    """The settings an alignment depends on beyond its two images and window match."""
    return ("min_score", s.min_score, "highpass_sigma", s.highpass_sigma, "coarse_min", s.coarse_min)


def _prepared_stack(works: Sequence[dict[str, np.ndarray]], stack: np.ndarray,
                    has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Every view ``prepare``d into ``stack[image, view]``, and which exist into ``has`` (all False on entry)."""
    for i, views in enumerate(works):
        for v, name in enumerate(VIEWS):
            if name in views:
                stack[i, v], has[i, v] = prepare(views[name]), True
    return stack, has


def _pair_table(ids: Sequence[str], pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs of image indices as the published table: ids ordered within a pair, best score first."""
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
