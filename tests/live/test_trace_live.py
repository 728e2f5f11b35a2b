"""Live tracing against real KSM activity, checked against the kernel's own counters."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import numpy as np
import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.events import LIFETIME_UNKNOWN, EventBatch, EventFlag, EventKind, UnmergeKind
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.probes.live import LiveOptions, LiveSource
from ksmtrace.workers import Worker, wait_until

from .conftest import cow_ksm, full_scans, merging_pages

pytestmark = pytest.mark.live

SpawnFn = Callable[..., Worker]


def start_ksm(guard: KnobGuard, pages_to_scan: int = 2000, sleep_ms: int = 10) -> None:
    guard.set("pages_to_scan", pages_to_scan)
    guard.set("sleep_millisecs", sleep_ms)
    guard.set("run", 1)


def wait_merged(pid: int, pages: int, timeout_s: float = 60) -> None:
    assert wait_until(lambda: merging_pages(pid) >= pages, timeout_s), (
        f"pid {pid}: only {merging_pages(pid)} of {pages} pages merged within {timeout_s} s"
    )


def wait_full_scans(n: int, timeout_s: float = 60) -> None:
    target = full_scans() + n
    assert wait_until(lambda: full_scans() >= target, timeout_s), "ksmd made no progress"


def of_kind(batch: EventBatch, kind: EventKind) -> np.ndarray:
    return batch.of_kind(kind)


def test_write_cows_equal_cow_ksm_delta_and_belong_to_the_writer(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    w = spawn("cowtest", 2000, shared=1.0, distinct=8)
    t_merge_start = time.monotonic_ns()
    start_ksm(fresh_ksm)
    wait_merged(w.pid, 2000)
    fresh_ksm.set("run", 0)  # ksmd stops: from here on only the writer moves cow_ksm
    time.sleep(0.1)
    live.drain()
    before = cow_ksm()
    t_write = time.monotonic_ns()
    w.command("write 0 2000")
    after = cow_ksm()
    cows = of_kind(live.drain(), EventKind.COW)

    assert after - before == 2000, "the workload should have copied each merged page once"
    assert len(cows) == after - before
    assert set(cows["pid"].tolist()) == {w.pid}
    assert set(cows["tid"].tolist()) == {w.pid}
    life = cows["value"]
    assert not np.any(life == LIFETIME_UNKNOWN), (
        "every merge was traced, so every lifetime is known"
    )
    # A lifetime runs from the merge (after t_merge_start) to the write (after t_write).
    assert np.all(life > 0)
    assert np.all(life <= time.monotonic_ns() - t_merge_start)
    assert np.all(cows["ts_ns"] >= t_write)


def test_net_merges_agree_with_ksm_stat_after_ksmd_passes(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    acc = Accumulator()
    a = spawn("stat-a", 3000, shared=0.8, distinct=32, seed=7)
    b = spawn("stat-b", 2000, shared=0.8, distinct=32, seed=7, zero=0.1)
    start_ksm(fresh_ksm)
    wait_merged(a.pid, 2400)
    wait_merged(b.pid, 1800)
    wait_full_scans(2)
    a.command("write 0 500")  # copy-on-write; the written pages are equal again and re-merge
    b.command("unmerge 1000 200")  # explicit unmerge of a range
    wait_full_scans(3)
    time.sleep(0.1)
    fresh_ksm.set("run", 0)
    time.sleep(0.05)
    acc.add_events(live.drain())
    for worker in (a, b):
        totals = acc.totals[worker.pid]
        assert totals.merges > 0
        assert totals.net_merged == merging_pages(worker.pid), (
            f"{worker.spec.name}: merges {totals.merges} - cows {totals.cows} - unmerged "
            f"{totals.unmerged_total} != ksm_merging_pages {merging_pages(worker.pid)}"
        )
    assert acc.totals[a.pid].cows == 500
    assert acc.totals[b.pid].unmerged == {UnmergeKind.MADVISE: 200}


def test_pages_scanned_and_ksmd_cpu_per_process_match_the_kernel(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    # Unique pages make ksmd work (checksums, unstable tree) so CPU is well above noise.
    procs = [
        spawn("scan-a", 6000, shared=0.5, distinct=64, seed=11),
        spawn("scan-b", 6000, shared=0.2, distinct=64, seed=11),
        spawn("scan-c", 3000, shared=0.0, seed=12),
    ]
    fresh_ksm.set("smart_scan", 0)  # keep unique pages in every pass
    start_ksm(fresh_ksm, pages_to_scan=500, sleep_ms=5)
    wait_full_scans(3)
    # On a fresh boot the scan site is learned at the first full-scan start: measure after.
    assert wait_until(lambda: live.scan_site_ready, 30), "ksmd's scan site was not recognised"
    list(live.ticks(1.0, 1.0))  # the window starts now
    ticks = list(live.ticks(1.0, 12.0))
    first, last = ticks[0], ticks[-1]
    assert first.previous is not None
    scan = of_kind(EventBatch.concat([t.events for t in ticks]), EventKind.SCAN)
    kernel_pages = last.sample.counter("pages_scanned") - first.previous.counter("pages_scanned")
    kernel_cpu = last.sample.ksmd_cpu_ns - first.previous.ksmd_cpu_ns
    traced_pages = int(scan["value"].sum())
    traced_cpu = int(scan["value2"].sum())
    assert kernel_pages > 200_000
    assert abs(traced_pages - kernel_pages) <= 0.005 * kernel_pages, (traced_pages, kernel_pages)
    assert abs(traced_cpu - kernel_cpu) <= 0.05 * kernel_cpu, (traced_cpu, kernel_cpu)
    per_pid = {p.pid: int(scan["value"][scan["pid"] == p.pid].sum()) for p in procs}
    assert all(n > 0 for n in per_pid.values()), per_pid
    # Every page is charged to a process that really has KSM state (pid 0 is pass
    # overhead); other mergeable processes on the host may legitimately appear.
    registered = set().union(*(t.sample.processes for t in ticks))
    assert set(scan["pid"].tolist()) - {0} <= registered
    # Bigger address spaces take proportionally more scanning (6000 vs 3000 pages).
    assert 1.6 < per_pid[procs[0].pid] / per_pid[procs[2].pid] < 2.4, per_pid


def test_fork_registers_the_child_and_charges_its_writes_to_it(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    w = spawn("forker", 1000, shared=1.0, distinct=4)
    start_ksm(fresh_ksm)
    wait_merged(w.pid, 1000)
    fresh_ksm.set("run", 0)
    live.drain()
    before = cow_ksm()
    child = int(w.command("fork 300 0.2").split()[1])
    assert wait_until(lambda: cow_ksm() - before >= 300, 10), "child did not write"
    time.sleep(0.1)
    batch = live.drain()
    enters = of_kind(batch, EventKind.ENTER)
    fork_enter = enters[(enters["pid"] == child)]
    assert len(fork_enter) == 1
    assert fork_enter["flags"][0] & EventFlag.FORK
    assert int(fork_enter["value"][0]) == w.pid, "registered in the parent's context"
    cows = of_kind(batch, EventKind.COW)
    assert len(cows) == cow_ksm() - before == 300
    assert set(cows["pid"].tolist()) == {child}
    assert np.all(cows["flags"] & EventFlag.INHERITED), "lifetimes come from the parent's merges"
    assert not np.any(cows["value"] == LIFETIME_UNKNOWN)


def test_explicit_unmerges_are_counted_and_balance_the_ledger(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    adv = spawn("madv", 2000, shared=1.0, distinct=8)
    prc = spawn("prctl", 1500, shared=1.0, distinct=8, prctl=True)
    start_ksm(fresh_ksm)
    wait_merged(adv.pid, 2000)
    wait_merged(prc.pid, 1500)
    wait_full_scans(2)
    fresh_ksm.set("run", 0)
    time.sleep(0.05)
    live.drain()
    # With PR_SET_MEMORY_MERGE every anonymous mapping of the process merges (the Python
    # heap too), so all its merging pages are unshared by turning it off.
    prc_merged = merging_pages(prc.pid)
    assert prc_merged >= 1500
    before = cow_ksm()
    adv.command("unmerge 0 1200")
    prc.command("merge_any off")
    delta = cow_ksm() - before
    time.sleep(0.1)  # unshare runs are reported once idle for 50 ms
    batch = live.drain()
    unm = of_kind(batch, EventKind.UNMERGE)
    by_kind = {int(r["flags"]): (int(r["pid"]), int(r["value"])) for r in unm}
    assert by_kind[UnmergeKind.MADVISE] == (adv.pid, 1200)
    assert by_kind[UnmergeKind.PRCTL] == (prc.pid, prc_merged)
    assert delta == 1200 + prc_merged
    assert len(of_kind(batch, EventKind.COW)) == 0, "unsharing is not a write fault"


def test_a_process_exiting_mid_trace_is_reported_and_tracing_goes_on(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    stay = spawn("stays", 1500, shared=1.0, distinct=8, seed=3)
    leave = spawn("leaves", 1500, shared=1.0, distinct=8, seed=3)
    start_ksm(fresh_ksm)
    wait_merged(leave.pid, 1500)
    acc = Accumulator()
    reports = []
    mms = set()
    for i, tick in enumerate(live.ticks(1.0, 5.0)):
        reports.append(acc.add(tick))
        merges = tick.events.of_kind(EventKind.MERGE)
        mms |= set(merges["mm"][merges["pid"] == leave.pid].tolist())
        if i == 1:
            os.kill(leave.pid, signal.SIGKILL)
            leave.proc.wait()
    last = reports[-1]
    rows = {r.pid: r for r in last.processes}
    assert stay.pid in rows and rows[stay.pid].alive
    assert leave.pid not in rows or not rows[leave.pid].alive
    assert acc.totals[leave.pid].exits == 1, "ksm_exit of the killed process was traced"
    assert acc.totals[leave.pid].merges > 0, "its totals survive its exit"
    assert acc.identities[leave.pid].comm == "leaves"
    # Its remembered merge times are dropped (the kernel-side map would otherwise fill up).
    assert len(mms) == 1
    (mm,) = mms
    assert live.remembered_merges().get(mm, 0) > 0
    assert live.collect_garbage() > 0
    assert live.remembered_merges().get(mm, 0) == 0


def test_run2_unmerges_are_estimated_per_process(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    w = spawn("run2", 2000, shared=1.0, distinct=8)
    start_ksm(fresh_ksm)
    wait_merged(w.pid, 2000)
    wait_full_scans(2)
    acc = Accumulator()
    ticks = live.ticks(0.5)
    acc.add(next(ticks))
    fresh_ksm.set("run", 2)  # unshares everything from this (the writer's) context
    reports = [acc.add(next(ticks)) for _ in range(2)]
    ticks.close()
    unm = acc.totals[w.pid].unmerged
    assert unm.get(UnmergeKind.RUN2) == 2000
    led = acc.ledger_total
    assert led.cow_ksm_delta >= 2000
    assert sum(r.ledger.explicit for r in reports) >= 2000
    assert abs(led.unattributed) <= 0.01 * led.cow_ksm_delta


def test_sampled_scan_cost_traces_on_schedule_and_estimates_in_between(
    fresh_ksm: KnobGuard, spawn: SpawnFn
) -> None:
    a = spawn("samp-a", 4000, shared=0.5, seed=31)
    b = spawn("samp-b", 2000, shared=0.5, seed=32)
    fresh_ksm.set("smart_scan", 0)  # steady shares: every page visited every pass
    start_ksm(fresh_ksm, pages_to_scan=1000, sleep_ms=10)
    wait_full_scans(3)
    src = LiveSource(options=LiveOptions(scan_cost="sampled", sample_every=3))
    with src:
        ticks = list(src.ticks(1.0, 6.0))
    traced, estimated = [], []
    for t in ticks:
        scan = t.events.of_kind(EventKind.SCAN)
        est = (scan["flags"] & EventFlag.ESTIMATED) != 0
        assert est.all() or not est.any(), "an interval is either traced or estimated"
        (estimated if est.any() else traced).append(scan)
    # Interval 0 and 3 are traced (attached at start, then one in three).
    assert len(traced) == 2 and len(estimated) == 4
    for scan in estimated:
        pages = {p: int(scan["value"][scan["pid"] == p].sum()) for p in (a.pid, b.pid)}
        # a has twice b's pages, so it gets about twice its share of the scanning.
        assert 1.7 < pages[a.pid] / pages[b.pid] < 2.3, pages
