"""download: git and kaggle fetches against local stand-ins (a bare repo, a fake `kaggle`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cxrflow.download import DownloadError, fetch_ieee8023, fetch_rsna

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def bare_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """file:// URL of a bare repo with two commits and a tag on the first; returns (url, first sha)."""
    work = tmp_path_factory.mktemp("work")
    git("init", "--quiet", "-b", "master", cwd=work)
    (work / "metadata.csv").write_text("v1\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    git("tag", "v1", cwd=work)
    (work / "metadata.csv").write_text("v2\n")
    git("commit", "--quiet", "-am", "two", cwd=work)
    bare = tmp_path_factory.mktemp("remote") / "repo.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=work)
    return bare.as_uri(), first


@pytest.fixture
def clean_git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


@needs_git
@pytest.mark.usefixtures("clean_git_env")
def test_clone_default_branch_is_shallow(bare_repo: tuple[str, str], tmp_path: Path) -> None:
    url, _ = bare_repo
    dest = tmp_path / "ieee8023"
    fetch_ieee8023(dest, url, None)
    assert (dest / "metadata.csv").read_text() == "v2\n"
    assert git("rev-list", "--count", "HEAD", cwd=dest) == "1"
    assert not (tmp_path / "ieee8023.partial").exists()


@needs_git
@pytest.mark.usefixtures("clean_git_env")
@pytest.mark.parametrize("which", ["tag", "sha", "short_sha"])
def test_clone_at_ref(bare_repo: tuple[str, str], tmp_path: Path, which: str) -> None:
    url, first = bare_repo
    ref = {"tag": "v1", "sha": first, "short_sha": first[:10]}[which]
    fetch_ieee8023(tmp_path / "d", url, ref)
    assert (tmp_path / "d" / "metadata.csv").read_text() == "v1\n"
    assert git("rev-parse", "HEAD", cwd=tmp_path / "d") == first


@needs_git
@pytest.mark.usefixtures("clean_git_env")
def test_clone_failure_names_command_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    with pytest.raises(DownloadError, match=r"(?s)git clone .*no-such-repo.*\nfatal: ") as err:
        fetch_ieee8023(dest, (tmp_path / "no-such-repo").as_uri(), None)
    assert "no-such-repo" in str(err.value)
    assert not dest.exists() and not (tmp_path / "d.partial").exists()


@needs_git
def test_refuses_to_overwrite(tmp_path: Path, bare_repo: tuple[str, str]) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    with pytest.raises(DownloadError, match="not empty"):
        fetch_ieee8023(tmp_path / "d", bare_repo[0], None)
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep"


def test_git_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DownloadError, match="'git' not found"):
        fetch_ieee8023(tmp_path / "d", "file:///nowhere", None)


# ---------------------------------------------------------------- kaggle
FAKE_KAGGLE = """#!{python}
# Stand-in for Kaggle's servers: writes a small competition zip, or fails like the real CLI.
import sys, zipfile, pathlib
args = sys.argv[1:]
assert args[:2] == ["competitions", "download"], args
competition, dest = args[args.index("-c") + 1], pathlib.Path(args[args.index("-p") + 1])
if competition == "forbidden":
    sys.stderr.write("403 - Forbidden - You must accept this competition's rules\\n")
    sys.exit(1)
with zipfile.ZipFile(dest / (competition + ".zip"), "w") as zf:
    zf.writestr("stage_2_detailed_class_info.csv", "patientId,class\\np1,Normal\\n")
    zf.writestr("stage_2_train_images/p1.dcm", b"DICM")
    if competition == "evil":
        zf.writestr("../escape.txt", "x")
"""


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `kaggle` first on PATH, a bare HOME, and no Kaggle variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kaggle"
    fake.write_text(FAKE_KAGGLE.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path


def test_kaggle_cli_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DownloadError, match="'kaggle' not found.*pip install kaggle"):
        fetch_rsna(tmp_path / "rsna", "rsna-pneumonia-detection-challenge")


def test_kaggle_credentials_missing(kaggle_env: Path) -> None:
    with pytest.raises(DownloadError, match="no Kaggle credentials"):
        fetch_rsna(kaggle_env / "rsna", "rsna-pneumonia-detection-challenge")
    assert not (kaggle_env / "rsna").exists()


def test_kaggle_download_and_unzip(kaggle_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = kaggle_env / "home" / ".kaggle" / "kaggle.json"
    token.parent.mkdir(parents=True)
    token.write_text('{"username": "u", "key": "k"}')
    dest = kaggle_env / "rsna"
    fetch_rsna(dest, "rsna-pneumonia-detection-challenge")
    assert (dest / "stage_2_detailed_class_info.csv").read_text() == "patientId,class\np1,Normal\n"
    assert (dest / "stage_2_train_images" / "p1.dcm").read_bytes() == b"DICM"
    assert not list(dest.glob("*.zip"))


def test_kaggle_failure_and_unsafe_zip(kaggle_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    with pytest.raises(DownloadError, match=r"kaggle competitions download -c forbidden.*\n403 - Forbidden"):
        fetch_rsna(kaggle_env / "a", "forbidden")
    with pytest.raises(DownloadError, match="unsafe member name '../escape.txt'"):
        fetch_rsna(kaggle_env / "b", "evil")
    assert not (kaggle_env / "escape.txt").exists()
    assert not any(p.name.endswith(".partial") for p in kaggle_env.iterdir())
