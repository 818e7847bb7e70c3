"""The shipped demo as the README's main job runs it, through the real `snakemake`, once.

One run of the shipped demo (its experiment and audit settings: my.yaml names none; VGG19
from scratch at 32x32 for 20 epochs on 100 + 100 images, so that the model really learns),
drawn small (256 px raw, cropped straight to 32 px) and cropped in batch jobs: rule all and
then the report. Every test here reads that run: the shortcut the demo plants (black bars in
the Normal images only) is flagged; the report opens with the Verdict and every metric is
what scikit-learn computes from predictions.csv; the methods record (flow, provenance, model
card, checklist) holds, and the prediction rule repeats evaluate's probabilities and refuses
a tampered model file. The tampering test is the last in this file: it changes the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from cxrflow.config import schema_defaults
from cxrflow.manifest import read_manifest
from test_methods_workflow import check_flow_sums
from test_pipeline import assert_metrics_match_predictions
from workflow_helpers import check_keras_archive, read_figure, run_snakemake, shipped_demo, shipped_demo_config

pytestmark = pytest.mark.slow

SHIPPED = shipped_demo()
(EXPERIMENT,) = SHIPPED["experiments"]  # the demo's one experiment
CLASSES = schema_defaults()["classes"]  # the demo names none: the schema's default
BORDER_ONLY = schema_defaults()["audit"]["border_only"]  # nor the control's mask
AUDIT = f"results/experiments/{EXPERIMENT}/fold0/shortcut_audit.json"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("demo") / "repo"
    proc = run_snakemake(work, shipped_demo_config(), "--report", "results/report.html", "--report-after-run")
    return work, proc


def test_bars_in_normal_only_flag_a_shortcut(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    work, _ = demo
    fold = work / f"results/experiments/{EXPERIMENT}/fold0"
    audit = json.loads((work / AUDIT).read_text())
    assert audit["verdict"] == "shortcut" and audit["flag"] is True, audit["sentence"]
    assert audit["border_only"]["macro_f1"]["low"] > audit["chance"]["macro_f1"]
    assert audit["full"]["macro_f1"]["low"] > audit["chance"]["macro_f1"]
    assert "Shortcut flagged" in (fold / "shortcut_audit.txt").read_text()
    border = json.loads((fold / "border_only/metrics.json").read_text())
    assert border["mask"] == {"fraction": BORDER_ONLY["mask"], "fill": BORDER_ONLY["fill"]}
    assert "border-only control" in (work / f"results/logs/train_border_only/{EXPERIMENT}/fold0.log").read_text()
    trust = pd.read_csv(work / "results/trust_summary.csv")
    row = trust.iloc[0]
    assert row["shortcut_verdict"] == "shortcut" and bool(row["shortcut_flag"]) is True
    assert row["border_only_macro_f1"] == pytest.approx(audit["border_only"]["macro_f1"]["estimate"], abs=1e-4)
    panel = cv2.imread(str(fold / "gradcam.png"))
    assert panel is not None and panel.shape[0] > 400
    assert SHIPPED["audit"]["gradcam"]["layer"] in (work / f"results/logs/gradcam/{EXPERIMENT}/fold0.log").read_text()


def test_report_opens_with_the_verdict_and_metrics_equal_sklearn(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    work, proc = demo
    console = proc.stdout + proc.stderr
    assert "Shell command: None" not in console and "failed call to cuInit" not in console  # a quiet console
    assert "oneDNN custom operations" not in console and "absl::InitializeLog" not in console
    assert re.search(r"output: results/demo/.*, \.\.\. and \d+ more\n", console)  # demo_data's paths, shortened
    assert (work / "results/report.html").stat().st_size > 10_000
    verdict = (work / "results/report/verdict.html").read_text()
    assert 'id="verdict"' in verdict and f"<td>{EXPERIMENT}</td>" in verdict  # the model's row, from its record
    assert "shortcut" in verdict
    exp = work / f"results/experiments/{EXPERIMENT}"
    fold = exp / "fold0"
    check_keras_archive(fold / "model.keras")
    for name in ("history.png", "confusion_matrix.png", "roc.png"):
        read_figure(fold / name)
    assert "precision" in (fold / "classification_report.txt").read_text()
    assert_metrics_match_predictions(fold, CLASSES)
    summary = json.loads((exp / "metrics.json").read_text())
    assert summary["metrics"] == json.loads((fold / "metrics.json").read_text())["metrics"]
    counts = json.loads((fold / "metrics.json").read_text())["counts"]
    manifest = read_manifest(work / "results/preprocessed/manifest.csv")
    assert sum(c["images"] for c in counts.values()) == int((manifest["status"] == "ok").sum())
    assert len(pd.read_csv(fold / "history.csv")) == SHIPPED["experiments"][EXPERIMENT]["epochs"]


def test_methods_record_card_checklist_and_predictions(demo: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """Last in this file: it tampers with the model file."""
    work, _ = demo
    results = work / "results"
    flow = check_flow_sums(results)
    record = json.loads((results / "provenance.json").read_text())
    assert set(record["sources"]) == {"demo_covid", "demo_normal"} and record["times"]["end"]
    assert record["constraints"]["matches_installed"] and not record["warnings"]
    assert record["config"]["experiments"][EXPERIMENT]["dropout"] is not None  # defaults resolved
    fold = results / f"experiments/{EXPERIMENT}/fold0"
    card = json.loads((fold / "model_card.json").read_text())
    assert card["model_sha256"] == hashlib.sha256((fold / "model.keras").read_bytes()).hexdigest()
    assert card["intended_use"] == "research use; not a medical device"
    assert (
        card["metrics"]["internal"]["accuracy"]
        == json.loads((fold / "metrics.json").read_text())["metrics"]["accuracy"]
    )
    frozen = json.loads((fold / "operating_point.json").read_text())["classes"][CLASSES[0]]["threshold"]
    assert card["shortcut"]["verdict"] == "shortcut" and card["operating_point"]["decision"] == "frozen threshold"
    assert card["operating_point"]["threshold"] == frozen["threshold"]  # the validation split's, unchanged
    text = (results / "methods/checklist.md").read_text()
    listed = flow["total"]["listed"]
    assert f"| 20a | Flow of participants | {listed} files listed" in text and "*for the authors*" in text
    for html in ("flow.html", "partitions.html", "provenance.html", "checklist.html", f"cards/{EXPERIMENT}/fold0.html"):
        assert (results / "methods" / html).stat().st_size > 500, html

    # The prediction rule on a configured source: evaluate's probabilities for the same images.
    cfg = shipped_demo_config()
    target = f"results/predictions/{EXPERIMENT}/fold0/demo_normal.csv"
    run_snakemake(work, cfg, target)
    pred = pd.read_csv(work / target, dtype={"image_id": str})
    evaluated = pd.read_csv(fold / "predictions.csv", dtype={"image_id": str})
    both = evaluated.merge(pred, on="image_id", suffixes=("_eval", "_new"))
    assert len(both) == int((evaluated["true_label"] == CLASSES[1]).sum()) > 0
    for cls in CLASSES:
        assert np.allclose(both[f"prob_{cls}_eval"], both[f"prob_{cls}_new"], atol=1e-6)
    # the label at the threshold frozen on validation (evaluate's predicted_label is the argmax)
    at_threshold = np.where(both[f"prob_{CLASSES[0]}_new"] >= frozen["threshold"], CLASSES[0], CLASSES[1])
    assert (both["predicted_label_new"] == at_threshold).all()
    manifest = read_manifest(results / "preprocessed/manifest.csv")
    normal = manifest[(manifest["source"] == "demo_normal") & (manifest["status"] == "ok")]
    assert len(pred) == len(normal) == SHIPPED["demo"]["normal"]["images"]
    assert pred["decision"].str.startswith(f"{CLASSES[0]} at probability >=").all()

    # A tampered model file is refused, with the reason.
    model = fold / "model.keras"
    before = model.stat()
    model.write_bytes(model.read_bytes() + b"\0")
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))  # as a copy that keeps times: no rule re-runs
    (work / target).unlink()
    proc = run_snakemake(work, cfg, target, check=False)
    assert proc.returncode != 0
    log = (results / f"logs/predict/{EXPERIMENT}/fold0/demo_normal.log").read_text()
    assert "is not the model its card describes" in log
