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
speed: bench/README.md, docs/audits.md. Stage 1 lives in ``copy_index``, stage 2 in ``copy_align``;
this module runs them, with the worker pool and the cache (``copy_cache``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from .copy_cache import CopyCache, pair_key
from .copy_align import align_pair, prepare, transform_summary
from .copy_index import (
    VIEWS,
    Settings,
    build_index,
    candidate_matches,
    load_views,
    pair_matches,
    query_vectors,
    view_digests,
)

PAIR_COLUMNS = ("image_id_a", "image_id_b", "method", "score", "view_a", "view_b", "overlap", "scale",
                "rotation_deg")  # fmt: skip


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
            scale, rot = transform_summary(warp)
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
