"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmtrace.synthetic import synthetic_ticks

from .tracefiles import write_trace


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """An undamaged trace of 8 synthetic intervals, uncompressed."""
    path = tmp_path / "good.ksmtrace"
    write_trace(path, list(synthetic_ticks(8, 3000)), level=0)
    return path
