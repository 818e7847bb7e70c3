"""A run killed with SIGKILL at set points, then the recovery README "When something
goes wrong" documents (`snakemake --unlock`, then the same command with
`--rerun-incomplete`), gives a whole, correct result: a complete manifest whose every
`ok` image decodes, and a training that resumed from its last checkpoint with each epoch
once in history.csv. The whole process group is killed, pool workers and Keras jobs too,
as a power cut or `kill -9` of a job step would."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pandas as pd
import pytest

from cxrflow import synth
from cxrflow.config import schema_defaults, with_defaults
from cxrflow.manifest import read_manifest
from cxrflow.sources import inventory_source
from workflow_helpers import check_keras_archive, epochs_checkpointed, fresh_repo, snakemake_command

pytestmark = pytest.mark.slow

SIZE = 32
EPOCHS = 6


def user_collections(root: Path) -> dict:
    """An ieee8023 and an RSNA collection in their public formats (the user's, not the demo)."""
    demo = with_defaults({"sources": {"x": {"format": "folders", "path": "."}},
                          "demo": {"seed": 11, "raw_size": 256, "covid": {"images": 24, "patients": 18},
                                   "normal": {"images": 24}}})["demo"]  # fmt: skip
    synth.write_demo(demo, root)
    return {
        "ieee": {"format": "ieee8023", "path": str(root / "ieee8023"),
                 "filters": {"finding": "COVID-19", "modality": "X-ray", "view": "PA"}},
        "rsna": {"format": "rsna", "path": str(root / "rsna"), "filters": {"class": "Normal"}},
    }  # fmt: skip


def start(work: Path, *args: str) -> subprocess.Popen:
    """The README's command in its own process group, so that SIGKILL takes every child."""
    env = {**os.environ, "PYTHONPATH": str(work / "scripts")}
    return subprocess.Popen(snakemake_command(*args), cwd=work, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL the whole group; whether the run was still going."""
    alive = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    return alive


def run(work: Path, *args: str, cores: bool = True) -> str:
    """The README's command with the user's my.yaml, as it is on disk (``cores=False``: no
    --cores at all, as Snakemake's own LockException message suggests `--unlock`)."""
    env = {**os.environ, "PYTHONPATH": str(work / "scripts")}
    cmd = snakemake_command(*args) if cores else [sys.executable, "-m", "snakemake", *args, "--configfile", "my.yaml"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def recover(work: Path, *target: str) -> None:
    """README "When something goes wrong": unlock, then the same command with --rerun-incomplete."""
    run(work, "--unlock", cores=False)
    run(work, *target, "--rerun-incomplete")


def check_complete_manifest(work: Path) -> None:
    selected = sum(len(pd.read_csv(p)) for p in (work / "results/sources").glob("*.csv"))
    manifest = read_manifest(work / "results/preprocessed/manifest.csv")
    assert len(manifest) == selected and manifest["image_id"].is_unique
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == selected, manifest[manifest["status"] != "ok"][["image_id", "reason"]]
    for path in ok["output_path"]:
        image = cv2.imread(str(work / path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (SIZE, SIZE), path
    assert not list((work / "results/preprocessed").rglob("*.tmp*"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash")
    sources = user_collections(root / "data")
    work = fresh_repo(root / "repo")
    experiment = {"arch": "vgg19", "weights": "none", "freeze_base": False, "image_size": SIZE, "epochs": EPOCHS,
                  "batch_size": 8, "learning_rate": 1e-4, "checkpoint_every": 1,
                  "augmentation": {"rotation": 0, "width_shift": 0, "height_shift": 0}}  # fmt: skip
    my = {"sources": sources, "experiments": {"tiny": experiment},
          "preprocess": {"size": SIZE, "batch_size": 6}}  # fmt: skip
    (work / "my.yaml").write_text(json.dumps(my))
    return work


def selected_images(work: Path) -> int:
    """How many images the user's sources select (what the crop jobs will write a record for)."""
    my = json.loads((work / "my.yaml").read_text())
    labels = schema_defaults()["labels"]
    return sum(len(inventory_source(name, spec, labels).images) for name, spec in my["sources"].items())


# Kill points: when the first image's record exists, when half of them do, when all do but the
# manifest does not (the crop jobs done, the manifest job not): each a state a real kill leaves.
@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_killed_preprocess_recovers_to_a_complete_manifest(workdir: Path, share: float) -> None:
    for leftover in ("results", ".snakemake"):
        subprocess.run(["rm", "-rf", str(workdir / leftover)], check=True)
    target = max(1, math.ceil(share * selected_images(workdir)))
    records = workdir / "results/preprocessed/records"
    manifest = workdir / "results/preprocessed/manifest.csv"
    proc = start(workdir, "preprocess")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(records.glob("*/*.json"))) >= target:
            break
        time.sleep(0.005)
    assert kill_group(proc), f"the run ended before {target} records were written: no kill point reached"
    assert not manifest.exists(), "killed after the manifest was written: not the point this test kills at"
    recover(workdir, "preprocess")
    check_complete_manifest(workdir)


def kill_after_epoch(proc: subprocess.Popen, state: Path, epoch: int) -> int:
    """SIGKILL the run once its checkpoint says ``epoch`` epochs are done; the epochs done then."""
    deadline = time.monotonic() + 600
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = epochs_checkpointed(state)
        if done >= epoch:
            break
        time.sleep(0.02)
    assert kill_group(proc), "training ended before it could be killed"
    return done


def resumed_from(log: Path) -> int:
    """The epoch the last run in ``log`` resumed from (train.py logs it)."""
    found = re.findall(r"resumed from epoch (\d+)", log.read_text())
    assert found, log.read_text()[-2000:]
    return int(found[-1])


def test_killed_training_resumes_once_per_epoch(workdir: Path) -> None:
    """One training killed after its first epoch, then, resumed, killed again after its third:
    each recovery resumes from the last checkpoint, and every epoch is in history.csv once."""
    target = "results/experiments/tiny/fold0/history.csv"
    fold = workdir / "results/experiments/tiny/fold0"
    log = workdir / "results/logs/train/tiny/fold0.log"
    state = fold / "checkpoint" / "state.json"
    subprocess.run(["rm", "-rf", str(fold)], check=True)
    run(workdir, "split")
    first = kill_after_epoch(start(workdir, target), state, 1)
    assert 1 <= first < EPOCHS
    run(workdir, "--unlock", cores=False)
    second = kill_after_epoch(start(workdir, target, "--rerun-incomplete"), state, 3)
    assert 3 <= second < EPOCHS
    assert resumed_from(log) >= first  # (a checkpoint may land between the last look and the kill)
    recover(workdir, target)
    assert resumed_from(log) >= second
    assert pd.read_csv(fold / "history.csv")["epoch"].tolist() == list(range(1, EPOCHS + 1))
    check_keras_archive(fold / "model.keras")


def test_bookkeeping_commands_need_no_cores(workdir: Path) -> None:
    """`--unlock`, `-n`, `--lint` and `--report` work without --cores (README)."""
    assert "Unlocked working directory" in run(workdir, "--unlock", cores=False)
    run(workdir, "preprocess", "-n", cores=False)
    run(workdir, "--lint", cores=False)
    run(workdir, "preprocess", "--report", "results/preprocess-report.html", cores=False)
    report = (workdir / "results/preprocess-report.html").read_text(errors="replace")
    assert len(report) > 10_000 and "manifest.csv" in report
