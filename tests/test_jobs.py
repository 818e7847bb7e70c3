"""Preprocessing job bodies: progress and count lines, failures that are the job's, the quarantine stop."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrflow.batch import BatchItem, SystemicError, check_systemic, run_batch
from cxrflow.jobs import QuarantineError, check_quarantine_job, crop_batch_job, manifest_job, preprocess_line
from cxrflow.manifest import manifest_summary, read_manifest
from cxrflow.preprocess import OutputError
from workflow_helpers import crop_defaults

SETTINGS = crop_defaults(size=16, min_side=8)


def items(tmp_path: Path, n: int, bad: int = 0) -> list[BatchItem]:
    out = []
    for i in range(n):
        raw = tmp_path / "raw" / f"i{i}.png"
        raw.parent.mkdir(parents=True, exist_ok=True)
        if i < bad:
            raw.write_bytes(b"garbage")
        else:
            cv2.imwrite(str(raw), np.random.default_rng(i).integers(60, 200, (40, 36), dtype=np.uint8))
        out.append(BatchItem(f"i{i}", str(raw), "", str(tmp_path / "png" / f"i{i}.png"),
                             str(tmp_path / "rec" / "s" / f"i{i}.json")))  # fmt: skip
    return out


def logger(tmp_path: Path) -> tuple[logging.Logger, Path]:
    path = tmp_path / "job.log"
    log = logging.getLogger(f"test.{path}")
    log.setLevel(logging.INFO)
    log.addHandler(logging.FileHandler(path))
    return log, path


def slow_map(first_delay: float, delay: float):
    """A lazy ordered map whose results come slowly: the first after ``first_delay`` s."""

    def mapper(fn, *iterables):
        for k, args in enumerate(zip(*iterables)):
            time.sleep(first_delay if k == 0 else delay)
            yield fn(*args)

    return mapper


def test_progress_lines_and_final_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, path = logger(tmp_path)
    batch = items(tmp_path, 5, bad=1)
    run_batch(batch, SETTINGS, slow_map(0.5, 0.15), log, "src batch 1-0", progress_every=0.1)
    err = capsys.readouterr().err
    # Lines come on a clock, not with results: while the first image is still out, too.
    assert "src batch 1-0: 0/5 images, none back from the pool yet (0 s)" in err
    assert re.search(r"src batch 1-0: [1-4]/5 images \(\d+%\), \d+ img/s, ETA \d+ s", err)  # to the terminal
    text = path.read_text()
    assert re.search(r"src batch 1-0: [1-4]/5 images \(\d+%\), \d+ img/s, ETA \d+ s", text)  # and the log
    final = "src batch 1-0: 5 images in "
    assert final in text and final in err and ": 4 cropped, 1 quarantined, 0 reused from cache" in err
    run_batch(batch, SETTINGS, map, log, "src batch 1-0")
    assert ": 0 cropped, 0 quarantined, 5 reused from cache" in path.read_text()


def test_a_failure_on_every_image_is_a_bug_not_a_quarantine() -> None:
    internal = {"reason": "internal error: TypeError: boom", "known_problem": False, "status": "quarantined"}
    with pytest.raises(SystemicError, match="all 3 images failed with an internal error"):
        check_systemic([internal] * 3, "b")
    check_systemic([internal, {"reason": "", "known_problem": False, "status": "ok"}], "b")  # one image's own
    check_systemic([internal], "b")  # a single image cannot tell
    check_systemic([internal, {"reason": "missing file", "known_problem": True}], "b")


def test_writing_results_failing_fails_the_job_with_its_log(tmp_path: Path) -> None:
    batch = items(tmp_path, 2)
    (tmp_path / "blocked").write_text("a file where a folder should be")
    batch = [BatchItem(b.image_id, b.raw_path, "", str(tmp_path / "blocked" / "x.png"), b.record) for b in batch]
    log_path = tmp_path / "logs" / "batch.log"
    with pytest.raises(OutputError, match="cannot write"):
        crop_batch_job(batch, SETTINGS, 1, str(tmp_path / "out.json"), str(log_path), "b")
    assert "job failed" in log_path.read_text() and "OutputError" in log_path.read_text()
    assert not (tmp_path / "out.json").exists()


def test_batch_job_to_manifest_and_quarantine_list(tmp_path: Path) -> None:
    import pandas as pd

    batch = items(tmp_path, 4, bad=1)
    crop_batch_job(batch, SETTINGS, 2, str(tmp_path / "b.json"), str(tmp_path / "b.log"), "s batch 1-0")
    selection = pd.DataFrame([{"image_id": b.image_id, "source": "s", "raw_path": b.raw_path,
                               "resolved_path": b.raw_path, "label": "Normal", "finding": "Normal",
                               "patient_id": b.image_id, "view": "", "problem": ""} for b in batch])  # fmt: skip
    selection.to_csv(tmp_path / "sel.csv", index=False)
    out = tmp_path / "m"
    pd.DataFrame([["s", "raw/.DS_Store", "system file: .DS_Store"], ["s", "raw/x/a.png", "not a configured class: x"]],
                 columns=["source", "path", "reason"]).to_csv(tmp_path / "skipped.csv", index=False)  # fmt: skip
    manifest_job([str(tmp_path / "sel.csv")], [], [str(tmp_path / "b.json")], str(out / "manifest.csv"),
                 str(out / "summary.json"), str(out / "quarantine.csv"), str(tmp_path / "m.log"),
                 [str(tmp_path / "skipped.csv")], str(out / "skipped.csv"))  # fmt: skip
    table = read_manifest(out / "manifest.csv")
    assert table["status"].tolist() == ["quarantined", "ok", "ok", "ok"]
    assert pd.read_csv(out / "quarantine.csv")["image_id"].tolist() == ["i0"]
    assert pd.read_csv(out / "skipped.csv")["path"].tolist() == ["raw/.DS_Store", "raw/x/a.png"]
    assert json.loads((out / "summary.json").read_text())["skipped_reasons"] == {"not a configured class": 1,
                                                                                 "system file": 1}  # fmt: skip
    quarantine, manifest, skipped = (str(out / n) for n in ("quarantine.csv", "manifest.csv", "skipped.csv"))
    line = preprocess_line(str(out / "summary.json"), quarantine, str(tmp_path / "rec"), 0.0, manifest, skipped)
    assert line == (f"preprocess: 4 images: 3 cropped, 0 reused from earlier runs, 1 quarantined by this run; "
                    f"in all 3 ok (list: {manifest}), 1 quarantined (list: {quarantine}), "
                    f"2 files skipped (list: {skipped})")  # fmt: skip
    # A later run that re-made one image's record: the others count as reused.
    since = time.time() + 5
    os.utime(out / "summary.json", (since, since))
    os.utime(tmp_path / "rec" / "s" / "i2.json", (since, since))
    line = preprocess_line(str(out / "summary.json"), quarantine, str(tmp_path / "rec"), since=since)
    assert line is not None and line.startswith("preprocess: 4 images: 1 cropped, 3 reused from earlier runs, 0 quar")
    assert preprocess_line(str(out / "summary.json"), quarantine, str(tmp_path / "rec"), since=since + 1) is None


def summary_of(rows: list[tuple[str, str]]) -> dict:
    import pandas as pd

    table = pd.DataFrame([{"source": s, "label": "Normal", "status": "ok" if not r else "quarantined", "reason": r}
                          for s, r in rows])  # fmt: skip
    return manifest_summary(table.assign(image_id=range(len(table))))


def test_quarantine_share_stop_and_the_wholly_quarantined_warning(tmp_path: Path, capsys) -> None:
    summary = summary_of([("a", "")] * 2 + [("a", "unreadable: x")] * 2 + [("a", "unsafe path: ../y")] +
                         [("b", "missing file")] * 2 + [("c", "")])  # fmt: skip
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    with pytest.raises(QuarantineError) as err:
        check_quarantine_job(str(path), 0.5, str(tmp_path / "check.json"), str(tmp_path / "c.log"))
    message = str(err.value)
    assert "source 'a': 3 of 5 images quarantined (60%): 2 x unreadable; 1 x unsafe path" in message
    assert "source 'b': 2 of 2 images quarantined (100%): 2 x missing file" in message and "'c'" not in message
    assert "preprocess.max_quarantined_share" in message and not (tmp_path / "check.json").exists()
    check_quarantine_job(str(path), 1.0, str(tmp_path / "check.json"), str(tmp_path / "c.log"))
    assert "WARNING: source 'b': 2 of 2 images quarantined (100%)" in capsys.readouterr().err
    assert json.loads((tmp_path / "check.json").read_text())["all_quarantined"] == ["b"]
