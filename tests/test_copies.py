"""Copy detection across sources on real radiographs: planted copies per transformation, the shared twins."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow import copies, copies_figure, copy_groups, copy_index
from cxrflow.decode import ImageError
from cxrflow import copy_cache as copies_cache

SETTINGS = copy_index.schema_defaults()
# ieee8023 files that are one radiograph under two names (judged by eye on the side-by-side
# figure, docs/audits.md): pairs among them or their seed copies are true duplicates.
KNOWN_SAME = [
    set(names) for names in json.loads((Path(__file__).parent / "data" / "ieee8023_known_same.json").read_text())
]


def _gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _copy(img: np.ndarray, kind: str) -> tuple[np.ndarray, list[int]]:
    """One copy as republishing makes it (fixed parameters: each class at its hard end)."""
    h, w = img.shape
    if kind == "crop":  # 22 % off the left, 10 % off the top, 5 % right, 18 % bottom
        return img[int(0.10 * h) : int(0.82 * h), int(0.22 * w) : int(0.95 * w)], []
    if kind == "resize_aspect":
        return cv2.resize(img, (224, 300), interpolation=cv2.INTER_AREA), []
    if kind == "jpeg":
        return img, [cv2.IMWRITE_JPEG_QUALITY, 12]
    if kind == "contrast":
        x = np.clip(img.astype(np.float32) * 0.8 + 20, 0, 255) / 255
        return (255 * x**1.2).astype(np.uint8), []
    if kind == "rotate":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 3.5, 1.0)
        return cv2.warpAffine(img, m, (w, h)), []
    if kind == "grey_rgb":
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), []
    raise ValueError(kind)


KINDS = ("crop", "resize_aspect", "jpeg", "contrast", "rotate", "grey_rgb")


@pytest.fixture(scope="module")
def ieee(shared_data: Path) -> tuple[Path, pd.DataFrame]:
    root = shared_data / "ieee8023-covid-chestxray-2020-03-24"
    meta = pd.read_csv(root / "metadata.csv")
    meta = meta[
        (meta["modality"].str.strip() == "X-ray") & meta["filename"].map(lambda f: (root / "images" / f).is_file())
    ]
    known = set().union(*KNOWN_SAME)
    return root / "images", meta[~meta["filename"].isin(known)]


@pytest.mark.shared_data
def test_planted_copies_each_transformation_found_and_one_patients_films_kept_apart(
    ieee: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    images, meta = ieee
    # a patient with several distinct films: the hard negatives (same body, other days)
    counts = meta.groupby("Patientid")["filename"].count()
    patient = counts[counts >= 3].index[0]
    films = meta.loc[meta["Patientid"] == patient, "filename"].tolist()
    others = [f for f in meta["filename"] if f not in films][:6]
    originals = [images / f for f in films + others]
    ids, paths, expected = [f"ieee/{p.name}" for p in originals], list(originals), {}
    for k, kind in enumerate(KINDS):
        src = originals[k % len(originals)]
        out, params = _copy(_gray(src), kind)
        path = tmp_path / f"copy_{kind}.{'jpg' if params else 'png'}"
        cv2.imwrite(str(path), out, params)
        ids.append(f"other/{path.name}")
        paths.append(path)
        expected[ids[-1]] = f"ieee/{src.name}"
    pairs = copies.find_copies(ids, paths, [None] * len(ids), SETTINGS)
    assert list(pairs.columns) == list(copies.PAIR_COLUMNS)
    assert pairs["score"].is_monotonic_decreasing and (pairs["method"] == "aligned").all()
    groups = copy_groups.duplicate_groups(pairs)
    for copy_id, original in expected.items():
        assert copy_id in groups and groups[copy_id] == groups[original], f"{copy_id} not matched to {original}"
    film_ids = {f"ieee/{f}" for f in films}
    merged = [g for g in {groups.get(f) for f in film_ids} - {None}
              if len({f for f in film_ids if groups.get(f) == g}) > 1]  # fmt: skip
    assert merged == [], f"distinct films of patient {patient} merged"
    # every pair is an original with its own copy (or two copies of one original)
    truth = {**expected, **{i: i for i in ids if i.startswith("ieee/")}}
    assert all(truth[a] == truth[b] for a, b in zip(pairs["image_id_a"], pairs["image_id_b"]))


@pytest.mark.shared_data
def test_exact_copy_and_figure(ieee: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    images, meta = ieee
    files = [images / f for f in meta["filename"][:4]]
    dup = tmp_path / f"same_file_other_name{files[0].suffix}"
    shutil.copy(files[0], dup)  # republished as is
    ids = [f"a/{f.name}" for f in files] + ["b/dup"]
    pairs = copies.find_copies(ids, [*files, dup], [None] * 5, SETTINGS)
    assert len(pairs) == 1 and pairs.loc[0, "method"] == "exact" and pairs.loc[0, "score"] == 1.0
    pairs = pairs.assign(source_a="a", source_b="b")
    counts = copies_figure.shared_by_source(pairs)
    assert counts[["source_a", "source_b", "pairs", "exact"]].values.tolist() == [["a", "b", 1, 1]]
    out = tmp_path / "shared.png"
    copies_figure.shared_figure(pairs, dict(zip(ids, map(str, [*files, dup]))), out)
    assert cv2.imread(str(out)) is not None


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ids"):
        copies.find_copies(["a"], [], [], SETTINGS)
    with pytest.raises(ValueError, match="unique"):
        copies.find_copies(["a", "a"], [None, None], [None, None], SETTINGS)
    with pytest.raises(ImageError, match="neither"):
        copies.find_copies(["a"], [tmp_path / "missing.png"], [None], SETTINGS)


@pytest.mark.shared_data
@pytest.mark.slow
def test_shared_twins_found(shared_data: Path) -> None:
    """ieee8023 originals vs the original experiment's cropped, squashed, re-encoded copies.

    Goal: >= 69 of 72 twins, no false pair among the first 100. Measured
    (bench/README.md): 69 found, no false pair at all; the 3 missed are discussed in docs/audits.md.
    """
    ieee = sorted((shared_data / "ieee8023-covid-chestxray-2020-03-24" / "images").iterdir())
    seed = sorted((shared_data / "seed-covid19-detection" / "covid_adjusted").iterdir())
    ids = [f"ieee/{p.name}" for p in ieee] + [f"seed/{p.name}" for p in seed]
    pairs = copies.find_copies(ids, ieee + seed, [None] * len(ids), SETTINGS)
    names = {p.name for p in ieee}
    truth = {(f"ieee/{p.name[:-4]}", f"seed/{p.name}") for p in seed if p.name[:-4] in names}
    assert len(truth) == 72
    found = truth & set(zip(pairs["image_id_a"], pairs["image_id_b"]))
    assert len(found) >= 69, sorted(truth - found)

    def original(i: str) -> str:
        name = i.split("/", 1)[1]
        return name[:-4] if i.startswith("seed/") else name

    def same(a: str, b: str) -> bool:
        return original(a) == original(b) or any(original(a) in s and original(b) in s for s in KNOWN_SAME)

    top = pairs.head(100)
    false = [(a, b) for a, b in zip(top["image_id_a"], top["image_id_b"]) if not same(a, b)]
    assert false == [], false


@pytest.mark.shared_data
def test_look_alike_films_of_different_patients_not_paired(shared_data: Path) -> None:
    """RSNA-derived normal films (one patient each, 224 px): clean PA films that look alike.
    Any pair is false; bench/README.md shows the closest reach 0.63, under min_score."""
    paths = sorted((shared_data / "seed-covid19-detection" / "normal_dataset").iterdir())[:200]
    pairs = copies.find_copies([p.name for p in paths], paths, [None] * len(paths), SETTINGS)
    assert pairs.empty, pairs.head().to_string()


@pytest.mark.shared_data
def test_two_different_crops_of_one_original_meet(ieee: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """Neither copy contains the other (a fifth cut from opposite sides), and each comes with a
    cropped view as the workflow passes it (here a centre square, as the black-bar crop trims)."""
    images, meta = ieee
    files = [images / f for f in meta["filename"][:8]]
    img = _gray(files[0])
    h, w = img.shape
    raws, cropped = list(files), [None] * len(files)
    for name, part in (("left", img[:, int(0.2 * w) :]), ("right", img[:, : int(0.8 * w)])):
        raw = tmp_path / f"{name}.png"
        cv2.imwrite(str(raw), part)
        ph, pw = part.shape
        side = min(ph, pw)
        sq = part[(ph - side) // 2 : (ph + side) // 2, (pw - side) // 2 : (pw + side) // 2]
        crop = tmp_path / f"{name}_224.png"
        cv2.imwrite(str(crop), cv2.resize(sq, (224, 224), interpolation=cv2.INTER_AREA))
        raws.append(raw)
        cropped.append(crop)
    ids = [f"ieee/{f.name}" for f in files] + ["x/left", "y/right"]
    pairs = copies.find_copies(ids, raws, cropped, SETTINGS)
    groups = copy_groups.duplicate_groups(pairs)
    assert groups.get("x/left") is not None and groups.get("x/left") == groups.get("y/right")
    assert groups["x/left"] == groups.get(ids[0])
    assert {"raw", "cropped"} >= set(pairs["view_a"]) | set(pairs["view_b"])


@pytest.mark.shared_data
@pytest.mark.slow
def test_worker_processes_give_the_same_pairs(ieee: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """``workers`` > 1 decodes and aligns in spawned processes (images in shared memory): same table."""
    images, meta = ieee
    files = [images / f for f in meta["filename"][:6]]
    paths = list(files)
    for kind, src in (("crop", files[0]), ("rotate", files[1]), ("contrast", files[2])):
        out, params = _copy(_gray(src), kind)
        paths.append(tmp_path / f"{kind}.png")
        cv2.imwrite(str(paths[-1]), out, params)
    ids = [p.name for p in paths]
    serial = copies.find_copies(ids, paths, [None] * len(ids), SETTINGS)
    pooled = copies.find_copies(ids, paths, [None] * len(ids), SETTINGS, workers=2)
    assert len(serial) >= 3
    pd.testing.assert_frame_equal(serial, pooled)


@pytest.mark.shared_data
@pytest.mark.slow
def test_remembered_search_equals_a_run_from_scratch(ieee: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """The cache (views by content key, alignments by both keys and the match) changes the cost, never
    the result: through additions, removals, an edited file and a changed setting, each run with the
    cache gives the table (and the duplicate groups) of a run from scratch, and decodes and aligns
    only what it has not seen."""
    images, meta = ieee
    originals = [images / f for f in meta["filename"][:10]]
    planted = []
    for k, kind in enumerate(KINDS):
        out, params = _copy(_gray(originals[k]), kind)
        path = tmp_path / f"copy_{kind}.{'jpg' if params else 'png'}"
        cv2.imwrite(str(path), out, params)
        planted.append(path)
    cache_dir = tmp_path / "cache"

    def check(paths: list[Path], settings: dict, workers: int = 1) -> copies_cache.CopyCache:
        ids = [p.name for p in paths]
        cache = copies_cache.CopyCache(cache_dir)
        remembered = copies.find_copies(ids, paths, [None] * len(ids), settings, workers, cache)
        cache.save()
        scratch = copies.find_copies(ids, paths, [None] * len(ids), settings)
        pd.testing.assert_frame_equal(remembered, scratch)
        assert copy_groups.duplicate_groups(remembered) == copy_groups.duplicate_groups(scratch)
        return cache

    first = check(originals[:8] + planted[:4], SETTINGS)
    assert (first.views_decoded, first.views_reused, first.pairs_reused) == (12, 0, 0)
    assert first.pairs_aligned > 0
    added = check(originals + planted, SETTINGS)  # two originals and two copies added
    assert (added.views_decoded, added.views_reused) == (4, 12)
    assert added.pairs_reused > 0
    removed = check(originals[2:] + planted[2:], SETTINGS, workers=2)  # two originals and their copies gone
    # (in so small a set every image is in the PCA's sample, so a removal moves the projection: every
    # image is described again from its stored work images, and pairs whose window match moved are
    # aligned again; in a large one only a removed sampled image does that)
    assert (removed.views_decoded, removed.views_reused) == (0, 12) and removed.pairs_reused > 0
    assert len(list((cache_dir / "views").rglob("*.bin"))) == 12  # the removed images' views dropped
    out, params = _copy(_gray(originals[9]), "contrast")  # one file edited in place
    cv2.imwrite(str(planted[2]), out, params)
    edited = check(originals[2:] + planted[2:], SETTINGS)
    assert (edited.views_decoded, edited.views_reused) == (1, 11)
    again = check(originals[2:] + planted[2:], SETTINGS)  # nothing changed: nothing decoded or aligned
    assert (again.views_decoded, again.views_reused, again.described, again.pairs_aligned) == (0, 0, 0, 0)
    stricter = check(originals[2:] + planted[2:], {**SETTINGS, "min_score": 0.8})  # verification setting
    assert (stricter.views_decoded, stricter.pairs_reused) == (0, 0)
    resized = check(originals[2:] + planted[2:], {**SETTINGS, "work_size": 96})  # a shaping setting
    assert (resized.views_decoded, resized.views_reused) == (12, 0)


def test_cells_follow_content_not_collection_size() -> None:
    """The inverted file's cells stay put under a small update: their count is a power of two that
    many collection sizes share (each half's codebook its square root), and they are fitted on the
    projection's images alone."""
    s = copy_index.Settings.from_config(SETTINGS)
    assert copy_index.cell_count(19_999, s) == 1
    assert {copy_index.cell_count(n * 162, s) for n in (900, 1000, 3000)} == {1024}
    assert [copy_index.codebook_size(n) for n in (1, 256, 1024, 4096)] == [1, 16, 32, 64]
    windows = copy_index.quantized(np.random.default_rng(0).normal(size=(400, 8)))
    np.testing.assert_array_equal(copy_index.fit_cells(windows, 6), copy_index.fit_cells(windows, 6))


def test_probed_cells_are_the_nearest_of_all_pairs_of_centroids() -> None:
    """A query's cells, ranked from each half's nearest centroids only, are the ``probe`` nearest of
    all k x k cells, ties to the lower cell; a window's cell is its nearest (coarse integer vectors
    make many ties)."""
    rng = np.random.default_rng(1)
    vectors = (np.rint(copy_index.quantized(rng.normal(size=(600, 8))) / 300) * 300).astype(np.int16)
    k, half = 5, 4
    centroids = (np.rint(copy_index.fit_cells(vectors[:300], k) / 300) * 300).astype(np.int16)
    cell, near = copy_index.assign_cells(vectors, vectors[:200], centroids, 7)
    x, c = vectors.astype(np.float64), centroids.astype(np.float64)
    one, two = (2 * x[:, cols] @ c[:, cols].T - (c[:, cols] ** 2).sum(axis=1) for cols in (slice(None, half),
                                                                                         slice(half, None)))  # fmt: skip
    total = (one[:, :, None] + two[:, None, :]).reshape(len(x), k * k)  # cell c1 x k + c2
    ranked = np.lexsort((np.tile(np.arange(k * k), (len(x), 1)), -total), axis=1)
    assert (cell == ranked[:, 0]).all() and (near == ranked[:200, :7]).all()
    assert max(np.sum(t == t.max()) for t in total) > 1  # ties were there to break


def _film(seed: int, side: int = 96) -> np.ndarray:
    """A smooth random grey image with grain: distinct for each seed, alike enough to crowd the search."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(60, 220, (12, 12), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    return cv2.add(base, rng.integers(0, 12, (side, side), dtype=np.uint8))


@pytest.mark.slow
def test_update_of_a_large_collection_equals_a_run_from_scratch(tmp_path: Path) -> None:
    """With many cells (21,000+ windows) and full candidate lists, a run that updates the stored
    candidate lists (images added, removed, edited) gives the pairs of a full search and searches
    in full only the lists of new or edited images; the cells stay put, even for images next in
    content order after the projection's; removing an image the projection was fitted on moves the
    projection and the cells and starts the search over, with the same result as a run from scratch."""
    settings = {**SETTINGS, "work_size": 32, "cells_per_sqrt": 2.0}
    s = copy_index.Settings.from_config(settings)
    files = []
    for k in range(140):
        img = _film(k)
        if k % 20 == 19:  # every 20th image is a cropped, resized copy of the one before
            img = cv2.resize(_film(k - 1)[4:92, 3:94], (88, 84), interpolation=cv2.INTER_AREA)
        files.append(tmp_path / f"img{k:03d}.png")
        cv2.imwrite(str(files[-1]), img)
    cache_dir = tmp_path / "cache"

    def run(paths: list[Path]) -> copies_cache.CopyCache:
        ids = [p.stem for p in paths]
        cache = copies_cache.CopyCache(cache_dir)
        remembered = copies.find_copies(ids, paths, paths, settings, 1, cache)  # both views: 162 windows each
        cache.save()
        pd.testing.assert_frame_equal(remembered, copies.find_copies(ids, paths, paths, settings))
        planted = {
            (f"img{k - 1:03d}", f"img{k:03d}") for k in range(19, 140, 20) if {files[k - 1], files[k]} <= set(paths)
        }
        assert planted <= set(zip(remembered["image_id_a"], remembered["image_id_b"]))
        return cache

    scratch = copies_cache.CopyCache(None)
    keys = [scratch.content_key(p, p, copies.shaping_settings(s)) for p in files]
    order = copy_index.content_order(keys, [p.stem for p in files])
    assert copy_index.projection_sample(keys, [p.stem for p in files]) == order[:16]
    later = order[16:]  # after the 16 images the projection and the cells are fitted on

    def cells() -> dict:
        with open(cache_dir / "cells.pkl", "rb") as handle:
            return pickle.load(handle)

    first = run([files[i] for i in range(140) if i not in later[:10]])
    assert copy_index.cell_count(130 * 162, s) > 1
    assert (first.lists_searched, first.lists_reused) == (130, 0)
    fitted = cells()
    assert len(fitted) == 1 and next(iter(fitted.values())).shape == (16, 32)  # 16 x 16 cells of 256
    added = run(files)  # 10 added, the first ones after the projection's images in content order
    assert (added.views_decoded, added.described, added.lists_searched, added.lists_reused) == (10, 10, 10, 130)
    assert cells().keys() == fitted.keys()
    kept = [files[i] for i in range(140) if i not in later[-11:]]  # 11 removed
    removed = run(kept)
    assert (removed.views_decoded, removed.described, removed.lists_reused) == (0, 0, 129 - removed.lists_searched)
    cv2.imwrite(str(files[later[20]]), _film(999))  # one edited in place
    edited = run(kept)
    assert (edited.views_decoded, edited.described, edited.lists_searched) == (1, 1, 1)
    again = run(kept)
    assert (again.views_decoded, again.described, again.lists_searched, again.pairs_aligned) == (0, 0, 0, 0)
    moved = run([p for p in kept if p != files[order[0]]])  # the projection's first image removed
    assert (moved.views_decoded, moved.described, moved.lists_searched) == (0, 128, 128)
    assert cells().keys().isdisjoint(fitted.keys())


@pytest.mark.slow
def test_worker_processes_give_the_same_pairs_at_scale(tmp_path: Path) -> None:
    """Enough images and pairs that the pool decodes, describes and aligns (an update's few are done
    in this process): the pool's table is the one process's."""
    settings = {**SETTINGS, "work_size": 32, "coarse_min": -1.0}  # every candidate aligned
    paths = []
    for k in range(160):
        paths.append(tmp_path / f"img{k:03d}.png")
        cv2.imwrite(str(paths[-1]), _film(k))
    ids = [p.stem for p in paths]
    cache = copies_cache.CopyCache(None)
    pooled = copies.find_copies(ids, paths, paths, settings, 2, cache)
    assert cache.views_decoded >= 64 and cache.pairs_aligned >= 1024  # both above the in-process limits
    pd.testing.assert_frame_equal(pooled, copies.find_copies(ids, paths, paths, settings))
