"""Shared test helpers: paths to the recorded exchange frames."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_RECORDED = ROOT.parent / "shared" / "fixtures" / "recorded"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def recorded_dir() -> Path:
    if not SHARED_RECORDED.is_dir():
        pytest.fail(f"recorded fixtures missing: expected {SHARED_RECORDED} (shared/ beside the checkout)")
    return SHARED_RECORDED
