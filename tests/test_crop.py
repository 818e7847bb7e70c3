"""Black-bar crop: the original rule, exact boxes, and one regression test per original bug."""

from __future__ import annotations

import numpy as np
import pytest

from cxrflow.crop import (
    CropError,
    CropResult,
    crop_black_bars,
    dark_pixels,
    line_masks,
    resize_square,
)
from cxrflow.decode import ImageError

THRESHOLD, FRACTION, PROTECT = 40, 0.5, (0.195, 0.781)


def bright(h: int, w: int, channels: int = 3) -> np.ndarray:
    """X-ray-ish content: mid-grey with texture, never dark."""
    rng = np.random.default_rng(h * 7919 + w)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(90, 230, shape, dtype=np.uint8)


def crop(img: np.ndarray, protect: tuple[float, float] = PROTECT) -> CropResult:
    return crop_black_bars(img, THRESHOLD, FRACTION, protect)


# --- the dark-pixel / black-line rule -------------------------------------------------------


def test_dark_uses_unweighted_channel_mean_exactly() -> None:
    img = np.zeros((1, 3, 3), np.uint8)
    img[0, 0] = (119, 0, 0)  # mean 39.67 < 40: dark (a rounded mean of 40 would say no)
    img[0, 1] = (120, 0, 0)  # mean 40: not dark, although its luminance is ~14
    img[0, 2] = (0, 0, 119)
    rows, cols = line_masks(img, THRESHOLD, 0.0)
    np.testing.assert_array_equal(cols, [True, False, True])


@pytest.fixture(scope="module")
def every_colour() -> tuple[np.ndarray, np.ndarray]:
    """All 2^24 BGR colours as a 4096x4096 image, and their exact channel means."""
    values = np.arange(256, dtype=np.uint8)
    b, g, r = np.meshgrid(values, values, values, indexing="ij")
    img = np.stack([b, g, r], axis=-1).reshape(4096, 4096, 3)
    return img, img.sum(axis=2, dtype=np.int32) / 3


