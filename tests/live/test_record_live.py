"""Recording real KSM activity: round trip to the live totals, kill -9, size cap, full disk."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.events import KNOB_NAMES, EventBatch, EventKind
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.probes.live import LiveSource
from ksmtrace.recorder import ProcessFilter, Recorder, provenance
from ksmtrace.replay import ReplaySource
from ksmtrace.tracefile import TraceWriter
from ksmtrace.workers import Worker, wait_until

from .conftest import merging_pages

pytestmark = pytest.mark.live

SpawnFn = Callable[..., Worker]
KSMTRACE = [sys.executable, "-m", "ksmtrace"]


def start_ksm(guard: KnobGuard, pages_to_scan: int = 2000) -> None:
    guard.set("pages_to_scan", pages_to_scan)
    guard.set("sleep_millisecs", 10)
    guard.set("run", 1)


def process_totals(acc: Accumulator) -> dict[int, tuple[object, ...]]:
    return {
        pid: (t.merges, t.merge_failures, t.zero_merges, t.cows, t.zero_cows, t.unmerged,
              t.scanned, t.scan_cpu_ns, t.lifetimes.counts, t.lifetimes.unknown,
              t.registrations, t.exits)
        for pid, t in acc.totals.items()
    }  # fmt: skip


def ticks_in(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM ticks").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


@contextlib.contextmanager
def recorder_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([*KSMTRACE, "record", *args], stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_replayed_totals_equal_the_live_totals(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn, tmp_path: Path
) -> None:
    a = spawn("rt-a", 3000, shared=0.8, distinct=32, seed=5)
    b = spawn("rt-b", 2000, shared=0.8, distinct=32, seed=5, zero=0.1)
    path = tmp_path / "roundtrip.ksmtrace"
    header = provenance(
        knobs={}, probes={}, interval_s=1.0, page_size=4096, filter_=ProcessFilter(),
        sanitized=True,
    )  # fmt: skip
    recorder = Recorder(TraceWriter(path, header), salt=os.urandom(32))
    live_acc = Accumulator()
    start_ksm(fresh_ksm)
    for i, tick in enumerate(live.ticks(1.0, 9.0)):
        live_acc.add(tick)
        recorder.submit(tick)
        if i == 3:
            a.command("write 0 400")  # copy-on-write with known lifetimes
            b.command("unmerge 100 200")  # explicit unmerge
            fresh_ksm.set("pages_to_scan", 3000)  # a knob change, recorded as an event
    recorder.close("test")

    replay_acc = Accumulator()
    with ReplaySource(path, speed=0) as src:
        ticks = list(src.ticks())
        assert src.warnings == []
    for tick in ticks:
        replay_acc.add(tick)
    live_totals = process_totals(live_acc)
    assert live_totals[a.pid][0] > 1000, "the workload merged"  # type: ignore[operator]
    assert live_acc.totals[a.pid].cows >= 400
    assert live_acc.totals[b.pid].unmerged_total >= 1
    assert process_totals(replay_acc) == live_totals
    assert replay_acc.ledger_total == live_acc.ledger_total
    assert replay_acc.lost_total == live_acc.lost_total
    assert replay_acc.full_scans_total == live_acc.full_scans_total
    assert replay_acc.identities[a.pid].comm == live_acc.identities[a.pid].comm
    knobs = EventBatch.concat([t.events for t in ticks]).of_kind(EventKind.KNOB)
    changes = [(KNOB_NAMES[int(k["addr"])], int(k["value2"]), int(k["value"])) for k in knobs]
    assert ("pages_to_scan", 2000, 3000) in changes, changes
    assert merging_pages(a.pid) > 0


def test_kill_9_keeps_everything_but_the_last_second(
    fresh_ksm: KnobGuard, spawn: SpawnFn, tmp_path: Path
) -> None:
    w = spawn("crash", 3000, shared=0.8, distinct=32, seed=9, churn=300.0)
    start_ksm(fresh_ksm)
    path = tmp_path / "crash.ksmtrace"
    with recorder_process("-o", str(path), "--quiet") as proc:
        assert wait_until(lambda: ticks_in(path) >= 3, 60), "the recorder wrote no interval"
        time.sleep(1.3)
        killed_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for f in (path, Path(f"{path}-wal")):
        assert f.stat().st_mode & 0o777 == 0o600, f
    with ReplaySource(path, speed=0) as src:
        ticks = list(src.ticks())
        assert src.warnings == []
        assert src.header.stop_reason == ""
    assert killed_ns - ticks[-1].end_ns < 1.6e9, "more than the last interval was lost"
    assert any(w.pid in t.sample.processes for t in ticks)
    assert sum(len(t.events.of_kind(EventKind.COW)) for t in ticks) > 0
    report = subprocess.run(
        [*KSMTRACE, "report", str(path)], capture_output=True, text=True, check=True
    )
    assert "ended: not cleanly" in report.stdout


def test_max_size_stops_recording_with_one_clear_line(
    fresh_ksm: KnobGuard, spawn: SpawnFn, tmp_path: Path
) -> None:
    spawn("cap", 3000, shared=0.8, distinct=32, seed=4, churn=2000.0)
    start_ksm(fresh_ksm)
    path = tmp_path / "cap.ksmtrace"
    cap = 256 * 1024
    with recorder_process(
        "-o", str(path), "--max-size", "256K", "--compress", "0", "--interval", "0.25",
        "--quiet", "--duration", "60",
    ) as proc:  # fmt: skip
        proc.wait(90)
        assert proc.stderr is not None
        err = proc.stderr.read().strip().splitlines()
    assert proc.returncode == 0
    assert err and "reached --max-size" in err[-1] and str(path) in err[-1], err
    assert path.stat().st_size <= cap
    with ReplaySource(path, speed=0) as src:
        assert len(list(src.ticks())) >= 1
        assert src.warnings == []
        assert "--max-size" in src.header.stop_reason


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of ``request.param`` bytes (default 2 MiB: the empty trace and a few s)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = getattr(request, "param", "2m")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_stops_recording_and_the_file_replays(
    fresh_ksm: KnobGuard, spawn: SpawnFn, small_disk: Path
) -> None:
    spawn("full", 3000, shared=0.8, distinct=32, seed=4, churn=2000.0)
    start_ksm(fresh_ksm)
    path = small_disk / "full.ksmtrace"
    with recorder_process(
        "-o", str(path), "--compress", "0", "--interval", "0.25", "--quiet", "--duration", "60"
    ) as proc:  # fmt: skip
        proc.wait(90)
        assert proc.stderr is not None
        err = proc.stderr.read().strip().splitlines()
    assert proc.returncode == 1
    assert err and "the disk is full" in err[-1] and str(path) in err[-1], err
    with ReplaySource(path, speed=0) as src:
        assert len(list(src.ticks())) >= 1
        assert src.warnings == []


@pytest.mark.parametrize("small_disk", ["128k"], indirect=True)
def test_disk_too_full_to_start_is_one_line_and_leaves_no_file(small_disk: Path) -> None:
    path = small_disk / "never.ksmtrace"
    res = subprocess.run(
        [*KSMTRACE, "record", "-o", str(path), "--duration", "5", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and "the disk is full before the trace could start" in lines[0], lines
    assert list(small_disk.iterdir()) == [], "no half-made file left behind"
