"""Fetch the public collections for users who want real data instead of the demo.

Nothing in the default workflow calls these (it runs offline); they back the
optional download rules. Each fetch works in a ``<dest>.partial`` sibling and
renames it into place only on success, so an interrupted download never leaves
a half-filled ``dest`` that looks complete.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

_SHA = re.compile(r"[0-9a-fA-F]{7,40}")


class DownloadError(RuntimeError):
    """A fetch failed; the message names the command and what it printed."""


def _run(cmd: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise DownloadError(f"cannot run {cmd[0]!r}: {err}") from err
    if done.returncode != 0:
        raise DownloadError(
            f"command failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr.strip() or done.stdout.strip()}"
        )
    return done


def _require(executable: str, hint: str) -> str:
    found = shutil.which(executable)
    if found is None:
        raise DownloadError(f"{executable!r} not found on PATH: {hint}")
    return found


def _partial(dest: Path) -> Path:
    """A fresh work folder beside dest; refuses to overwrite data already in dest."""
    if dest.exists() and any(dest.iterdir()):
        raise DownloadError(f"{dest} already exists and is not empty; remove it to download again")
    work = dest.with_name(dest.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    return work


def _finish(work: Path, dest: Path) -> None:
    if dest.exists():
        dest.rmdir()  # empty (checked by _partial)
    work.rename(dest)


def fetch_ieee8023(dest: Path, repo_url: str, ref: str | None) -> None:
    """Clone the ieee8023 repository into dest at ref (branch, tag or commit; None: default branch).

    Shallow where the server allows it: a branch/tag clones with --depth 1; a commit
    is fetched alone with --depth 1 and, where the server refuses that, from a full clone.
    """
    git = _require("git", "install git to download the ieee8023 collection")
    dest = Path(dest)
    work = _partial(dest)
    try:
        if ref and _SHA.fullmatch(ref):
            _run([git, "init", "--quiet", str(work)])
            _run([git, "remote", "add", "origin", repo_url], cwd=work)
            try:
                _run([git, "fetch", "--quiet", "--depth", "1", "origin", ref], cwd=work)
            except DownloadError:
                _run([git, "fetch", "--quiet", "origin"], cwd=work)
            _run([git, "-c", "advice.detachedHead=false", "checkout", "--quiet", ref], cwd=work)
        else:
            cmd = [git, "clone", "--quiet", "--depth", "1"] + (["--branch", ref] if ref else []) + [repo_url, str(work)]
            _run(cmd)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _finish(work, dest)


def kaggle_credentials() -> str | None:
    """Where the kaggle CLI will find credentials, or None (it would fail with a less clear message)."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    folders += [Path.home() / ".kaggle", xdg / "kaggle"]
    for folder in folders:
        for name in ("kaggle.json", "access_token"):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def _safe_extract(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            parts = PurePosixPath(member.replace("\\", "/")).parts
            if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise DownloadError(f"{archive} holds an unsafe member name {member!r}; not extracting")
        zf.extractall(into)


def fetch_rsna(dest: Path, competition: str, cli: str = "kaggle") -> None:
    """Download a Kaggle competition's files with the kaggle CLI and unzip them into dest.

    Needs Kaggle credentials and, for the RSNA challenge, its rules accepted on the
    web site once; the zips are removed after extraction (the RSNA one is ~4 GB).
    """
    exe = _require(cli, "pip install kaggle (docs/data.md: downloads)")
    if kaggle_credentials() is None:
        raise DownloadError(
            "no Kaggle credentials: put kaggle.json in ~/.kaggle/ (chmod 600) or set KAGGLE_USERNAME and "
            "KAGGLE_KEY; create the token at https://www.kaggle.com/settings"
        )
    dest = Path(dest)
    work = _partial(dest)
    try:
        work.mkdir()
        _run([exe, "competitions", "download", "-c", competition, "-p", str(work)])
        archives = sorted(work.glob("*.zip"))
        if not archives:
            raise DownloadError(f"{cli} competitions download -c {competition} wrote no .zip into {work}")
        for archive in archives:
            try:
                _safe_extract(archive, work)
            except zipfile.BadZipFile as err:
                raise DownloadError(f"{archive} is not a valid zip: {err}") from err
            archive.unlink()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _finish(work, dest)
