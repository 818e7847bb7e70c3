"""Manifest: strict join of the selection with the crop records."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrflow.manifest import (
    INT_COLUMNS,
    MANIFEST_COLUMNS,
    build_manifest,
    read_records,
    manifest_summary,
    read_manifest,
    write_manifest,
)


def _selection(tmp_path: Path) -> pd.DataFrame:
    raw = tmp_path / "raw"
    rows = [
        ("a1", "src_a", raw / "a1.png", "COVID-19", "COVID-19", "007", "PA", ""),
        ("a2", "src_a", raw / "a2.png", "COVID-19", "COVID-19", "007", "PA", ""),
        ("b1", "src_b", raw / "b1.dcm", "Normal", "No Finding", "p1", "PA", ""),
        ("b2", "src_b", raw / "b2.dcm", "Normal", "No Finding", "p2", "PA", "missing file"),
    ]
    cols = ["image_id", "source", "raw_path", "resolved_path", "label", "finding", "patient_id", "view", "problem"]
    return pd.DataFrame([(*r[:2], str(r[2]), str(r[2]), *r[3:]) for r in rows], columns=cols)


def _record(tmp_path: Path, image_id: str, raw_path: str, *, ok: bool = True, **changes) -> dict:
    output = tmp_path / "out" / f"{image_id}.png"
    if ok:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"png")
    record = {
        "image_id": image_id,
        "raw_path": raw_path,
        "status": "ok" if ok else "quarantined",
        "reason": "" if ok else "undecodable image",
        "orig_width": 100 if ok else None,
        "orig_height": 80 if ok else None,
        "orig_channels": 1 if ok else None,
        "orig_dtype": "uint8" if ok else None,
        "decode_scale": 1 if ok else None,
        "crop_x0": 5 if ok else None,
        "crop_y0": 0 if ok else None,
        "crop_x1": 95 if ok else None,
        "crop_y1": 80 if ok else None,
        "rows_removed": 0 if ok else None,
        "cols_removed": 10 if ok else None,
        "output_path": str(output) if ok else "",
        "output_width": 8 if ok else None,
        "output_height": 8 if ok else None,
        "format": "png",
        "note": "",
        "traceback": None,
    }
    record.update(changes)
    return record


def _write(tmp_path: Path, records: list[dict]) -> list[Path]:
    folder = tmp_path / "records"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, record in enumerate(records):
        path = folder / f"{i}_{record['image_id']}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def _records(tmp_path: Path, sel: pd.DataFrame) -> list[dict]:
    raw = dict(zip(sel["image_id"], sel["raw_path"]))
    return [
        _record(tmp_path, "a1", raw["a1"]),
        _record(tmp_path, "a2", raw["a2"], ok=False),
        _record(tmp_path, "b1", raw["b1"]),
    ]


def test_build_manifest_joins_and_keeps_types(tmp_path: Path) -> None:
    sel = _selection(tmp_path)
    df = build_manifest(sel, read_records(_write(tmp_path, _records(tmp_path, sel))))
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert df["image_id"].tolist() == ["a1", "a2", "b1", "b2"]
    for col in INT_COLUMNS:
        assert str(df[col].dtype) == "Int64"
    row = df.set_index("image_id")
    assert row.loc["a1", "crop_x0"] == 5 and row.loc["a1", "status"] == "ok"
    assert row.loc["a1", "patient_id"] == "007"
    # Quarantined by the crop job: unknown numbers are <NA>, no output path.
    assert row.loc["a2", "status"] == "quarantined" and pd.isna(row.loc["a2", "orig_width"])
    assert row.loc["a2", "output_path"] == "" and row.loc["a2", "reason"] == "undecodable image"
    # Flagged by the selection and never cropped: listed with the selection's reason.
    assert row.loc["b2", "status"] == "quarantined" and row.loc["b2", "reason"] == "missing file"


def test_roundtrip_and_summary(tmp_path: Path) -> None:
    sel = _selection(tmp_path)
    df = build_manifest(sel, read_records(_write(tmp_path, _records(tmp_path, sel))))
    path = write_manifest(df, tmp_path / "m" / "manifest.csv")
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]  # no temp file left
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df)
    summary = manifest_summary(df)
    assert summary["images"] == 4 and summary["ok"] == 2 and summary["quarantined"] == 2
    assert summary["by_source"] == {"src_a": 2, "src_b": 2}
    assert summary["by_label"] == {"COVID-19": 2, "Normal": 2}
    assert summary["quarantine_reasons"] == {"missing file": 1, "undecodable image": 1}
    assert summary["by_source_label_status"]["src_a"]["COVID-19"] == {"ok": 1, "quarantined": 1}
    json.dumps(summary)  # report-ready


@pytest.mark.parametrize(
    ("mutate", "message", "ids"),
    [
        (lambda recs, sel: recs[:2], "without a crop record", ["b1"]),
        (
            lambda recs, sel: [*recs, {**recs[0], "image_id": "zz"}],
            "not in the selection",
            ["zz"],
        ),
        (lambda recs, sel: [*recs, dict(recs[0])], "duplicate crop records", ["a1"]),
        (
            lambda recs, sel: [*recs[:2], {**recs[2], "output_path": "/nonexistent/b1.png"}],
            "output file is missing",
            ["b1"],
        ),
        (
            lambda recs, sel: [*recs[:2], {**recs[2], "raw_path": "/elsewhere/b1.dcm"}],
            "stale",
            ["b1"],
        ),
        (
            lambda recs, sel: [
                *recs,
                {**recs[0], "image_id": "b2", "raw_path": sel["raw_path"][3]},
            ],
            "flagged by the selection",
            ["b2"],
        ),
    ],
)
def test_inconsistencies_fail_loudly(tmp_path: Path, mutate, message: str, ids: list[str]) -> None:
    sel = _selection(tmp_path)
    records = mutate(_records(tmp_path, sel), sel)
    with pytest.raises(ValueError, match=message) as err:
        build_manifest(sel, read_records(_write(tmp_path, records)))
    for image_id in ids:
        assert image_id in str(err.value)


def test_duplicate_selection_ids_and_bad_records(tmp_path: Path) -> None:
    sel = _selection(tmp_path)
    records = _write(tmp_path, _records(tmp_path, sel))
    with pytest.raises(ValueError, match="duplicate image ids in the selection: a1"):
        build_manifest(pd.concat([sel, sel.iloc[[0]]]), read_records(records))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable crop record"):
        read_records([*records, broken])
    with pytest.raises(ValueError, match="lacks keys"):
        build_manifest(sel, [{"image_id": "a1", "status": "ok"}])
    with pytest.raises(ValueError, match="status 'maybe'"):
        build_manifest(sel, [{**_records(tmp_path, sel)[0], "status": "maybe"}])
