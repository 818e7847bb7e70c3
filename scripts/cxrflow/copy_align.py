"""The verification stage of the copy search: one candidate pair aligned by ECC (affine) after
rank-equalising both films and masking black fill, and scored by the correlation of their
high-pass detail. The method: ``copies``.
"""

from __future__ import annotations

from itertools import product

import cv2
import numpy as np

from .copy_index import VIEWS, Settings, film_mask, highpass


# Pairs scoring under this after the half-resolution fit are not refined (fixed, not tied to
# min_score, so that a threshold sweep from one run is exact).
_REFINE_FROM = 0.3
# Blur (half-resolution pixels) of the coarse check before ECC.
_COARSE_SIGMA = 2.0


def _coarse_correlation(template: np.ndarray, image: np.ndarray, warp: np.ndarray) -> float:
    """Correlation of the blurred template and image under ``warp`` (template -> image), over the film
    of both: the window match's first transform must already line up the coarse shapes of a copy."""
    size = template.shape[::-1]
    moved = cv2.warpAffine(cv2.GaussianBlur(image, (0, 0), _COARSE_SIGMA), warp, size,
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)  # fmt: skip
    film = cv2.warpAffine((image > 0).astype(np.uint8), warp, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    valid = (film > 0) & (template > 0)
    if valid.mean() < 0.25:
        return -1.0
    return _correlation(cv2.GaussianBlur(template, (0, 0), _COARSE_SIGMA)[valid], moved[valid])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two pixel samples (0 where one is flat)."""
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-6))


# Grey level from which a pixel is saturated white, without detail.
_WHITE = 250


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
    if _coarse_correlation(half_t, half_i, warp) < s.coarse_min:  # not even the coarse shapes agree: no ECC
        warp[:, 2] *= 2
        return -1.0, warp, 0.0
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
    film = film_mask(work).astype(bool)
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
    return _correlation(highpass(ref, sigma)[valid], highpass(moved, sigma)[valid]), overlap


def transform_summary(warp: np.ndarray) -> tuple[float, float]:
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
