"""What produced a run's numbers: code version, software, settings, hardware, times and data.

``results/provenance.json`` lets a reader (and TRIPOD+AI 18e/18f, CLAIM's software and
availability items) tell exactly which workflow commit, package versions, settings and
which version of every dataset made the results. Each source gets a fingerprint (file
count, bytes, a hash over the sorted (relative path, size, content sha256) rows, and the
git commit when its folder is a git clone), so a changed dataset is named, not guessed.

The record's times are its only part that differs between two runs of the same
workflow on the same data and machine: they sit under one key, ``times``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The distributions whose versions decide the numbers (keras' backend is added per run).
PACKAGES: tuple[str, ...] = ("snakemake", "keras", "numpy", "opencv-python-headless", "pydicom", "scikit-learn",
                             "scipy", "pandas", "matplotlib", "h5py")  # fmt: skip
BACKEND_PACKAGES: Mapping[str, str] = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
TIMES_KEY = "times"
_CHUNK = 1 << 20
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def _git(folder: Path, *args: str) -> str | None:
    """Output of a git command in ``folder``, or None (no git, not a repository)."""
    if shutil.which("git") is None:
        return None
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(folder: str | Path) -> dict[str, Any]:
    """{commit, dirty} of the git work tree at ``folder`` (both None where it is not one)."""
    folder = Path(folder)
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def source_git_commit(folder: str | Path) -> str | None:
    """The commit of a source folder that is the top of its own git clone (as download_ieee8023 makes it)."""
    folder = Path(folder)
    if not (folder / ".git").exists():
        return None
    return _git(folder, "rev-parse", "HEAD")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def source_files(folder: str | Path) -> list[tuple[str, Path]]:
    """(relative posix path, path) of every file under ``folder``, symlinks followed, ``.git`` left out, sorted."""
    folder = Path(folder)
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in files:
            path = Path(root) / name
            found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def fingerprint(folder: str | Path) -> dict[str, Any]:
    """File count, bytes, sha256 over the sorted ``relative path\\tsize\\tcontent sha256`` lines, git commit.

    Content, not mtimes: a copy of the same dataset made elsewhere has the same fingerprint.
    A broken symlink counts as a file of size -1 with content key ``missing``, so it shows too.
    """
    digest = hashlib.sha256()
    count = total = 0
    for rel, path in source_files(folder):
        try:
            size, key = path.stat().st_size, _file_sha256(path)
        except OSError:
            size, key = -1, "missing"
        digest.update(f"{rel}\t{size}\t{key}\n".encode())
        count += 1
        total += max(size, 0)
    return {"files": count, "bytes": total, "sha256": digest.hexdigest(), "git_commit": source_git_commit(folder)}


def source_fingerprints(sources: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configured source (config ``sources``): its folder and fingerprint."""
    return {name: {"path": str(spec["path"]), **fingerprint(spec["path"])} for name, spec in sources.items()}


def changed_sources(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Sources whose fingerprint differs from the previous record's (new and removed ones included)."""
    if not previous:
        return []
    old, new = previous.get("sources", {}), current.get("sources", {})
    keys = ("files", "bytes", "sha256", "git_commit")
    return sorted(s for s in set(old) | set(new)
                  if s not in old or s not in new or any(old[s].get(k) != new[s].get(k) for k in keys))  # fmt: skip


def installed_versions(names: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_constraints(path: str | Path) -> dict[str, str]:
    """``name==version`` pins of a constraints file, names lower-cased with ``_`` as ``-``."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            pins[_canonical(match[1])] = match[2]
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraint_differences(pins: Mapping[str, str], installed: Mapping[str, str | None]) -> list[str]:
    """One warning per package whose installed version is not the pinned one (pinned packages only)."""
    warnings = []
    for name, version in sorted(installed.items()):
        pinned = pins.get(_canonical(name))
        if pinned is not None and version != pinned:
            warnings.append(f"{name} {version or 'not installed'} is installed, the constraints file pins {pinned}")
    return warnings


def cpu_name() -> str:
    """The CPU model as the OS names it (Linux /proc/cpuinfo, else platform)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """GPU names nvidia-smi reports (none without it): no deep-learning import needed."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()] if proc.returncode == 0 else []


def hardware() -> dict[str, Any]:
    """CPU name and count, GPU names, OS: what a timing or a floating-point difference depends on."""
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "gpus": gpu_names(),
            "os": f"{platform.system()} {platform.release()}", "machine": platform.machine()}  # fmt: skip


def backends(experiments: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The Keras backends the configured experiments run on."""
    return sorted({str(spec.get("backend")) for spec in experiments.values() if spec.get("backend")})


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def build_provenance(
    config: Mapping[str, Any],
    workflow_dir: str | Path,
    constraints: str | Path | None,
    start: float | None,
    end: float,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record: workflow commit, software, resolved config, hardware, sources, times.

    ``constraints`` is the pinned environment (constraints.txt); its differences from the
    installed versions become ``warnings``. ``previous`` is the last record, if any: the
    sources whose fingerprint changed since are listed in ``changed_sources``.
    """
    used = backends(config.get("experiments", {}))
    packages = installed_versions([*PACKAGES, *(BACKEND_PACKAGES[b] for b in used if b in BACKEND_PACKAGES)])
    warnings: list[str] = []
    pins: dict[str, str] = {}
    if constraints is not None and Path(constraints).is_file():
        pins = read_constraints(constraints)
        warnings += constraint_differences(pins, installed_versions(sorted(pins)))
    elif constraints is not None:
        warnings.append(f"no constraints file at {constraints}: installed versions are not checked")
    record: dict[str, Any] = {
        "workflow": git_state(workflow_dir),
        "python": sys.version.split()[0],
        "packages": packages,
        "keras_backends": used,
        "constraints": {"file": None if constraints is None else Path(constraints).name, "pinned": len(pins),
                        "matches_installed": not any("constraints file pins" in w for w in warnings)},
        "hardware": hardware(),
        "config": dict(config),
        "sources": source_fingerprints(config.get("sources", {})),
    }  # fmt: skip
    record["changed_sources"] = changed_sources(previous, record)
    record["warnings"] = warnings + [f"source {s!r} changed since the previous record" for s in
                                     record["changed_sources"]]  # fmt: skip
    record[TIMES_KEY] = {"start": None if start is None else iso_time(start), "end": iso_time(end)}
    return record


def provenance_rows(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows for the report page, the fingerprints one row per source."""
    wf = record["workflow"]
    rows = [("workflow commit", f"{wf['commit'] or 'not a git checkout'}" + (" (uncommitted changes)" if wf["dirty"]
                                                                             else "")),
            ("python", record["python"]), ("keras backends", ", ".join(record["keras_backends"]) or "none")]  # fmt: skip
    rows += [(f"package {k}", v or "not installed") for k, v in record["packages"].items()]
    hw = record["hardware"]
    rows += [("cpu", f"{hw['cpu']} ({hw['cpu_count']} cores)"), ("gpu", ", ".join(hw["gpus"]) or "none"),
             ("os", hw["os"])]  # fmt: skip
    for name, fp in record["sources"].items():
        commit = f", git {fp['git_commit']}" if fp["git_commit"] else ""
        rows.append((f"source {name}", f"{fp['path']}: {fp['files']} files, {fp['bytes']} bytes, "
                                       f"sha256 {fp['sha256']}{commit}"))  # fmt: skip
    times = record.get(TIMES_KEY, {})
    rows += [("start", str(times.get("start"))), ("end", str(times.get("end")))]
    rows += [("warning", w) for w in record["warnings"]]
    return rows
