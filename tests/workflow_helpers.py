"""Run the real `snakemake` as a user does: in a fresh copy of the repository, the
shipped config.yaml untouched, their settings in `my.yaml` passed with --configfile,
the command as the README prints it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# What a fresh clone lacks: never copied into a user's repository.
_NOT_IN_A_CLONE = (".git", ".venv", "results", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache",
                   "bench/out", ".whl", "resources")  # fmt: skip


def fresh_repo(dest: Path) -> Path:
    """A copy of the repository as a fresh clone has it: the files git tracks (and new,
    not ignored ones), nothing any earlier run left behind."""
    dest.mkdir(parents=True, exist_ok=True)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True)  # fmt: skip
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            source = REPO / name
            if source.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name)
    else:  # not a git checkout (an unpacked archive): copy all but what a clone lacks
        shutil.copytree(REPO, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_NOT_IN_A_CLONE))
    return dest


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A user's my.yaml for a small demo (no sources: the demo runs), so a test run takes seconds."""
    cfg: dict[str, Any] = {
        "demo": {"raw_size": 256, "covid": {"images": 12, "patients": 9, "bar_fraction": 0.15},
                 "normal": {"images": 12, "bar_fraction": 0.9}},
        "preprocess": {"size": 32, "batch_size": 1},  # one crop job per image: the tests count them
        "experiments": {},
    }  # fmt: skip
    cfg.update(overrides)
    return cfg


def shipped_demo() -> dict[str, Any]:
    """workflow/demo.yaml as shipped: the settings a run without sources of its own lays under its config."""
    return yaml.safe_load((REPO / "workflow" / "demo.yaml").read_text())


def shipped_demo_config(**covid: Any) -> dict[str, Any]:
    """The shipped demo (its experiment and audit settings too: my.yaml names none), drawn small
    (256 px raw, cropped straight to 32 px) and cropped in batch jobs; ``covid`` changes the
    COVID-19 collection's drawing (``demo.covid``)."""
    from cxrflow.config import schema_defaults

    shipped = shipped_demo()
    cfg = tiny_config()
    del cfg["experiments"]
    cfg["preprocess"]["batch_size"] = schema_defaults()["preprocess"]["batch_size"]  # 200 images: batch jobs
    cfg["demo"] = {"covid": {**shipped["demo"]["covid"], **covid}, "normal": shipped["demo"]["normal"]}
    return cfg


def snakemake_command(*args: str, configfile: str | None = "my.yaml") -> list[str]:
    """The README's command: `snakemake --cores 2 [target...] --configfile my.yaml` (the
    configfile last: --configfile takes every word after it as a file)."""
    tail = ["--configfile", configfile] if configfile else []
    return [sys.executable, "-m", "snakemake", "--cores", "2", *args, *tail]


def run_snakemake(
    workdir: Path,
    config: dict[str, Any] | None,
    *args: str,
    check: bool = True,
    timeout: int = 2400,  # a guard against a hung run, not a speed goal: a loaded 2-core machine is slow
    configfile: str = "my.yaml",
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in ``workdir``, a fresh copy of the repository made on first use.

    ``config`` is written to ``workdir/<configfile>`` and passed with --configfile;
    None runs with the shipped config.yaml alone.
    """
    if not (workdir / "Snakefile").is_file():
        fresh_repo(workdir)
    if config is not None:
        (workdir / configfile).write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = snakemake_command(*args, configfile=configfile if config is not None else None)
    env = {**os.environ, "PYTHONPATH": str(workdir / "scripts")}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    text = proc.stdout + proc.stderr
    stats = text[text.rfind("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}


def crop_defaults(**overrides: Any) -> dict[str, Any]:
    """process_image's settings at the schema's defaults (the one source of truth), with overrides."""
    from cxrflow.config import schema_defaults
    from cxrflow.preprocess import crop_settings

    return {**crop_settings(schema_defaults()["preprocess"]), **overrides}


def read_figure(path: Path, min_side: int = 100) -> Any:
    """A written figure, decoded: an image of at least ``min_side`` pixels a side that is not one flat colour."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} is no image"
    assert min(image.shape[:2]) >= min_side and image.std() > 0, f"{path}: {image.shape}, flat or tiny"
    return image


def check_keras_archive(path: Path) -> None:
    """A saved .keras model: the zip Keras writes, with its config and weights."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist()), (path, archive.namelist())


def epochs_checkpointed(state: Path) -> int:
    """Epochs a training's checkpoint state (``checkpoint/state.json``) says are done; 0 before the first."""
    try:
        return json.loads(state.read_text())["epochs_done"] if state.is_file() else 0
    except (ValueError, KeyError):  # replaced atomically; tolerate a race anyway
        return 0