@pytest.mark.parametrize("threshold", [40, 40.2, 40.5, 0.1, 255])
def test_dark_rule_exact_on_every_colour(every_colour: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    """The fast cv2.transform path equals mean < threshold for every BGR colour and gray value."""
    img, mean = every_colour
    np.testing.assert_array_equal(dark_pixels(img, threshold) > 0, mean < threshold)
    values = np.arange(256, dtype=np.uint8)[None, :]
    np.testing.assert_array_equal(dark_pixels(values, threshold) > 0, values < threshold)


def test_fractional_threshold() -> None:
    img = np.array([[39, 40, 41]], np.uint8)
    _, cols = line_masks(img, 40.5, 0.0)
    np.testing.assert_array_equal(cols, [True, True, False])


def test_black_needs_more_than_the_fraction() -> None:
    img = bright(4, 4, 1)
    img[0, :2] = 0  # exactly half dark: not black
    img[1, :3] = 0  # three quarters: black
    rows, _ = line_masks(img, THRESHOLD, FRACTION)
    np.testing.assert_array_equal(rows, [False, True, False, False])


def test_gray_and_colour_agree() -> None:
    gray = bright(50, 40, 1)
    gray[:5] = 10
    gray[:, -3:] = 0
    colour = np.repeat(gray[:, :, None], 3, axis=2)
    for a, b in zip(line_masks(gray, THRESHOLD, FRACTION), line_masks(colour, THRESHOLD, FRACTION)):
        np.testing.assert_array_equal(a, b)


# --- exact boxes ------------------------------------------------------------------------------


def test_exact_box_1024() -> None:
    img = bright(1024, 1024)
    img[:100] = 0
    img[-60:] = 5
    img[:, :80] = 0
    out = crop(img)
    # kept rows 100..964 (864), cols 80..1024 (944): 80 extra cols trimmed, 40 each side
    assert out.box == (120, 100, 984, 964)
    assert out.image.shape == (864, 864, 3)
    assert (out.rows_removed, out.cols_removed) == (160, 160)
    np.testing.assert_array_equal(out.image, img[100:964, 120:984])


def test_no_bars_square_image_is_untouched() -> None:
    img = bright(64, 64)
    out = crop(img)
    assert out.box == (0, 0, 64, 64) and (out.rows_removed, out.cols_removed) == (0, 0)
    np.testing.assert_array_equal(out.image, img)


def test_protected_band_is_never_removed() -> None:
    img = bright(100, 100, 1)
    img[15:41] = 0  # band is [floor(.195*100), ceil(.781*100)) = [19, 79): rows 15..18 go
    img[:, :3] = 0
    out = crop(img)
    assert (out.rows_removed, out.cols_removed) == (4, 4)  # 96 rows; 97 cols, 1 trimmed at end
    assert out.box == (3, 0, 99, 100)
    expected = np.delete(img, range(15, 19), axis=0)[:, 3:99]
    np.testing.assert_array_equal(out.image, expected)


def test_non_contiguous_kept_rows_are_gathered() -> None:
    img = bright(100, 100, 1)
    img[10] = 0  # one black line outside a narrow protected band
    out = crop(img, protect=(0.4, 0.6))
    assert out.image.shape == (99, 99)
    expected = np.delete(img, 10, axis=0)[:, :99]  # 99 rows; columns trimmed at the end
    np.testing.assert_array_equal(out.image, expected)
    assert out.box == (0, 0, 99, 100)


# --- the four bugs of the original ----------------------------------------------------------


def test_bug1_adjacent_black_rows_all_removed() -> None:
    img = bright(20, 20, 1)
    img[0:2] = 0  # two adjacent black rows: the original's del-while-iterating kept the second
    img[-3:] = 0
    rows, _ = line_masks(img, THRESHOLD, FRACTION)
    assert rows.sum() == 5
    out = crop(img, protect=(0.5, 0.5))
    assert out.box[1] == 2 and out.box[3] == 17
    assert (out.image > THRESHOLD).all()


def test_bug2_one_pixel_trim_works() -> None:
    img = bright(101, 100)  # difference of 1: the original sliced img[:-0] -> empty
    out = crop(img)
    assert out.image.shape == (100, 100, 3)
    assert out.box == (0, 0, 100, 100)  # the odd pixel comes off the end
    np.testing.assert_array_equal(out.image, img[:100])


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (123, 457)])
def test_bug3_non_square_input_gives_square_output(shape: tuple[int, int]) -> None:
    img = bright(*shape)
    img[:7] = 0
    out = crop(img)
    assert out.image.shape[0] == out.image.shape[1]
    x0, y0, x1, y1 = out.box
    assert x1 - x0 == y1 - y0 == out.image.shape[0]
    assert resize_square(out.image, 32, "area").shape == (32, 32, 3)


@pytest.mark.parametrize("shape", [(300, 500), (500, 300)])
def test_bug4_column_mask_on_non_square(shape: tuple[int, int]) -> None:
    h, w = shape
    img = bright(h, w)
    img[:, :25] = 0
    img[:, w - 10 :] = 0
    img[:12] = 0
    rows, cols = line_masks(img, THRESHOLD, FRACTION)
    assert rows.shape == (h,) and cols.shape == (w,)
    assert np.flatnonzero(cols).tolist() == [*range(25), *range(w - 10, w)]
    assert np.flatnonzero(rows).tolist() == list(range(12))


# --- failures ---------------------------------------------------------------------------------


def test_all_black_raises() -> None:
    img = np.full((50, 60, 3), 12, np.uint8)
    with pytest.raises(CropError) as info:
        crop(img)
    assert info.value.reason == "all black"
    assert isinstance(info.value, ImageError)


def test_crop_removed_everything() -> None:
    img = np.zeros((40, 40), np.uint8)
    img[:, :4] = 200  # a thin bright stripe: every row is black, four columns are not
    with pytest.raises(CropError) as info:
        crop(img, protect=(0.5, 0.5))  # empty band on an even height
    assert info.value.reason == "crop removed everything"


def test_bad_protect_rejected() -> None:
    with pytest.raises(ValueError):
        crop(bright(10, 10), protect=(0.8, 0.2))


# --- resize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic", "nearest"])
def test_resize_square(interpolation: str) -> None:
    out = resize_square(bright(90, 90, 1), 24, interpolation)
    assert out.shape == (24, 24) and out.dtype == np.uint8


def test_resize_rejects_unknown_interpolation_and_non_square() -> None:
    with pytest.raises(ValueError):
        resize_square(bright(10, 10), 8, "lanczos")
    with pytest.raises(ValueError):
        resize_square(bright(10, 12), 8, "area")
