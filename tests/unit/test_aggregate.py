"""Per-process accounting from Ticks: counts, ledger, savings shares, lifetimes, full scans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ksmtrace.aggregate import LIFETIME_BUCKETS_S, Accumulator, LifetimeHistogram, share_of_savings
from ksmtrace.estimates import ESTIMATED, run2_happened, run2_unmerges
from ksmtrace.events import (
    LIFETIME_UNKNOWN,
    Event,
    EventBatch,
    EventKind,
    HostSample,
    ProcessIdentity,
    ProcessKsm,
    Tick,
    UnmergeKind,
)
from ksmtrace.render.jsonl import interval_object
from ksmtrace.render.summary import format_summary, process_summaries
from ksmtrace.render.table import format_interval

S = 1_000_000_000


def sample(
    t: int,
    cow: int,
    procs: dict[int, int],
    shared: int = 10,
    sharing: int = 90,
    zero: int = 0,
    full_scans: int = 5,
    run: int = 1,
    cpu: int = 0,
) -> HostSample:
    return HostSample(
        ts_ns=t * S,
        ksm={
            "run": run,
            "pages_shared": shared,
            "pages_sharing": sharing,
            "ksm_zero_pages": zero,
            "full_scans": full_scans,
            "general_profit": 123,
        },
        vmstat={"cow_ksm": cow},
        ksmd_cpu_ns=cpu,
        processes={
            pid: ProcessKsm(pid, rmap_items=m + 5, zero_pages=0, merging_pages=m, process_profit=m)
            for pid, m in procs.items()
        },
    )


def tick(prev: HostSample, cur: HostSample, events: list[Event]) -> Tick:
    idents = {p: ProcessIdentity(p, comm=f"p{p}") for p in cur.processes}
    return Tick(prev.ts_ns, cur.ts_ns, EventBatch.from_events(events), cur, {}, idents, prev)


def ev(kind: EventKind, pid: int, t: float = 0.5, **kw: int) -> Event:
    return Event(kind=kind, ts_ns=int(t * S), pid=pid, **kw)


def test_counts_ledger_and_rows() -> None:
    s0 = sample(0, cow=100, procs={1: 0, 2: 0})
    s1 = sample(2, cow=112, procs={1: 30, 2: 70}, cpu=4_000_000)
    events = [
        *[ev(EventKind.MERGE, 1) for _ in range(40)],
        *[ev(EventKind.MERGE, 2) for _ in range(70)],
        *[ev(EventKind.COW, 1, value=int(0.25 * S)) for _ in range(9)],
        ev(EventKind.COW, 1, value=int(LIFETIME_UNKNOWN)),
        ev(EventKind.UNMERGE, 2, value=1, flags=int(UnmergeKind.MADVISE)),
        ev(EventKind.UNMERGE, 2, value=1, flags=int(UnmergeKind.KSMD_UNDO)),
        ev(EventKind.SCAN, 1, value=500, value2=1_000_000, mm=7),
        ev(EventKind.SCAN, 2, value=1500, value2=2_000_000, mm=8),
        ev(EventKind.SCAN, 0, value=0, value2=500_000),  # pass overhead
        ev(EventKind.MERGE_FAILED, 2, err=-16),
    ]
    acc = Accumulator()
    rep = acc.add(tick(s0, s1, events))
    assert rep.ledger.cow_ksm_delta == 12
    assert (rep.ledger.write_cows, rep.ledger.explicit, rep.ledger.ksmd_undo) == (10, 1, 1)
    assert rep.ledger.unattributed == 0
    assert rep.scan_overhead_ns == 500_000 and rep.ksmd_cpu_ns == 4_000_000
    rows = {r.pid: r for r in rep.processes}
    assert rows[1].merges == 40 and rows[1].cows == 10 and rows[1].churn == 0.25
    assert rows[1].lifetime_p50_s == pytest.approx(0.25)
    assert rows[2].scanned == 1500 and rows[2].scan_cpu_ns == 2_000_000
    assert rows[2].failures == 1 and rows[2].unmerged == 2
    assert rows[2].rmap_items == 75
    # Sorted by saved memory: process 2 has more merging pages.
    assert [r.pid for r in rep.processes] == [2, 1]
    t1, t2 = acc.totals[1], acc.totals[2]
    assert t1.net_merged == 30 and t2.net_merged == 69  # the undo was never a merge
    assert t2.merge_failures == {-16: 1}
    assert t1.lifetimes.count == 9 and t1.lifetimes.unknown == 1


def test_savings_shares_sum_to_the_kernels_saving() -> None:
    s = sample(1, cow=0, procs={1: 30, 2: 70}, shared=10, sharing=90)
    parts = sum(share_of_savings(s, st.merging_pages, st.zero_pages) for st in s.processes.values())
    assert parts == s.saved_bytes == 90 * 4096


def test_pid_filter_keeps_only_those_processes() -> None:
    s0, s1 = sample(0, 0, {1: 0, 2: 0}), sample(1, 0, {1: 5, 2: 5})
    acc = Accumulator([2])
    rep = acc.add(tick(s0, s1, [ev(EventKind.MERGE, 1), ev(EventKind.MERGE, 2)]))
    assert [r.pid for r in rep.processes] == [2]
    assert set(acc.totals) == {2}


def test_full_scans_pair_start_and_stop_across_ticks() -> None:
    s0, s1, s2 = sample(0, 0, {}), sample(1, 0, {}), sample(2, 0, {})
    acc = Accumulator()
    acc.add(tick(s0, s1, [ev(EventKind.SCAN_START, 0, t=0.2, addr=1_000, value=3)]))
    rep = acc.add(
        tick(s1, s2, [ev(EventKind.SCAN_STOP, 0, t=1.7, addr=51_000, value=3, value2=640)])
    )
    assert rep.full_scans == 1
    assert rep.full_scan_s == pytest.approx(1.5)
    assert rep.full_scan_cpu_s == pytest.approx(50e-6)
    assert rep.full_scan_rmap_items == 640
    assert acc.full_scan_times() == [(pytest.approx(1.5), pytest.approx(50e-6))]


def test_lifetime_histogram_quantiles_interpolate_within_seen_lifetimes() -> None:
    h = LifetimeHistogram()
    h.add(np.array([int(0.0015 * S)] * 3 + [int(3 * S)] + [int(LIFETIME_UNKNOWN)], dtype=np.uint64))
    assert h.count == 4 and h.unknown == 1
    # Rank 2 of 3 in the (1 ms, 2 ms] bucket, narrowed to [1.5 ms, 2 ms], on a log scale.
    assert h.quantile(0.5) == pytest.approx(0.0015 * (0.002 / 0.0015) ** (2 / 3))
    assert h.quantile(1.0) == pytest.approx(3.0)  # the longest lifetime, not the bound 5 s
    assert len(h.counts) == len(LIFETIME_BUCKETS_S)


def test_lifetime_histogram_quantiles_are_close_to_exact_ones() -> None:
    rng = np.random.default_rng(7)
    lifetimes = rng.lognormal(np.log(5.5), 0.6, 20_000)
    h = LifetimeHistogram()
    h.add((lifetimes * S).astype(np.uint64))
    for q in (0.5, 0.9):
        exact = float(np.quantile(lifetimes, q))
        assert h.quantile(q) == pytest.approx(exact, rel=0.15), q
    summed = LifetimeHistogram(counts=list(h.counts))  # bounds unknown: still inside a bucket
    assert 5.0 < (summed.quantile(0.5) or 0) < 10.0


def test_run2_is_detected_and_estimated_from_ksm_stat() -> None:
    before = sample(0, 0, {1: 300, 2: 0}, full_scans=40)
    after = sample(1, 300, {1: 0}, full_scans=0, run=0)
    assert run2_happened(before, after)
    est = run2_unmerges(before, after)
    assert [(e.pid, e.value, e.flags, e.err) for e in est] == [
        (1, 300, int(UnmergeKind.RUN2), ESTIMATED)
    ]
    assert not run2_happened(before, sample(1, 0, {1: 300}, full_scans=41))


def test_views_render_an_interval() -> None:
    s0 = sample(0, cow=0, procs={1: 0})
    s1 = sample(1, cow=3, procs={1: 30})
    acc = Accumulator()
    rep = acc.add(tick(s0, s1, [ev(EventKind.MERGE, 1), *[ev(EventKind.COW, 1) for _ in range(3)]]))
    table = format_interval(rep)
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert "p1" in table and "cow_ksm +3 = 3 write COW" in table
    obj = json.loads(json.dumps(interval_object(rep)))
    assert obj["processes"][0]["pid"] == 1 and obj["ledger"]["unattributed"] == 0
    summary = format_summary(acc, 1.0)
    assert "Merged          1 pages" in summary and "p1" in summary


def test_summary_checks_net_merges_against_ksm_stat() -> None:
    s0 = sample(0, cow=0, procs={1: 0, 2: 0})
    s1 = sample(1, cow=5, procs={1: 25, 2: 40})
    events = [
        ev(EventKind.ENTER, 1),
        ev(EventKind.ENTER, 2),
        *[ev(EventKind.MERGE, 1) for _ in range(30)],
        *[ev(EventKind.COW, 1) for _ in range(5)],
        *[ev(EventKind.MERGE, 2) for _ in range(45)],
    ]
    acc = Accumulator()
    acc.add(tick(s0, s1, events))
    summary = format_summary(acc, 1.0)
    assert "ksm_merging_pages for 1 of 2 processes" in summary
    assert "p2[2] 45 vs 40" in summary


def test_a_ksmd_undo_is_not_subtracted_from_net_merges() -> None:
    s0, s1 = sample(0, cow=0, procs={1: 0}), sample(1, cow=1, procs={1: 2})
    events = [
        ev(EventKind.MERGE, 1),
        ev(EventKind.MERGE, 1),
        ev(EventKind.MERGE_FAILED, 1, err=-14),
        ev(EventKind.UNMERGE, 1, value=1, flags=int(UnmergeKind.KSMD_UNDO)),
    ]
    acc = Accumulator()
    rep = acc.add(tick(s0, s1, events))
    assert acc.totals[1].net_merged == 2
    assert rep.ledger.ksmd_undo == 1 and rep.ledger.unattributed == 0


def test_with_a_pid_filter_the_share_is_of_all_of_ksmds_cpu() -> None:
    s0 = sample(0, cow=0, procs={1: 0, 2: 0}, cpu=0)
    s1 = sample(1, cow=0, procs={1: 10, 2: 10}, cpu=8_000_000)
    events = [
        ev(EventKind.SCAN, 1, value=500, value2=2_000_000, mm=7),
        ev(EventKind.SCAN, 2, value=1500, value2=6_000_000, mm=8),
    ]
    everyone = Accumulator()
    everyone.add(tick(s0, s1, events))
    only_1 = Accumulator(pids={1})
    only_1.add(tick(s0, s1, events))
    assert [p.cpu_share for p in process_summaries(everyone) if p.totals.pid == 1] == [0.25]
    assert [p.cpu_share for p in process_summaries(only_1)] == [0.25]  # not 100 %


def test_summary_names_breaks_and_merges_apart() -> None:
    # Pages merged before tracing began broke during it: more breaks than merges traced.
    s0, s1 = sample(0, cow=0, procs={1: 60}), sample(1, cow=80, procs={1: 40})
    events = [
        *[ev(EventKind.MERGE, 1) for _ in range(60)],
        *[ev(EventKind.COW, 1, value=int(2 * S)) for _ in range(80)],
    ]
    acc = Accumulator()
    acc.add(tick(s0, s1, events))
    summary = format_summary(acc, 1.0)
    assert "80 copy-on-write breaks for 60 merges, half of them within 2.0s of the merge" in summary
    assert "efficiency" not in summary  # ksmd spent no CPU
