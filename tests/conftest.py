"""Shared fixtures: repository paths and the optional ../shared/data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real public X-ray data beside the checkout; tests using it skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (only developer machines and CI have it)")
    return SHARED_DATA


# Test files whose workflow runs take minutes (as `pytest --durations` measures them),
# longest first. They are collected first, so that under `-n 2 --dist loadfile` they start
# first and the short files fill the gaps: both workers then finish together.
LONGEST_FIRST = ("test_demo.py", "test_validation_workflow.py", "test_shortcut.py", "test_reproducible.py",
                 "test_own_data.py", "test_evaluation_workflow.py", "test_pipeline.py")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order under --dist loadfile: pytest-xdist otherwise hands out the files
    with the most tests first, which puts the one-test workflow files (minutes each) last."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first (``LONGEST_FIRST``); and a test that reads ../shared/data says so
    with the marker, so that `-m "not shared_data"` runs exactly what a clean clone covers."""
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order kept otherwise
    unmarked = [
        item.nodeid
        for item in items
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared_data")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests use the shared_data fixture without the shared_data marker: {unmarked}")
