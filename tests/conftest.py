"""Shared test fixtures. Tests run on the CPU; none touches the network."""

from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
    """../shared/data beside the clone; tests that need it skip with the reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (it sits beside the clone in CI only)")
    return SHARED_DATA
