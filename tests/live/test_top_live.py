"""ksmtrace top live in a real terminal (tmux) on a demo workload: rows, merges, a clean quit."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.workers import Worker
from tests.tmuxterm import TmuxTerminal

from .conftest import knob_values

pytestmark = pytest.mark.live

KSMTRACE = str(Path(sys.executable).with_name("ksmtrace"))
SpawnFn = Callable[..., Worker]


def row_of(screen: str, label: str) -> list[str] | None:
    """The cells after NAME of the table row called ``label`` (SAVED, MERGING, MERGE/s, ...)."""
    for line in screen.splitlines():
        cells = line.split("│")[0].split()
        if cells and cells[0] == label:
            return cells[1:]
    return None


def merging(screen: str, label: str) -> bool:
    """Whether the row shows merging pages and merges per second (MERGING and MERGE/s)."""
    row = row_of(screen, label)
    return row is not None and row[1] != "0" and row[2] != "0"


def tracefs_mounts() -> int:
    return sum(" tracefs " in line for line in Path("/proc/mounts").read_text().splitlines())


def test_top_live_shows_the_workload_merging_and_quits_cleanly(
    fresh_ksm: KnobGuard, spawn: SpawnFn
) -> None:
    a = spawn("toplive-a", 3000, shared=0.9, distinct=16, seed=5)
    b = spawn("toplive-b", 3000, shared=0.9, distinct=16, seed=5)
    labels = [f"toplive-a[{a.pid}]", f"toplive-b[{b.pid}]"]
    fresh_ksm.set("pages_to_scan", 200)
    fresh_ksm.set("sleep_millisecs", 20)
    mounts = tracefs_mounts()
    argv = [KSMTRACE, "top", "--sort", "merges", "--window", "3"]
    with TmuxTerminal(argv, size=(160, 48)) as term:
        term.wait_for(lambda s: "● LIVE" in s and "KSM off" in s, 90)
        fresh_ksm.set("run", 1)  # merging starts while top traces
        knobs = knob_values()
        screen = term.wait_for(lambda s: all(merging(s, lb) for lb in labels), 60)
        assert "KSM on" in screen
        for label in labels:
            cells = row_of(screen, label)
            assert cells is not None and float(re.sub(r"[kM]$", "", cells[2])) > 0, cells
        term.keys("/", "t", "o", "p", "l", "i", "v", "e", "-", "a", "Enter")
        screen = term.wait_for(lambda s: f"[{a.pid}] 1 mappings" in s, 20)
        assert row_of(screen, labels[1]) is None, "the filter hides toplive-b"
        term.keys("q")
        assert term.wait_exit(20) == 0
    assert knob_values() == knobs, "top changes no KSM knob"
    assert tracefs_mounts() == mounts, "quitting released tracefs"
