"""Run the real `snakemake` command on a throw-away working directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """The shipped config with a small demo, so a test run takes seconds."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["demo"].update(
        {"raw_size": 256, "covid": {"images": 12, "patients": 9, "bar_fraction": 0.15},
         "normal": {"images": 12, "bar_fraction": 0.9}}
    )  # fmt: skip
    cfg["preprocess"]["size"] = 32
    cfg["preprocess"]["batch_size"] = 1  # one crop job per image: the tests count them
    cfg["experiments"] = {}
    cfg.update(overrides)
    return cfg


def run_snakemake(
    workdir: Path, config: dict[str, Any], *args: str, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """`snakemake -s REPO/Snakefile -d workdir` with the repo's workflow profile."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
        "--configfile", str(cfg_path), "--workflow-profile", str(REPO / "profiles" / "default"),
        "--cores", "2", *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table."""
    text = proc.stdout + proc.stderr
    stats = text[text.rfind("Job stats:") :]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M) if m[1] != "total"}
