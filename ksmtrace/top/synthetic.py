"""Synthetic Ticks with known rates: for UI tests, benchmarks and trying ``top`` without root.

Each :class:`FakeProcess` merges, copies on write and is scanned at fixed rates; the counters
of every :class:`~ksmtrace.events.HostSample` (pages_sharing, cow_ksm, ksmd CPU, ksm_stat)
follow from those events, so the Accumulator sees a consistent host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ksmtrace.events import (
    EVENT_DTYPE,
    EventBatch,
    EventKind,
    HostSample,
    ProcessIdentity,
    ProcessKsm,
    Tick,
    UnmergeKind,
)

#: The synthetic clock starts here (CLOCK_MONOTONIC ns) and the wall clock at WALL0_NS.
T0_NS = 1_000_000_000_000
WALL0_NS = 1_767_225_600 * 10**9  # 2026-01-01 00:00:00 UTC


@dataclass(slots=True)
class FakeProcess:
    """A process with fixed per-second rates.

    Attributes:
        merges_per_s / cows_per_s / scan_per_s: events per second.
        lifetime_s: merge-to-write lifetime of its COWs.
        cpu_ns_per_page: ksmd CPU charged per scanned page.
        merging: ksm_merging_pages at the start.
        mergeable: its ksm_stat "ksm_mergeable"; ``unmerge_at_s`` turns it off with a
            prctl(PR_SET_MEMORY_MERGE, 0) at that trace time.
    """

    pid: int
    comm: str
    merges_per_s: float = 0.0
    cows_per_s: float = 0.0
    scan_per_s: float = 0.0
    lifetime_s: float = 1.0
    cpu_ns_per_page: int = 2000
    merging: int = 0
    mergeable: bool = True
    unmerge_at_s: float | None = None
    vm: str | None = None
    cgroup: str = "/system.slice/app.service"
    unit: str | None = "app.service"

    def identity(self) -> ProcessIdentity:
        """Who the process is."""
        return ProcessIdentity(
            self.pid, self.comm, 1, vm=self.vm, vm_kind="qemu" if self.vm else None,
            cgroup=self.cgroup, unit=self.unit,
        )  # fmt: skip


@dataclass(slots=True)
class FakeHost:
    """Host-wide settings of the synthetic run."""

    run: int = 1
    pages_to_scan: int = 1000
    sleep_millisecs: int = 10
    volatile: int = 0
    unshared: int = 0
    full_scan_s: float = 4.0
    interval_s: float = 1.0
    extra_events_per_s: int = 0
    knobs: dict[str, int | str] = field(default_factory=dict)


def _events(kind: EventKind, pid: int, n: int, t0: int, span: int) -> np.ndarray:
    rec = np.zeros(n, dtype=EVENT_DTYPE)
    rec["ts_ns"] = t0 + (np.arange(n, dtype=np.uint64) * span) // max(1, n)
    rec["pid"] = pid
    rec["tid"] = pid
    rec["kind"] = int(kind)
    return rec


class SyntheticSource:
    """A TickSource over fake processes; ``realtime`` sleeps like the live source does.

    Args:
        procs: the processes.
        host: host settings.
        realtime: pace ticks at ``interval_s`` of wall time (benchmarks); else instant.
    """

    def __init__(
        self, procs: Sequence[FakeProcess], host: FakeHost | None = None, realtime: bool = False
    ) -> None:
        self.procs = list(procs)
        self.host = host or FakeHost()
        self.realtime = realtime
        self.closed = False
        self._t = 0
        self._cum = {"cow_ksm": 0, "cpu": 0, "scanned": 0, "full_scans": 0}
        self._merging = {p.pid: p.merging for p in self.procs}
        self._carry: dict[tuple[int, str], float] = {}
        self._scan_start: tuple[int, int] = (T0_NS, 0)

    def _count(self, pid: int, what: str, rate: float, dt: float) -> int:
        exact = rate * dt + self._carry.get((pid, what), 0.0)
        n = int(exact)
        self._carry[(pid, what)] = exact - n
        return n

    def _proc_events(self, p: FakeProcess, t0: int, span: int, dt: float) -> list[np.ndarray]:
        t_s = (t0 - T0_NS) / 1e9
        out = []
        if p.unmerge_at_s is not None and t_s <= p.unmerge_at_s < t_s + dt and p.mergeable:
            unm = _events(EventKind.UNMERGE, p.pid, 1, t0, span)
            unm["flags"], unm["value"] = int(UnmergeKind.PRCTL), self._merging[p.pid]
            self._cum["cow_ksm"] += self._merging[p.pid]
            self._merging[p.pid] = 0
            p.mergeable = False
            out.append(unm)
        if not p.mergeable or self.host.run != 1:
            return out
        merges = self._count(p.pid, "m", p.merges_per_s, dt)
        cows = min(self._count(p.pid, "c", p.cows_per_s, dt), self._merging[p.pid] + merges)
        scans = self._count(p.pid, "s", p.scan_per_s, dt)
        out.append(_events(EventKind.MERGE, p.pid, merges, t0, span))
        cow = _events(EventKind.COW, p.pid, cows, t0, span)
        cow["value"] = int(p.lifetime_s * 1e9)
        out.append(cow)
        if scans:
            scan = _events(EventKind.SCAN, p.pid, 1, t0, span)
            scan["value"], scan["value2"] = scans, scans * p.cpu_ns_per_page
            self._cum["cpu"] += scans * p.cpu_ns_per_page
            self._cum["scanned"] += scans
            out.append(scan)
        self._merging[p.pid] += merges - cows
        self._cum["cow_ksm"] += cows
        return out

    def _scan_marks(self, t0: int, t1: int) -> list[np.ndarray]:
        every = int(self.host.full_scan_s * 1e9)
        if self.host.run != 1 or (t1 - T0_NS) // every == (t0 - T0_NS) // every:
            return []
        stop = _events(EventKind.SCAN_STOP, 0, 1, t1 - 1, 1)
        stop["addr"] = self._cum["cpu"]
        start = _events(EventKind.SCAN_START, 0, 1, self._scan_start[0], 1)
        start["addr"] = self._scan_start[1]
        self._scan_start = (t1 - 1, self._cum["cpu"])
        self._cum["full_scans"] += 1
        return [start, stop] if self._cum["full_scans"] > 1 else [stop]

    def _noise(self, t0: int, span: int, dt: float) -> list[np.ndarray]:
        n = int(self.host.extra_events_per_s * dt)
        if not n or not self.procs:
            return []
        rec = _events(EventKind.MERGE_FAILED, 0, n, t0, span)
        rec["pid"] = np.array([p.pid for p in self.procs], dtype=np.uint32)[
            np.arange(n) % len(self.procs)
        ]
        rec["err"] = -14
        return [rec]

    def _sample(self, ts: int) -> HostSample:
        merging = sum(self._merging.values())
        shared = merging // 4
        procs = {
            p.pid: ProcessKsm(p.pid, p.merging + 64, 0, self._merging[p.pid],
                              self._merging[p.pid] * 4096, p.mergeable, False)
            for p in self.procs if p.mergeable or self._merging[p.pid]
        }  # fmt: skip
        h = self.host
        ksm: dict[str, int | str] = {
            "run": h.run, "pages_to_scan": h.pages_to_scan, "sleep_millisecs": h.sleep_millisecs,
            "max_page_sharing": 256, "use_zero_pages": 0, "smart_scan": 1,
            "merge_across_nodes": 1, "advisor_mode": "none",
            "pages_shared": shared, "pages_sharing": merging - shared,
            "pages_unshared": h.unshared, "pages_volatile": h.volatile,
            "pages_scanned": self._cum["scanned"], "full_scans": self._cum["full_scans"],
            "ksm_zero_pages": 0, "general_profit": (merging - shared) * 4096, **h.knobs,
        }  # fmt: skip
        wall = WALL0_NS + (ts - T0_NS)
        return HostSample(ts, ksm, {"cow_ksm": self._cum["cow_ksm"]}, self._cum["cpu"], procs,
                          wall_ns=wall)  # fmt: skip

    def next_tick(self, previous: HostSample | None) -> Tick:
        """Make the next interval's Tick."""
        dt = self.host.interval_s
        t0 = T0_NS + self._t
        span = int(dt * 1e9)
        parts = [e for p in self.procs for e in self._proc_events(p, t0, span, dt)]
        parts += self._scan_marks(t0, t0 + span) + self._noise(t0, span, dt)
        rec = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
        rec = rec[np.argsort(rec["ts_ns"], kind="stable")]
        self._t += span
        sample = self._sample(t0 + span)
        idents = {p.pid: p.identity() for p in self.procs}
        return Tick(t0, t0 + span, EventBatch(rec), sample, {}, idents, previous)

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        """Ticks of ``host.interval_s`` (``interval_s`` is ignored) until ``duration_s``."""
        prev = self._sample(T0_NS)
        started = time.monotonic()
        n = 0
        while not self.closed and (duration_s is None or n * self.host.interval_s < duration_s):
            tick = self.next_tick(prev)
            n += 1
            if self.realtime:
                time.sleep(max(0.0, started + n * self.host.interval_s - time.monotonic()))
            yield tick
            prev = tick.sample

    def close(self) -> None:
        """Stop producing ticks."""
        self.closed = True


def synthetic_ticks(
    procs: Sequence[FakeProcess], seconds: float, host: FakeHost | None = None
) -> list[Tick]:
    """All Ticks of ``seconds`` of a synthetic run, made at once."""
    source = SyntheticSource(procs, host)
    return list(source.ticks(source.host.interval_s, seconds))
