"""decode_image: every supported format gives uint8 gray/BGR; every bad file gives its reason."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cxrflow.decode import DecodedImage, ImageError, decode_image


def write(path: Path, img: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), img)
    return path


def gradient(h: int = 40, w: int = 30) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    with_pixels: bool = True,
) -> Path:
    """A minimal single-frame 16-bit DICOM, as a PACS export would store it."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    if with_pixels:
        ds.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=12)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)
    return path


# --- bad files ---------------------------------------------------------------------------


def reason_of(path: Path) -> str:
    with pytest.raises(ImageError) as info:
        decode_image(path)
    return info.value.reason


def test_missing_file(tmp_path: Path) -> None:
    assert reason_of(tmp_path / "nope.png") == "missing file"


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.jpg").write_bytes(b"")
    assert reason_of(tmp_path / "e.jpg") == "empty file"


def test_garbage_bytes(tmp_path: Path) -> None:
    (tmp_path / "g.jpg").write_bytes(b"this is not an image at all" * 10)
    assert reason_of(tmp_path / "g.jpg").startswith("unreadable: ")


def test_directory_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    assert reason_of(tmp_path / "d.png").startswith("unreadable: ")


def test_truncated_jpeg(tmp_path: Path) -> None:
    # some OpenCV builds decode this with a grey fill, others refuse: either way, one reason
    rng = np.random.default_rng(0)
    data = write(tmp_path / "a.jpg", rng.integers(0, 256, (64, 64, 3), np.uint8)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert reason_of(tmp_path / "cut.jpg") == "truncated file"


def test_jpeg_with_trailing_zero_padding_is_fine(tmp_path: Path) -> None:
    data = write(tmp_path / "a.jpg", gradient()).read_bytes()
    (tmp_path / "pad.jpg").write_bytes(data + b"\x00" * 7)
    assert decode_image(tmp_path / "pad.jpg").pixels.shape == (40, 30)


def test_truncated_png(tmp_path: Path) -> None:
    data = write(tmp_path / "a.png", gradient()).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:-12])  # IEND chunk gone
    assert reason_of(tmp_path / "cut.png") == "truncated file"


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "x.dcm", np.zeros((4, 4), np.uint16), with_pixels=False)
    assert reason_of(path).startswith("unreadable: ")


def test_garbage_dcm(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"\x01\x02garbage" * 30)
    assert reason_of(tmp_path / "x.dcm").startswith("unreadable: ")


# --- good files --------------------------------------------------------------------------


def test_gray_png_is_unchanged(tmp_path: Path) -> None:
    img = gradient()
    out = decode_image(write(tmp_path / "g.png", img))
    assert isinstance(out, DecodedImage)
    np.testing.assert_array_equal(out.pixels, img)
    assert (out.orig_width, out.orig_height, out.orig_channels, out.orig_dtype) == (
        30,
        40,
        1,
        "uint8",
    )


def test_bgr_png_keeps_channel_order(tmp_path: Path) -> None:
    img = np.zeros((8, 6, 3), np.uint8)
    img[..., 0] = 200  # blue
    out = decode_image(write(tmp_path / "c.png", img))
    np.testing.assert_array_equal(out.pixels, img)
    assert out.orig_channels == 3


def test_bgra_is_composited_over_black(tmp_path: Path) -> None:
    img = np.full((4, 4, 4), 200, np.uint8)
    img[:2, :, 3] = 0  # transparent top half -> black
    img[2:, :, 3] = 255
    out = decode_image(write(tmp_path / "a.png", img))
    assert out.pixels.shape == (4, 4, 3) and out.orig_channels == 4
    assert (out.pixels[:2] == 0).all() and (out.pixels[2:] == 200).all()


def test_16bit_gray_is_scaled_by_own_range(tmp_path: Path) -> None:
    img = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    out = decode_image(write(tmp_path / "s.png", img))
    assert out.orig_dtype == "uint16" and out.pixels.dtype == np.uint8
    np.testing.assert_array_equal(out.pixels, [[0, 128], [255, 0]])


def test_16bit_constant_gives_zeros(tmp_path: Path) -> None:
    out = decode_image(write(tmp_path / "k.png", np.full((5, 5), 777, np.uint16)))
    assert out.pixels.dtype == np.uint8 and not out.pixels.any()


def test_16bit_rgba(tmp_path: Path) -> None:
    img = np.zeros((6, 6, 4), np.uint16)
    img[..., :3] = np.arange(36, dtype=np.uint16).reshape(6, 6, 1) * 1000
    img[..., 3] = 65535
    out = decode_image(write(tmp_path / "w.png", img))
    assert out.pixels.shape == (6, 6, 3) and out.pixels.dtype == np.uint8
    assert out.pixels.min() == 0 and out.pixels.max() == 255
    assert (out.orig_channels, out.orig_dtype) == (4, "uint16")


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_monochrome(tmp_path: Path, photometric: str) -> None:
    img = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = decode_image(make_dicom(tmp_path / "x.dcm", img, photometric))
    expected = np.array([[0, 64], [128, 255]], np.uint8)
    if photometric == "MONOCHROME1":  # high values are dark: invert so bone is bright
        expected = 255 - expected
    np.testing.assert_array_equal(out.pixels, expected)
    assert (out.orig_width, out.orig_height, out.orig_channels, out.orig_dtype) == (
        2,
        2,
        1,
        "uint16",
    )


def test_dicom_window_is_applied(tmp_path: Path) -> None:
    # rescale +500, then window 1000..2000: values outside it saturate
    img = np.array([[0, 500, 700], [1500, 2000, 4000]], np.uint16)
    path = make_dicom(tmp_path / "w.dcm", img, window=(1500, 1000), rescale=(1.0, 500.0))
    out = decode_image(path).pixels
    assert out[0, 0] == 0 and out[0, 1] == 0  # 500, 1000 after rescale: at/below the window
    assert out[1, 0] == 255 and out[1, 1] == 255 and out[1, 2] == 255  # 2000+: at/above
    assert 0 < out[0, 2] < 255  # 1200: inside the window, not at an end


def test_dicom_detected_by_magic_without_extension(tmp_path: Path) -> None:
    img = np.array([[0, 4000]], np.uint16)
    path = make_dicom(tmp_path / "noext", img)
    np.testing.assert_array_equal(decode_image(path).pixels, [[0, 255]])


@pytest.mark.shared_data
def test_real_ieee8023_images_all_decode(shared_data: Path) -> None:
    """Gray, RGB, RGBA and the one 16-bit RGBA PNG of the real collection."""
    folder = shared_data / "ieee8023-covid-chestxray-2020-03-24" / "images"
    kinds = set()
    for path in sorted(folder.iterdir()):
        out = decode_image(path)
        assert out.pixels.dtype == np.uint8
        assert out.pixels.ndim == 2 or out.pixels.shape[2] == 3
        assert out.pixels.shape[:2] == (out.orig_height, out.orig_width)
        kinds.add((out.orig_channels, out.orig_dtype))
    assert {(1, "uint8"), (3, "uint8"), (4, "uint8"), (4, "uint16")} <= kinds
