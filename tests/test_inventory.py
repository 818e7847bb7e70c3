"""Every file a user points at is accounted for: folder trees as people lay them out (nested,
case-variant class folders, system files), the formats real collections hold (WebP, GIF,
extensionless and preamble-less DICOM, EXIF-rotated and trailing-data JPEG), a size guard
read from the header, and metadata in the encodings people have, with malformed rows."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from cxrflow.copy_index import load_views
from cxrflow.decode import ImageError, decode_image
from cxrflow.preprocess import process_image
from cxrflow.sources import inventory_source
from test_decode import make_dicom
from workflow_helpers import crop_defaults, run_snakemake

SETTINGS = crop_defaults(size=32, min_side=8)
LABELS = {"Normal": "Normal", "PNEUMONIA": "Pneumonia", "COVID-19": "COVID-19"}


def radiograph(h: int = 120, w: int = 100, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(70, 230, (h, w), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 0)


def jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """An APP1 Exif segment holding only an Orientation tag, right after SOI (as phones write it)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header declares width x height 8-bit gray pixels; a few hundred bytes on disk."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 8)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif(frames: int) -> bytes:
    buf = io.BytesIO()
    pics = [Image.fromarray(radiograph(seed=i)) for i in range(frames)]
    pics[0].save(buf, format="GIF", save_all=frames > 1, append_images=pics[1:])
    return buf.getvalue()


def record_of(path: Path, tmp: Path, **overrides: object) -> dict:
    return process_image("x", path, tmp / "x.png", tmp / "x.json", **{**SETTINGS, **overrides})


# ---------------------------------------------------------------- formats
def test_webp_is_decoded(tmp_path: Path) -> None:
    (tmp_path / "a.webp").write_bytes(cv2.imencode(".webp", radiograph())[1].tobytes())
    record = record_of(tmp_path / "a.webp", tmp_path)
    assert (record["status"], record["format"], record["orig_width"]) == ("ok", "webp", 100)


def test_gif_first_frame_is_decoded_and_recorded(tmp_path: Path) -> None:
    (tmp_path / "a.gif").write_bytes(gif(3))
    record = record_of(tmp_path / "a.gif", tmp_path)
    assert (record["status"], record["format"], record["note"]) == ("ok", "gif", "first of 3 frames")
    decoded = decode_image(tmp_path / "a.gif")
    assert np.abs(decoded.pixels.astype(int) - radiograph(seed=0)).mean() < 8  # the first frame, not another


def test_exif_orientation_is_applied_and_recorded(tmp_path: Path) -> None:
    img = radiograph(60, 200)
    (tmp_path / "rot.jpg").write_bytes(with_exif_orientation(jpeg(img), 8))
    decoded = decode_image(tmp_path / "rot.jpg")
    assert decoded.pixels.shape == (200, 60)  # upright, as a viewer shows it
    assert np.abs(decoded.pixels.astype(int) - cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)).mean() < 4
    record = record_of(tmp_path / "rot.jpg", tmp_path)
    assert (record["orig_width"], record["orig_height"], record["note"]) == (60, 200, "EXIF orientation 8 applied")


def test_data_after_the_jpeg_end_marker_is_accepted(tmp_path: Path) -> None:
    data = jpeg(radiograph())
    (tmp_path / "tail.jpg").write_bytes(data + b"camera junk " * 50)
    record = record_of(tmp_path / "tail.jpg", tmp_path)
    assert record["status"] == "ok" and record["note"] == "600 bytes after the JPEG end marker ignored"
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # still a truncated file
    assert record_of(tmp_path / "cut.jpg", tmp_path)["reason"] == "truncated file"


def test_dicom_without_preamble_or_extension_is_read(tmp_path: Path) -> None:
    full = make_dicom(tmp_path / "full.dcm", radiograph().astype(np.uint16) * 16).read_bytes()
    (tmp_path / "IM000001").write_bytes(full[132:])  # no preamble, no DICM, no extension
    record = record_of(tmp_path / "IM000001", tmp_path)
    assert (record["status"], record["format"], record["note"]) == ("ok", "dicom", "DICOM without preamble")


def test_reasons_say_what_a_dcm_file_really_is(tmp_path: Path) -> None:
    (tmp_path / "page.dcm").write_text("<!DOCTYPE html><html><body>Sign in to PACS</body></html>\n" * 5)
    assert record_of(tmp_path / "page.dcm", tmp_path)["reason"] == "unreadable: not an image but an HTML/XML page"
    (tmp_path / "photo.dcm").write_bytes(jpeg(radiograph()))
    record = record_of(tmp_path / "photo.dcm", tmp_path)
    assert (record["status"], record["format"]) == ("ok", "jpeg")


