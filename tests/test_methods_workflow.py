"""The methods record through the real `snakemake`: the demo to its flow diagram, provenance,
model card, checklist and the prediction rule; the flow sums on an awkward-file run; and a
run over ../shared/data (ieee8023 plus the seed images as a second source)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cxrflow.manifest import read_manifest
from test_awkward_files import awkward_folder, awkward_metadata
from workflow_helpers import run_snakemake

pytestmark = pytest.mark.slow

TINY = {"arch": "vgg19", "weights": "none", "image_size": 32, "epochs": 1, "batch_size": 8}


def check_flow_sums(results: Path, skipped_rows: int = 0) -> dict:
    """flow.json against the manifest and the split, recounted here with pandas."""
    flow = json.loads((results / "methods/flow.json").read_text())
    manifest = read_manifest(results / "preprocessed/manifest.csv")
    assignments = pd.read_csv(results / "splits/assignments.csv", dtype=str, keep_default_na=False)
    assert flow["total"]["listed"] == len(manifest) + skipped_rows
    assert flow["total"]["quarantined"] == int((manifest["status"] != "ok").sum())
    for source, f in flow["sources"].items():
        rows = manifest[manifest["source"] == source]
        assert f["listed"] == f["selected"] + f["not_selected"]["total"]
        assert f["selected"] == len(rows) == f["quarantined"]["total"] + f["kept"]
        assert sum(f["quarantined"]["by_reason"].values()) == int((rows["status"] != "ok").sum())
        for fold, splits in f["folds"].items():
            part = assignments[assignments["source"] == source]
            for split, counts in splits.items():
                for cls, n in counts.items():
                    assert n == int(((part[fold] == split) & (part["label"] == cls)).sum())
            assert sum(sum(c.values()) for c in splits.values()) == f["kept"]
    return flow


def test_awkward_run_flow_sums_with_skipped_files(tmp_path: Path) -> None:
    awkward_folder(tmp_path / "data" / "awkward")
    awkward_metadata(tmp_path / "data" / "ieee")
    my = {"sources": {"awkward": {"format": "folders", "path": str(tmp_path / "data" / "awkward")},
                      "ieee": {"format": "ieee8023", "path": str(tmp_path / "data" / "ieee")}},
          "preprocess": {"batch_size": 8}, "experiments": {}}  # fmt: skip
    # two files the folder inventory lists as skipped: a note beside the classes, a class not configured
    (tmp_path / "data" / "awkward" / "notes.txt").write_text("scanned on the old machine")
    (tmp_path / "data" / "awkward" / "Other").mkdir()
    (tmp_path / "data" / "awkward" / "Other" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    work = tmp_path / "repo"
    run_snakemake(work, my, "results/methods/flow.json")
    skipped = pd.read_csv(work / "results/preprocessed/skipped.csv", dtype=str, keep_default_na=False)
    folder = tmp_path / "data" / "awkward"
    assert {Path(p).relative_to(folder).as_posix() for p in skipped["path"]} >= {"notes.txt", "Other/x.png"}
    flow = check_flow_sums(work / "results", skipped_rows=len(skipped))
    awkward = flow["sources"]["awkward"]
    assert awkward["not_selected"]["total"] == len(skipped) and awkward["quarantined"]["total"] == 5
    assert flow["sources"]["ieee"]["quarantined"]["by_reason"] == {"missing file": 1, "unsafe path": 2}
    assert awkward["grouped_as_duplicates"] >= 2  # the byte-identical copy under another label, with its twin


@pytest.mark.shared_data
def test_shared_data_flow_and_fingerprints(tmp_path: Path, shared_data: Path) -> None:
    seed = shared_data / "seed-covid19-detection"
    columns = {"filename": "filename", "label": "finding"}
    my = {"sources": {
        "ieee8023": {"format": "ieee8023", "path": str(shared_data / "ieee8023-covid-chestxray-2020-03-24"),
                     "filters": {"finding": "COVID-19", "modality": "X-ray", "view": "PA"}},
        "seed_normal": {"format": "csv", "path": str(seed), "csv": "normal_xray_dataset.csv",
                        "images": "normal_dataset", "columns": columns, "limit": 99}},
        "experiments": {}}  # fmt: skip
    work = tmp_path / "repo"
    run_snakemake(work, my, timeout=1800)
    flow = check_flow_sums(work / "results")
    record = json.loads((work / "results/provenance.json").read_text())
    assert flow["sources"]["ieee8023"]["selected"] == 76
    assert flow["sources"]["ieee8023"]["quarantined"]["by_reason"].get("missing file", 0) >= 1
    assert flow["sources"]["seed_normal"]["selected"] == 99
    fp = record["sources"]
    assert fp["ieee8023"]["files"] == 160 and fp["seed_normal"]["files"] == 495  # every file of each folder
    print(json.dumps({"flow_total": flow["total"], "fingerprints": fp}, indent=1))
