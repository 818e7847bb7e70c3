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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that reads ../shared/data says so with the marker, so `-m "not shared_data"` runs
    exactly what a clean clone covers."""
    unmarked = [
        item.nodeid
        for item in items
        if "shared_data" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("shared_data")
    ]
    if unmarked:
        raise pytest.UsageError(f"tests use the shared_data fixture without the shared_data marker: {unmarked}")