def test_compressed_dicom_without_its_decoder_names_the_syntax_and_the_extra(tmp_path: Path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGLSLossless
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(100) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "ls.dcm", enforce_file_format=True)
    try:
        import pylibjpeg  # noqa: F401

        pytest.skip("the optional DICOM decoders are installed here")
    except ImportError:
        pass
    reason = record_of(tmp_path / "ls.dcm", tmp_path)["reason"]
    assert reason.startswith("unsupported compression: JPEG-LS Lossless") and "pip install 'cxrflow[dicom]'" in reason


# ---------------------------------------------------------------- bounded memory
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    record = record_of(tmp_path / "bomb.png", tmp_path)
    assert record["reason"] == "too large: 30000 x 30000 px, over preprocess.max_pixels 100000000"
    small = record_of(tmp_path / "bomb.png", tmp_path, max_pixels=899_999_999)["reason"]
    assert small.startswith("too large")
    (tmp_path / "ok.png").write_bytes(cv2.imencode(".png", radiograph())[1].tobytes())
    assert record_of(tmp_path / "ok.png", tmp_path, max_pixels=100 * 120)["status"] == "ok"
    assert record_of(tmp_path / "ok.png", tmp_path, max_pixels=100 * 120 - 1)["reason"] == (
        "too large: 100 x 120 px, over preprocess.max_pixels 11999"
    )
    make_dicom(tmp_path / "d.dcm", radiograph().astype(np.uint16))
    assert record_of(tmp_path / "d.dcm", tmp_path, max_pixels=5000)["reason"].startswith("too large: 100 x 120")


