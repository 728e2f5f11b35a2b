"""Measuring ksmd's CPU cost per page class on this host with the live tracer.

Two workload processes give ksmd two kinds of pages: one of few distinct contents (its
pages merge quickly, then every visit is a visit of a KSM page) and one of unique pages
(each visit computes a checksum and searches both trees; with smart_scan on, most of its
visits become skips). The live tracer's SCAN events give pages scanned and ksmd CPU per
process and interval; a non-negative least-squares fit over those rows gives the cost of
a KSM-page visit, another visit, a merge and a skip; SCAN events with mm 0 give the cost
of a full scan's own work. The tracer's own probes on ksmd's scan path make ksmd slower
while it measures, so ksmd's CPU per page scanned is measured again with the probes
detached, at the same settings, and every cost is scaled by the ratio of the two.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.cost import CostProfile
from ksmtrace.errors import KsmtraceError
from ksmtrace.events import EventKind, Tick
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs, sysfs
from ksmtrace.kernel.jiffies import host_hz
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.kernel.taskstats import TaskCpuReader
from ksmtrace.probes.live import LiveSource
from ksmtrace.workers import Workers, WorkerSpec


@dataclass(slots=True)
class _Rows:
    x: list[list[float]]
    y: list[float]
    pass_ns: list[float]
    passes: int = 0
    first_pass_ns: float = 0.0
    first_pass_pages: int = 0


def nnls(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Least squares with non-negative coefficients (small problems: drop negatives, refit)."""
    active = list(range(a.shape[1]))
    coef = np.zeros(a.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(a[:, active], b, rcond=None)
        if np.all(sol >= 0):
            coef[active] = sol
            return coef
        active.pop(int(np.argmin(sol)))
    return coef


def expected_period_ns(mean_ns: float, jiffies: int, jiffy_ns: float, cpu_ns: float) -> float:
    """Mean time between batches for an exponential wake-up latency of mean ``mean_ns``.

    The batch runs latency + cpu after a jiffy boundary and the next timer fires
    ``jiffies`` + 1 jiffies after the boundary the batch ended in (see
    ``ksmtrace.engine.loop.wake_time``), so every jiffy boundary crossed adds a jiffy.
    """
    extra = 0.0
    k = 1
    while True:
        gap = k * jiffy_ns - cpu_ns
        term = 1.0 if gap <= 0 else (np.exp(-gap / mean_ns) if mean_ns > 0 else 0.0)
        if term < 1e-9:
            break
        extra += term
        k += 1
    return (jiffies + 1 + extra) * jiffy_ns


def solve_wake_latency(period_ns: float, jiffies: int, jiffy_ns: float, cpu_ns: float) -> float:
    """The mean latency for which :func:`expected_period_ns` equals a measured period."""
    if expected_period_ns(0.0, jiffies, jiffy_ns, cpu_ns) >= period_ns:
        return 0.0
    lo, hi = 0.0, 20 * jiffy_ns
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected_period_ns(mid, jiffies, jiffy_ns, cpu_ns) < period_ns:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _first_pass(ticks: list[Tick], rows: _Rows) -> None:
    """CPU of the first full scan: every page is visited for the first time (volatile)."""
    rec = np.concatenate([t.events.records for t in ticks])
    starts = rec[rec["kind"] == EventKind.SCAN_START]
    stops = rec[rec["kind"] == EventKind.SCAN_STOP]
    if len(starts) and len(stops) and int(stops["value"][0]) == int(starts["value"][0]):
        rows.first_pass_ns = float(int(stops["addr"][0]) - int(starts["addr"][0]))
        rows.first_pass_pages = int(stops["value2"][0])


def _collect(ticks: list[Tick], pids: dict[int, str], rows: _Rows) -> None:
    for tick in ticks:
        rec = tick.events.records
        scan = rec[rec["kind"] == EventKind.SCAN]
        merges = rec[rec["kind"] == EventKind.MERGE]
        prev = tick.previous
        skipped = tick.sample.counter("pages_skipped") - (
            prev.counter("pages_skipped") if prev else 0
        )
        rows.pass_ns.append(float(scan["value2"][scan["mm"] == 0].sum()))
        rows.passes += int(np.count_nonzero(rec["kind"] == EventKind.SCAN_STOP))
        for pid, role in pids.items():
            mine = scan[scan["pid"] == pid]
            pages = float(mine["value"].sum())
            if pages < 100:
                continue
            st = tick.sample.processes.get(pid)
            frac = st.merging_pages / st.rmap_items if st and st.rmap_items else 0.0
            n_merge = float(np.count_nonzero(merges["pid"] == pid))
            skips = float(skipped) if role == "unique" else 0.0
            rows.x.append([pages * frac, pages * (1 - frac), n_merge, skips])
            rows.y.append(float(mine["value2"].sum()))


def traced_ns_per_page(ticks: list[Tick]) -> float | None:
    """CPU of ksmd per page scanned over ``ticks`` (with the tracer attached)."""
    first, last = ticks[0].previous or ticks[0].sample, ticks[-1].sample
    if first.ksmd_cpu_ns < 0 or last.ksmd_cpu_ns < 0:
        return None
    pages = last.counter("pages_scanned") - first.counter("pages_scanned")
    return (last.ksmd_cpu_ns - first.ksmd_cpu_ns) / pages if pages > 0 else None


def untraced_ns_per_page(paths: HostPaths, seconds: float) -> float | None:
    """CPU of ksmd per page scanned over the next ``seconds`` (taskstats and sysfs)."""
    ksmd = procfs.find_ksmd(paths)
    if ksmd is None:
        return None
    reader = TaskCpuReader(paths)
    try:
        a, p0 = reader.read(ksmd), sysfs.read_ksm_sysfs(paths)["pages_scanned"]
        time.sleep(seconds)
        b, p1 = reader.read(ksmd), sysfs.read_ksm_sysfs(paths)["pages_scanned"]
    finally:
        reader.close()
    pages = int(p1) - int(p0)
    if a is None or b is None or pages <= 0:
        return None
    return (b.run_ns - a.run_ns) / pages


#: The tracer-overhead correction is kept within these bounds: probes cannot make ksmd
#: faster, and a factor far below this would mean the two windows were not comparable.
_FACTOR_RANGE = (0.3, 1.0)

#: pages_to_scan of the batch-period phase (small: the period is then mostly sleep).
_PERIOD_PAGES = 100


def _batch_period(
    guard: KnobGuard, paths: HostPaths, seconds: float, progress: Callable[[str], None] | None
) -> float:
    """Mean ns between batches at pages_to_scan=100, sleep_millisecs=10, unique pages."""
    if progress is not None:
        progress(f"batch period at pages_to_scan={_PERIOD_PAGES} for {seconds:g} s")
    guard.set("smart_scan", 0)
    guard.set("pages_to_scan", _PERIOD_PAGES)
    time.sleep(0.3)
    a, t0 = sysfs.read_ksm_sysfs(paths)["pages_scanned"], time.monotonic()
    time.sleep(seconds)
    b, t1 = sysfs.read_ksm_sysfs(paths)["pages_scanned"], time.monotonic()
    rate = (int(b) - int(a)) / (t1 - t0)
    return _PERIOD_PAGES / rate * 1e9 if rate > 0 else 0.0


def measure_wake_latency(
    guard: KnobGuard, profile: CostProfile, paths: HostPaths | None = None, seconds: float = 3.0
) -> CostProfile:
    """``profile`` with its wake-up latency measured again now (the host's load changes).

    Runs a scratch workload of unique pages for ``seconds`` and unmerges afterwards
    (run=2, then run=0); the caller holds the KSM session lock.
    """
    paths = paths or HostPaths.from_env()
    guard.set("run", 2)
    guard.set("run", 0)
    guard.set("sleep_millisecs", 10)
    with Workers([WorkerSpec("cal-wake", 4096, shared=0.0, seed=93)]):
        guard.set("run", 1)
        period_ns = _batch_period(guard, paths, seconds, None)
        guard.set("run", 2)
    guard.set("run", 0)
    hz = host_hz(paths)
    jiffies = -(-10 * hz // 1000)
    wake = solve_wake_latency(period_ns, jiffies, 1e9 / hz, _PERIOD_PAGES * profile.page_ns)
    return dataclasses.replace(profile, wake_ns=wake)


def measure_cost(
    guard: KnobGuard,
    paths: HostPaths | None = None,
    pages: int = 16384,
    phase_s: float = 6.0,
    progress: Callable[[str], None] | None = None,
) -> CostProfile:
    """Run the calibration workload and fit a cost profile (knobs changed through ``guard``).

    The caller holds the KSM session lock; knobs are restored by ``guard``'s owner.

    Args:
        guard: Where knob changes go.
        paths: Host paths.
        pages: Pages per workload process.
        phase_s: Seconds of each phase (smart_scan off, then on).
        progress: Told what each phase does.
    """
    paths = paths or HostPaths.from_env()
    specs = [
        WorkerSpec("cal-dup", pages, shared=1.0, distinct=16, seed=91),
        WorkerSpec("cal-unique", pages, shared=0.0, seed=92),
    ]
    rows = _Rows([], [], [])
    guard.set("run", 2)
    guard.set("run", 0)
    traced: float | None = None
    with Workers(specs) as workers:
        roles = {workers.by_name("cal-dup").pid: "dup", workers.by_name("cal-unique").pid: "unique"}
        with LiveSource(paths) as live:
            guard.set("pages_to_scan", 2000)
            guard.set("sleep_millisecs", 10)
            for smart in (0, 1):
                guard.set("smart_scan", smart)
                guard.set("run", 1)
                if progress is not None:
                    progress(f"smart_scan={smart} for {phase_s:g} s")
                ticks = list(live.ticks(0.5, phase_s))
                if smart == 0:
                    _first_pass(ticks, rows)
                _collect(ticks[1:], roles, rows)
            traced = traced_ns_per_page(ticks[1:])
        # The same settings and pages, now without the probes (ksmd's steady state).
        if progress is not None:
            progress(f"without the tracer for {phase_s / 2:g} s")
        untraced = untraced_ns_per_page(paths, phase_s / 2)
        period_ns = _batch_period(guard, paths, phase_s / 2, progress)
        # Unmerge before the workers exit: with ksmd stopped, their merged pages would stay
        # in pages_sharing (ksmd drops an exited mm's pages only when it scans again).
        guard.set("run", 2)
        guard.set("run", 0)
        time.sleep(0.05)
    x = np.array(rows.x, dtype=np.float64)
    y = np.array(rows.y, dtype=np.float64)
    if len(y) < 4:
        raise KsmtraceError(
            "calibrate-cost measured no per-process scan cost (ksmd's scan site is not "
            "recognised yet, or ksmd did not run); run it again, or check 'ksmtrace doctor'"
        )
    factor = 1.0
    if traced and untraced:
        factor = min(max(untraced / traced, _FACTOR_RANGE[0]), _FACTOR_RANGE[1])
    ksm_ns, page_ns, merge_ns, skip_ns = nnls(x, y) * factor
    hz = host_hz(paths)
    jiffy = 1e9 / hz
    wake_ns = solve_wake_latency(period_ns, -(-10 * hz // 1000), jiffy, _PERIOD_PAGES * page_ns)
    pass_ns = sum(rows.pass_ns) / max(1, rows.passes) * factor
    volatile_ns = max(0.0, rows.first_pass_ns * factor - pass_ns) / max(1, rows.first_pass_pages)
    return CostProfile(
        ksm_page_ns=float(ksm_ns),
        volatile_ns=volatile_ns,
        page_ns=float(page_ns),
        merge_ns=float(merge_ns),
        skip_ns=float(skip_ns),
        pass_ns=pass_ns,
        batch_ns=0.0,
        wake_ns=wake_ns,
        kernel=os.uname().release,
        hz=hz,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        method=(
            f"live tracer SCAN events, 2 x {pages} pages (few contents / unique), "
            f"pages_to_scan=2000 sleep_millisecs=10, smart_scan 0 then 1, {phase_s:g} s each; "
            f"wake-up from the batch period at pages_to_scan={_PERIOD_PAGES} "
            f"sleep_millisecs=10 ({period_ns / 1e6:.2f} ms); costs x {factor:.2f} for the "
            f"tracer's own overhead (ksmd {untraced or 0:.0f} ns per page scanned without it, "
            f"{traced or 0:.0f} with it)"
        ),
        samples=len(y),
        extra={
            "tracer_factor": factor,
            "untraced_ns_per_page": untraced or 0.0,
            "traced_ns_per_page": traced or 0.0,
        },
    )
