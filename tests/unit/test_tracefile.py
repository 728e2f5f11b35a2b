"""Trace files: round trip, privacy, permissions, size cap, knob events, filters, crashes."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.errors import UsageError
from ksmtrace.events import EventKind, HostSample, ProcessIdentity
from ksmtrace.recorder import ProcessFilter, Recorder, knob_events
from ksmtrace.replay import ReplaySource
from ksmtrace.synthetic import synthetic_ticks
from ksmtrace.tracefile import TraceFullError, TraceHeader, TraceWriter
from ksmtrace.tracefile.codec import decode_events, encode_events

from .tracefiles import write_trace


def totals(acc: Accumulator) -> dict[int, tuple[object, ...]]:
    return {
        pid: (t.merges, t.cows, t.zero_merges, t.scanned, t.scan_cpu_ns, t.unmerged,
              t.merge_failures, t.lifetimes.counts, t.lifetimes.unknown)
        for pid, t in acc.totals.items()
    }  # fmt: skip


@pytest.mark.parametrize("level", [0, 1, 9])
def test_codec_round_trip_keeps_every_field(level: int) -> None:
    tick = next(synthetic_ticks(1, 5000, seed=3))
    rec = tick.events.records.copy()
    rec["ts_ns"][[10, 20]] = rec["ts_ns"][[20, 10]]  # out of order: deltas wrap, still exact
    codec, data = encode_events(rec, level)
    out = decode_events(codec, data, len(rec), rec.dtype)
    assert np.array_equal(out, rec)


def test_replay_yields_the_ticks_that_were_recorded(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    ticks = write_trace(path)
    with ReplaySource(path, speed=0) as src:
        got = list(src.ticks())
    assert len(got) == len(ticks)
    for a, b in zip(ticks, got, strict=True):
        assert (a.start_ns, a.end_ns) == (b.start_ns, b.end_ns)
        assert np.array_equal(a.events.records, b.events.records)
        assert a.sample == b.sample
        assert a.previous == b.previous
        assert dict(a.lost) == dict(b.lost)
        assert dict(a.identities) == dict(b.identities)


def test_accumulated_totals_survive_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    ticks = write_trace(path, salt=b"s" * 32)
    live, replayed = Accumulator(), Accumulator()
    for t in ticks:
        live.add(t)
    with ReplaySource(path, speed=0) as src:
        for t in src.ticks():
            replayed.add(t)
    assert totals(live) == totals(replayed)
    assert live.ledger_total == replayed.ledger_total
    assert live.lost_total == replayed.lost_total > 0


def test_addresses_and_frame_numbers_are_salted_unless_raw(tmp_path: Path) -> None:
    ticks = write_trace(tmp_path / "salted.ksmtrace", salt=b"k" * 32)
    write_trace(tmp_path / "raw.ksmtrace", ticks)
    with ReplaySource(tmp_path / "salted.ksmtrace", speed=0) as src:
        salted = next(iter(src.ticks())).events.records
    with ReplaySource(tmp_path / "raw.ksmtrace", speed=0) as src:
        raw = next(iter(src.ticks())).events.records
    orig = ticks[0].events.records
    assert np.array_equal(raw, orig)
    assert not np.intersect1d(salted["mm"], orig["mm"]).size
    merge = orig["kind"] == EventKind.MERGE
    assert not np.array_equal(salted["value"][merge], orig["value"][merge])
    scan = orig["kind"] == EventKind.SCAN
    assert np.array_equal(salted["value"][scan], orig["value"][scan])  # quantities stay


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "t.ksmtrace"
        writer = TraceWriter(path, TraceHeader())
        writer.write_tick(next(synthetic_ticks(1, 100)))
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        writer.close()
    finally:
        os.umask(old)
    assert f"{path.name}-wal" in modes  # while recording, the WAL is private too
    assert set(modes.values()) == {0o600}
    assert path.stat().st_mode & 0o777 == 0o600
    assert not Path(f"{path}-wal").exists()  # folded back in on close


def test_an_existing_file_is_not_replaced_without_force(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    path.write_text("precious")
    with pytest.raises(UsageError, match="exists"):
        TraceWriter(path, TraceHeader())
    assert path.read_text() == "precious"


def test_max_size_stops_before_the_cap_and_keeps_a_complete_file(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    cap = 400_000
    writer = TraceWriter(path, TraceHeader(), max_size=cap)
    rec = Recorder(writer, None)
    with pytest.raises(TraceFullError) as err:
        try:
            for t in synthetic_ticks(200, 3000):
                rec.submit(t)
        finally:
            rec.close("done")
    assert err.value.cap_reached
    assert "--max-size" in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    assert path.stat().st_size <= cap
    with ReplaySource(path, speed=0) as src:
        assert len(list(src.ticks())) == rec.stats.ticks > 0
        assert "--max-size" in src.header.stop_reason
        assert src.warnings == []


def test_knob_changes_become_events_and_rows(tmp_path: Path) -> None:
    ticks = list(synthetic_ticks(3, 100))
    changed = dataclasses.replace(
        ticks[1].sample,
        ksm={**ticks[1].sample.ksm, "pages_to_scan": 4000, "advisor_mode": "scan-time"},
    )
    ticks[1] = dataclasses.replace(ticks[1], sample=changed)
    ticks[2] = dataclasses.replace(ticks[2], previous=changed)
    path = tmp_path / "t.ksmtrace"
    write_trace(path, ticks)
    rows = (
        sqlite3.connect(path).execute("SELECT tick_id, name, old, new FROM knob_changes").fetchall()
    )
    assert sorted(rows) == sorted(
        [(2, "pages_to_scan", 1000, 4000), (2, "advisor_mode", "none", "scan-time"),
         (3, "pages_to_scan", 4000, 1000), (3, "advisor_mode", "scan-time", "none")]
    )  # fmt: skip
    with ReplaySource(path, speed=0) as src:
        knob = [t.events.of_kind(EventKind.KNOB) for t in src.ticks()]
    assert [len(k) for k in knob] == [0, 2, 2]
    assert set(knob[1]["pid"].tolist()) == {0}


def test_knob_events_ignore_unchanged_and_unknown_values() -> None:
    a = HostSample(1, {"run": 1, "pages_to_scan": 100}, {}, 0, {})
    b = HostSample(2, {"run": 1, "pages_to_scan": 100, "sleep_millisecs": 20}, {}, 0, {})
    assert len(knob_events(a, b)) == 0
    assert len(knob_events(None, b)) == 0


def test_process_filter_keeps_wanted_pids_vms_and_global_events() -> None:
    tick = next(synthetic_ticks(1, 3000, pids=[11, 12, 13]))
    idents = {11: ProcessIdentity(11, "qemu", vm="guest-a"), 12: ProcessIdentity(12, "x"),
              13: ProcessIdentity(13, "y")}  # fmt: skip
    tick = dataclasses.replace(tick, identities=idents)
    rec = tick.events.records.copy()
    rec["pid"][:5] = 0
    rec["kind"][:5] = int(EventKind.SCAN_START)
    tick = dataclasses.replace(tick, events=type(tick.events)(rec))
    out = ProcessFilter({12}, {"guest-a"}).apply(tick)
    assert set(out.events.records["pid"].tolist()) == {0, 11, 12}
    assert set(out.sample.processes) == {11, 12}
    assert set(out.identities) == {11, 12}
    assert ProcessFilter().apply(tick) is tick


def test_replay_window_and_joined_intervals(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    ticks = write_trace(path, list(synthetic_ticks(10, 500)))
    with ReplaySource(path, speed=0, start_s=3, end_s=7) as src:
        got = list(src.ticks())
    assert [t.end_ns for t in got] == [t.end_ns for t in ticks[3:7]]
    assert got[0].previous == ticks[3].previous
    with ReplaySource(path, speed=0) as src:
        joined = list(src.ticks(interval_s=3))
        assert src.lost_total == {int(EventKind.COW): 6}
    assert [len(t.events) for t in joined] == [1500, 1500, 1500, 500]
    assert joined[0].previous == ticks[0].previous and joined[0].sample == ticks[2].sample
    with ReplaySource(path, speed=0) as src:
        assert len(list(src.ticks(duration_s=4))) == 4


def test_replay_is_paced_by_speed(tmp_path: Path) -> None:
    import time

    path = tmp_path / "t.ksmtrace"
    write_trace(path, list(synthetic_ticks(4, 10, interval_ns=100_000_000)))
    with ReplaySource(path, speed=2.0) as src:
        started = time.monotonic()
        list(src.ticks())
    assert time.monotonic() - started >= 0.19  # 0.4 s of trace at twice the speed


def test_replay_rejects_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    write_trace(path)
    with pytest.raises(UsageError):
        ReplaySource(path, speed=-1)
    with pytest.raises(UsageError):
        ReplaySource(path, start_s=5, end_s=2)


_CRASH = """
import os, sys
from pathlib import Path
from ksmtrace.synthetic import synthetic_ticks
from ksmtrace.tracefile import TraceHeader, TraceWriter
w = TraceWriter(Path(sys.argv[1]), TraceHeader())
for t in synthetic_ticks(5, 1000):
    w.write_tick(t)
os.kill(os.getpid(), 9)
"""


def test_a_killed_writer_leaves_a_file_that_replays(tmp_path: Path) -> None:
    path = tmp_path / "t.ksmtrace"
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(path)], check=False)
    assert proc.returncode == -9
    assert Path(f"{path}-wal").exists()
    with ReplaySource(path, speed=0) as src:
        assert sum(len(t.events) for t in src.ticks()) == 5000
        assert src.header.stop_reason == ""
