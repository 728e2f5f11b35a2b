"""The snapshot builder of ksmtrace top: rates, shares, history and departures from Ticks."""

from __future__ import annotations

import dataclasses

import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.top import builder
from ksmtrace.top.builder import SnapshotBuilder, split_tick
from ksmtrace.top.synthetic import FakeHost, FakeProcess, synthetic_ticks


def assert_same(got: object, want: object) -> None:
    """Equal, floats up to rounding (slices sum their seconds in another order)."""
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9)
    elif dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            assert_same(getattr(got, f.name), getattr(want, f.name))
    elif isinstance(want, tuple | list):
        assert isinstance(got, tuple | list) and len(got) == len(want)
        for x, y in zip(got, want, strict=True):
            assert_same(x, y)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k])
    else:
        assert got == want


def build(procs: list[FakeProcess], seconds: float, host: FakeHost | None = None, window=5.0):
    ticks = synthetic_ticks(procs, seconds, host)
    b = SnapshotBuilder(window)
    for t in ticks:
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    return ticks, b, snap


def test_rates_are_window_averages_of_the_interval_reports() -> None:
    procs = [
        FakeProcess(1, "a", merges_per_s=300, cows_per_s=30, scan_per_s=1000, merging=100),
        FakeProcess(2, "b", merges_per_s=100, scan_per_s=3000, cpu_ns_per_page=1000),
    ]
    ticks, _, snap = build(procs, 12)
    rows = {r.pids[0]: r for r in snap.rows}
    assert snap.window_s == pytest.approx(5.0)
    assert rows[1].merges_per_s == pytest.approx(300)
    assert rows[1].cows_per_s == pytest.approx(30)
    assert rows[1].churn == pytest.approx(0.1)
    assert rows[2].scanned_per_s == pytest.approx(3000)
    # scan CPU shares add up to ksmd's CPU: 1000 x 2000 ns vs 3000 x 1000 ns per second.
    assert rows[1].scan_cpu_share == pytest.approx(0.4)
    assert rows[2].scan_cpu_share == pytest.approx(0.6)
    assert snap.host.ksmd_cpu_pct == pytest.approx(0.5)
    assert snap.host.cow_per_s == pytest.approx(30)
    assert snap.host.scan_pages_per_s == pytest.approx(4000)
    # The process's merging pages follow its merges minus its COWs.
    assert rows[1].merging_pages == 100 + 12 * (300 - 30)
    assert rows[1].label == "a[1]" and rows[1].key == "1"


def test_saved_bytes_are_the_processes_shares_of_the_kernel_saving() -> None:
    procs = [FakeProcess(1, "a", merges_per_s=100), FakeProcess(2, "b", merges_per_s=300)]
    ticks, _, snap = build(procs, 6)
    assert sum(r.saved_bytes for r in snap.rows) == pytest.approx(snap.host.saved_bytes, rel=1e-3)
    a, b = sorted(snap.rows, key=lambda r: r.pids[0])
    assert b.saved_bytes == pytest.approx(3 * a.saved_bytes, rel=1e-3)
    # Rows come ordered by saved memory.
    assert snap.rows[0].pids == (2,)


def test_efficiency_is_saved_mib_per_scan_cpu_second_per_second() -> None:
    procs = [FakeProcess(1, "a", merging=4096, scan_per_s=10000, cpu_ns_per_page=10000)]
    _, _, snap = build(procs, 6)
    row = snap.rows[0]
    # 0.1 CPU-second per second for the row's saved MiB.
    assert row.scan_cpu_per_s == pytest.approx(0.1)
    assert row.efficiency == pytest.approx(row.saved_bytes / 2**20 / 0.1)


def test_lifetime_median_and_histogram_come_from_the_accumulator() -> None:
    procs = [FakeProcess(1, "a", merges_per_s=100, cows_per_s=50, lifetime_s=0.3)]
    ticks, b, snap = build(procs, 5)
    acc = Accumulator()
    for t in ticks:
        acc.add(t)
    row = snap.rows[0]
    assert row.lifetimes == tuple(acc.totals[1].lifetimes.counts)
    assert row.lifetime_p50_s == acc.totals[1].lifetimes.quantile(0.5) == pytest.approx(0.3)
    assert row.totals.cows == 250


def test_history_holds_one_frame_per_tick_with_per_pid_points() -> None:
    procs = [FakeProcess(1, "a", merges_per_s=100, cows_per_s=10)]
    _, _, snap = build(procs, 8)
    assert [round(f.t_s) for f in snap.history] == list(range(1, 9))
    assert snap.history[-1].per_pid[1][1] == pytest.approx(10)
    saved = [f.per_pid[1][0] for f in snap.history]
    assert saved == sorted(saved) and saved[-1] > saved[0]


def test_full_scan_time_and_cpu_are_the_last_traced_scan() -> None:
    procs = [FakeProcess(1, "a", scan_per_s=1000, cpu_ns_per_page=1000)]
    _, _, snap = build(procs, 13, FakeHost(full_scan_s=4.0))
    assert snap.host.last_scan_s == pytest.approx(4.0, abs=1e-6)
    assert snap.host.last_scan_cpu_s == pytest.approx(4.0 * 1000 * 1000 / 1e9)
    assert snap.host.full_scans == 3


def test_a_prctl_off_is_a_departure_with_its_time_and_cause() -> None:
    procs = [FakeProcess(7, "web", merges_per_s=10, merging=50, unmerge_at_s=3)]
    _, _, snap = build(procs, 8)
    assert len(snap.departures) == 1
    d = snap.departures[0]
    assert (d.pid, d.label, d.t_s) == (7, "web[7]", 4.0)
    assert d.how == "prctl(PR_SET_MEMORY_MERGE, 0)"


def test_folding_in_slices_shows_the_same_as_folding_whole_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = [
        FakeProcess(1, "a", merges_per_s=3000, cows_per_s=1000, scan_per_s=5000, merging=100),
        FakeProcess(2, "b", merges_per_s=2000, cows_per_s=900, lifetime_s=0.02),
    ]
    ticks = synthetic_ticks(procs, 9, FakeHost(full_scan_s=2.0))
    whole = SnapshotBuilder(5.0)
    for t in ticks:
        whole.add(t)
    monkeypatch.setattr(builder, "SLICE_EVENTS", 700)
    pauses: list[int] = []
    sliced = SnapshotBuilder(5.0)
    for t in ticks:
        sliced.add(t, lambda: pauses.append(1))
    assert len(pauses) == 9 * (len(ticks[-1].events) // 700)
    a, b = whole.snapshot(), sliced.snapshot()
    assert a is not None and b is not None
    assert_same(b.rows, a.rows)
    assert_same(b.host, a.host)
    assert_same(b.history, a.history)
    assert b.window_s == pytest.approx(a.window_s)
    assert sliced.acc.ledger_total == whole.acc.ledger_total


def test_split_tick_keeps_every_event_once_and_the_counters_in_the_first_slice() -> None:
    (tick,) = synthetic_ticks([FakeProcess(1, "a", merges_per_s=1000)], 1)
    parts = split_tick(tick, 300)
    assert [len(p.events) for p in parts] == [300, 300, 300, 100]
    assert parts[0].previous is tick.previous and parts[1].previous is tick.sample
    assert (parts[0].start_ns, parts[-1].end_ns) == (tick.start_ns, tick.end_ns)
    assert all(p.end_ns == q.start_ns for p, q in zip(parts, parts[1:], strict=False))
    assert split_tick(tick, 5000) == [tick]