@pytest.mark.slow
def test_a_real_bomb_is_never_decoded(tmp_path: Path) -> None:
    """A PNG with all 30000 x 30000 pixels compressed in (4 MB): the refusal costs no more memory
    than the imports (a decode would take 900 MB). Pillow loads a whole PNG to look for EXIF
    after its pixels, so the size must be checked before anything else is asked of the header."""
    side, rows = 30000, 1000
    packer = zlib.compressobj(1)
    idat = b"".join([packer.compress(bytes((side + 1) * rows)) for _ in range(side // rows)] + [packer.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
                                        + png_chunk(b"IEND", b""))  # fmt: skip
    code = ("import resource, sys\nfrom cxrflow.copy_index import load_views\nfrom cxrflow.decode import ImageError\n"
            "from cxrflow.preprocess import process_image\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "r = process_image('b', sys.argv[1], sys.argv[2] + '/b.png', sys.argv[2] + '/b.json', size=32, "
            "black_threshold=40, black_fraction=0.5, protect=(0.2, 0.8), interpolation='area', min_side=8, "
            "reduced_decode=True, decode_margin=2)\n"
            "try:\n    load_views(sys.argv[1], None, 64)\nexcept ImageError:\n    pass\n"
            "print(r['reason'], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")  # fmt: skip
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bomb.png"), str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    assert " ".join(out[:-1]) == "too large: 30000 x 30000 px, over preprocess.max_pixels 100000000"
    assert int(out[-1]) < 100  # MiB above the imports' own peak


def test_the_copy_search_decodes_through_the_same_guard(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    with pytest.raises(ImageError, match="neither the raw nor the cropped"):
        load_views(tmp_path / "bomb.png", None, 64)
    with pytest.raises(ImageError, match="too large: 30000 x 30000"):
        decode_image(tmp_path / "bomb.png")


# ---------------------------------------------------------------- folders: an inventory
def touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_nested_case_variant_and_system_files_are_all_listed(tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    img = jpeg(radiograph())
    for rel in ("NORMAL/a.jpeg", "normal/b.jpeg", "Normal/sub/deeper/c.jpeg", "PNEUMONIA/2020/IM000001",
                "PNEUMONIA/d.webp", "PNEUMONIA/e.gif"):  # fmt: skip
        touch(root / rel, img)
    skipped_expected = {
        "NORMAL/.DS_Store": "system file: .DS_Store",
        "NORMAL/._a.jpeg": "system AppleDouble file: ._a.jpeg",
        "PNEUMONIA/Thumbs.db": "system file: Thumbs.db",
        "__MACOSX/NORMAL/._a.jpeg": "system folder: __MACOSX",
        "Normal/.thumbnails/x.jpg": "system folder: .thumbnails",
        "Lung_Opacity/f.jpeg": "not a configured class: Lung_Opacity",
        "README.md": "not in a class folder",
        "NORMAL/notes.txt": "not an image file by its extension: .txt",
    }
    for rel in skipped_expected:
        touch(root / rel, img)
    inventory = inventory_source("k", {"format": "folders", "path": str(root)}, LABELS)
    images = inventory.images
    rel = [Path(p).relative_to(root).as_posix() for p in images["raw_path"]]
    assert sorted(rel) == sorted(["NORMAL/a.jpeg", "normal/b.jpeg", "Normal/sub/deeper/c.jpeg",
                                  "PNEUMONIA/2020/IM000001", "PNEUMONIA/d.webp", "PNEUMONIA/e.gif"])  # fmt: skip
    assert dict(zip(rel, images["label"])) == {"NORMAL/a.jpeg": "Normal", "normal/b.jpeg": "Normal",
                                               "Normal/sub/deeper/c.jpeg": "Normal", "PNEUMONIA/2020/IM000001":
                                               "Pneumonia", "PNEUMONIA/d.webp": "Pneumonia",
                                               "PNEUMONIA/e.gif": "Pneumonia"}  # fmt: skip
    skipped = {Path(p).relative_to(root).as_posix(): r for p, r in zip(inventory.skipped["path"],
                                                                       inventory.skipped["reason"])}  # fmt: skip
    assert skipped == skipped_expected
    assert list(inventory.skipped.columns) == ["source", "path", "reason"]


def test_folder_links_back_up_the_tree_are_skipped_and_no_file_is_listed_twice(tmp_path: Path) -> None:
    """A link to the class folder itself, to the source's root (whose walk would list the COVID-19
    folder as Normal), to a folder above the root, a cycle of two links through a store, and a
    folder and a file linked from another class folder."""
    root = tmp_path / "cxr"
    for name in ("COVID-19/c.png", "Normal/n.png", "Normal/sub/m.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"png")
    (root / "Normal" / "self").symlink_to(root / "Normal")
    (root / "Normal" / "sub" / "root").symlink_to(root)
    (root / "Normal" / "above").symlink_to(tmp_path)
    store = tmp_path / "store"
    (store / "a").mkdir(parents=True)
    (store / "a" / "s.png").write_bytes(b"png")
    (root / "Normal" / "store").symlink_to(store / "a")
    (store / "a" / "b").symlink_to(store)  # store/a/b -> store, whose a is on the way down
    # links into another class folder: its files are listed there, under their own class
    (root / "Normal" / "covid").symlink_to(root / "COVID-19")
    (root / "Normal" / "c.png").symlink_to(root / "COVID-19" / "c.png")
    inv = inventory_source("f", {"format": "folders", "path": str(root)}, LABELS)
    listed = [Path(p).relative_to(root).as_posix() for p in inv.images["raw_path"]]
    assert sorted(listed) == ["COVID-19/c.png", "Normal/n.png", "Normal/store/s.png", "Normal/sub/m.png"]
    assert dict(zip(inv.images["raw_path"].map(lambda p: Path(p).name), inv.images["label"])) == {
        "c.png": "COVID-19", "n.png": "Normal", "s.png": "Normal", "m.png": "Normal"}  # fmt: skip
    reasons = {Path(p).relative_to(root).as_posix(): r for p, r in zip(inv.skipped["path"], inv.skipped["reason"])}
    covid = (root / "COVID-19").resolve()
    assert reasons == {
        "Normal/c.png": f"link into another class folder: {covid}",
        "Normal/covid": f"link into another class folder: {covid}",
        "Normal/above": f"folder link loops back to {tmp_path.resolve()}",
        "Normal/self": f"folder link loops back to {(root / 'Normal').resolve()}",
        "Normal/store/b": f"folder link loops back to {store.resolve()}",
        "Normal/sub/root": f"folder link loops back to {root.resolve()}",
    }


def test_a_class_folder_linked_to_another_is_listed_once(tmp_path: Path) -> None:
    """train/Normal a link to test/Normal, train/COVID-19 a link into test/COVID-19/2020: walked,
    the test images would be listed under train as well."""
    root = tmp_path / "cxr"
    for name in ("test/Normal/n.png", "test/COVID-19/2020/c.png", "train/PNEUMONIA/p.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"png")
    (root / "train" / "Normal").symlink_to(root / "test" / "Normal")
    (root / "train" / "COVID-19").symlink_to(root / "test" / "COVID-19" / "2020")
    inv = inventory_source("f", {"format": "folders", "path": str(root)}, LABELS)
    listed = sorted(Path(p).relative_to(root).as_posix() for p in inv.images["raw_path"])
    assert listed == ["test/COVID-19/2020/c.png", "test/Normal/n.png", "train/PNEUMONIA/p.png"]
    reasons = {Path(p).relative_to(root).as_posix(): r for p, r in zip(inv.skipped["path"], inv.skipped["reason"])}
    assert reasons == {
        "train/COVID-19": f"link into another class folder: {(root / 'test' / 'COVID-19').resolve()}",
        "train/Normal": f"link into another class folder: {(root / 'test' / 'Normal').resolve()}",
    }


def test_files_a_filter_or_limit_leaves_out_are_listed(tmp_path: Path) -> None:
    root = tmp_path / "k"
    for rel in ("train/NORMAL/a.jpeg", "train/NORMAL/b.jpeg", "test/NORMAL/c.jpeg", "stray/NORMAL/d.jpeg"):
        touch(root / rel)
    inv = inventory_source("k", {"format": "folders", "path": str(root), "filters": {"subset": "train"}, "limit": 1},
                           LABELS)  # fmt: skip
    assert [Path(p).name for p in inv.images["raw_path"]] == ["a.jpeg"]
    reasons = {Path(p).name: r for p, r in zip(inv.skipped["path"], inv.skipped["reason"])}
    assert reasons == {"b.jpeg": "beyond the source's limit of 1", "c.jpeg": "excluded by the source's filters",
                       "d.jpeg": "not in train/val/test: stray"}  # fmt: skip


# ---------------------------------------------------------------- metadata
def csv_source(root: Path, **extra: object) -> dict:
    return {"format": "csv", "path": str(root), "csv": "meta.csv", "images": "img",
            "columns": {"filename": "file", "label": "finding"}, **extra}  # fmt: skip


def test_windows_1252_metadata_is_read_and_the_encoding_said(tmp_path: Path) -> None:
    touch(tmp_path / "img" / "a.jpg")
    touch(tmp_path / "img" / "b.jpg")
    text = 'file,finding,clinical notes\na.jpg,COVID-19,"“fever” 38.5°C, patient’s cough"\nb.jpg,Normal,none\n'
    (tmp_path / "meta.csv").write_bytes(text.encode("cp1252"))
    inv = inventory_source("f", csv_source(tmp_path), LABELS)
    assert inv.encoding == "cp1252" and inv.images["label"].tolist() == ["COVID-19", "Normal"]
    (tmp_path / "meta.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert inventory_source("f", csv_source(tmp_path), LABELS).encoding == "utf-8-sig"
    (tmp_path / "meta.csv").write_bytes(text.replace("“", "").replace("”", "").replace("’", "").encode("latin-1"))
    assert inventory_source("f", csv_source(tmp_path, encoding="latin-1"), LABELS).encoding == "latin-1"


def test_semicolon_and_tab_separated_metadata_are_read(tmp_path: Path) -> None:
    """Excel saves "CSV" with semicolons where the decimal mark is a comma; a comma inside a cell stays."""
    for name in ("a.jpg", "b.jpg"):
        touch(tmp_path / "img" / name)
    text = "file;finding;Âge;notes\na.jpg;COVID-19;38,5;fever, cough\nb.jpg;Normal;41;none\n"
    (tmp_path / "meta.csv").write_bytes(text.encode("cp1252"))
    inv = inventory_source("f", csv_source(tmp_path), LABELS)
    assert inv.encoding == "cp1252" and inv.images["label"].tolist() == ["COVID-19", "Normal"]
    assert inv.images["problem"].tolist() == ["", ""] and inv.read_as == "cp1252, semicolon-separated"
    (tmp_path / "meta.csv").write_text(text.replace(";", "\t"))
    inv = inventory_source("f", csv_source(tmp_path), LABELS)
    assert inv.images["label"].tolist() == ["COVID-19", "Normal"] and inv.read_as == "utf-8-sig, tab-separated"
    # a comma in the header decides: the semicolons are then part of the cells
    (tmp_path / "meta.csv").write_text("file,finding,notes\na.jpg,COVID-19,a;b\nb.jpg,Normal,c;d\n")
    inv = inventory_source("f", csv_source(tmp_path), LABELS)
    assert inv.images["label"].tolist() == ["COVID-19", "Normal"] and inv.read_as == "utf-8-sig"


def test_a_malformed_metadata_row_is_quarantined_and_the_rest_goes_on(tmp_path: Path) -> None:
    for name in ("a.jpg", "c.jpg"):
        touch(tmp_path / "img" / name)
    (tmp_path / "meta.csv").write_text("file,finding\na.jpg,COVID-19\nb.jpg,Normal,one too many\nc.jpg,Normal\n")
    images = inventory_source("f", csv_source(tmp_path), LABELS).images
    assert images["problem"].tolist() == ["", "", "malformed metadata row: line 3: 3 fields, the header has 2"]
    assert images["image_id"].tolist()[-1] == "f-metadata-line3"


def test_file_names_match_exactly_first_then_whitespace_normalised(tmp_path: Path) -> None:
    touch(tmp_path / "img" / "a.jpg ")  # a trailing space on disk
    touch(tmp_path / "img" / "b.jpg ")
    touch(tmp_path / "img" / "b.jpg")
    (tmp_path / "meta.csv").write_text('file,finding\na.jpg,COVID-19\n"b.jpg ",Normal\n')
    images = inventory_source("f", csv_source(tmp_path), LABELS).images
    assert images["problem"].tolist() == ["", ""]
    assert images["raw_path"].tolist() == [str(tmp_path / "img" / "a.jpg "), str(tmp_path / "img" / "b.jpg ")]
    assert images["note"].tolist() == [
        "file name matched after normalising whitespace: 'a.jpg' is 'a.jpg ' on disk",
        "",
    ]


# ---------------------------------------------------------------- the workflow
@pytest.mark.slow
def test_a_folders_run_lists_skipped_files_and_counts_them_last(tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    for i in range(4):
        touch(root / "train" / "NORMAL" / f"n{i}.jpeg", jpeg(radiograph(seed=i)))
        touch(root / "train" / "PNEUMONIA" / "nested" / f"p{i}.jpeg", jpeg(radiograph(seed=10 + i)))
    touch(root / "train" / "pneumonia" / "IM000001", make_dicom(tmp_path / "d.dcm",
                                                               radiograph().astype(np.uint16)).read_bytes())  # fmt: skip
    touch(root / "train" / "NORMAL" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    touch(root / "train" / "NORMAL" / "bomb.png", bomb_png())
    touch(root / "__MACOSX" / "train" / "._n0.jpeg", b"\x00\x05\x16\x07")
    my = {"sources": {"kaggle": {"format": "folders", "path": str(root),
                                 "labels": {"NORMAL": "Normal", "PNEUMONIA": "COVID-19"}}}}  # fmt: skip
    work = tmp_path / "repo"
    proc = run_snakemake(work, my, "preprocess")
    manifest = pd.read_csv(work / "results/preprocessed/manifest.csv", dtype=str, keep_default_na=False)
    skipped = pd.read_csv(work / "results/preprocessed/skipped.csv", dtype=str, keep_default_na=False)
    listed = sorted(manifest["raw_path"].tolist() + skipped["path"].tolist())
    assert listed == sorted(str(p) for p in root.rglob("*") if p.is_file())  # every file in exactly one list
    assert dict(zip(manifest["raw_path"].map(lambda p: Path(p).name), manifest["status"] + manifest["reason"])) \
        == {**{f"n{i}.jpeg": "ok" for i in range(4)}, **{f"p{i}.jpeg": "ok" for i in range(4)}, "IM000001": "ok",
            "bomb.png": "quarantinedtoo large: 30000 x 30000 px, over preprocess.max_pixels 100000000"}  # fmt: skip
    assert sorted(skipped["reason"]) == ["system file: .DS_Store", "system folder: __MACOSX"]
    last = [line for line in proc.stderr.splitlines() if line.startswith("preprocess: ")][-1]
    assert last.startswith("preprocess: 10 images: 9 cropped, 0 reused from earlier runs, 1 quarantined by this run;")
    assert last.endswith(
        "in all 9 ok (list: results/preprocessed/manifest.csv), 1 quarantined (list: "
        "results/preprocessed/quarantine.csv), 2 files skipped (list: results/preprocessed/skipped.csv)"
    )
    assert json.loads((work / "results/preprocessed/summary.json").read_text())["skipped"] == 2
