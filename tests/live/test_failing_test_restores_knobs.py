"""A live test that fails half-way still leaves the KSM knobs as it found them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import knob_values

pytestmark = pytest.mark.live

ROOT = Path(__file__).parent.parent.parent

FAILING_TEST = """
import pytest

pytest_plugins = ["tests.live.conftest"]
pytestmark = pytest.mark.live


def test_changes_knobs_then_fails(fresh_ksm):
    fresh_ksm.set("pages_to_scan", 3333)
    fresh_ksm.set("sleep_millisecs", 7)
    fresh_ksm.set("run", 1)
    raise AssertionError("failing on purpose with KSM running")
"""


def test_knobs_are_restored_after_a_failing_live_test(tmp_path: Path) -> None:
    before = knob_values()
    test_file = tmp_path / "test_fails_on_purpose.py"
    test_file.write_text(FAILING_TEST)
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "1 failed" in res.stdout, res.stdout + res.stderr
    assert "failing on purpose" in res.stdout
    assert knob_values() == before
