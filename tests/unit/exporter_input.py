"""Fixed exporter input: a fake host (tests/fixtures/host-exporter) and a fixed event sequence.

``GOLDEN_TICKS`` drives the golden /metrics file; :class:`ListSource` is a TickSource over
any list of Ticks, so the exporter runs exactly as it does on live probes or a replay.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from ksmtrace.events import (
    LIFETIME_UNKNOWN,
    Event,
    EventBatch,
    EventFlag,
    EventKind,
    HostSample,
    ProcessKsm,
    Tick,
    UnmergeKind,
)
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import IdentityCache
from ksmtrace.kernel import procfs, sysfs

HOST = HostPaths(Path(__file__).parent.parent / "fixtures" / "host-exporter")
S = 1_000_000_000  # ns per second


def fixture_sample(ts_ns: int, ksmd_cpu_ns: int, paths: HostPaths = HOST) -> HostSample:
    """The fake host's counters, read through the same readers the live source uses."""
    procs = {
        pid: ProcessKsm(
            pid,
            st.rmap_items,
            st.zero_pages,
            st.merging_pages,
            st.process_profit,
            st.mergeable,
            st.merge_any,
        )  # fmt: skip
        for pid, st in procfs.list_ksm_processes(paths).items()
    }
    return HostSample(
        ts_ns,
        sysfs.read_ksm_sysfs(paths),
        procfs.read_vmstat_ksm(paths),
        ksmd_cpu_ns,
        procs,
        page_size=4096,
    )


def tick(
    prev: HostSample, sample: HostSample, events: list[Event], lost: dict[int, int] | None = None
) -> Tick:
    """A Tick with identities resolved from the fake host, as the live source does."""
    cache = IdentityCache(HOST)
    pids = {e.pid for e in events if e.pid} | set(sample.processes)
    idents = {pid: cache.get(pid) for pid in pids}
    batch = EventBatch.from_events(events)
    return Tick(prev.ts_ns, sample.ts_ns, batch, sample, lost or {}, idents, prev)


def golden_ticks() -> list[Tick]:
    """Three intervals on the fake host: merges, scans, a full scan, COWs, unmerges, exits."""
    s0 = fixture_sample(10 * S, 12 * S)
    s1 = fixture_sample(11 * S, 12 * S + 40_000_000)
    s2 = replace(
        fixture_sample(12 * S, 12 * S + 90_000_000), vmstat={"cow_ksm": 127, "ksm_swpin_copy": 0}
    )
    s3 = replace(
        fixture_sample(13 * S, 12 * S + 120_000_000), vmstat={"cow_ksm": 128, "ksm_swpin_copy": 0}
    )
    t = 10 * S
    first = [
        Event(EventKind.SCAN_START, t + 1, 0, value=12, addr=12 * S),
        *[Event(EventKind.MERGE, t + 10 + i, 100, flags=EventFlag.STABLE) for i in range(5)],
        *[Event(EventKind.MERGE, t + 20 + i, 200, flags=EventFlag.PAIR_FIRST) for i in range(3)],
        Event(EventKind.SCAN, t + 30, 100, mm=1, value=1000, value2=2_000_000),
        Event(EventKind.SCAN, t + 31, 200, mm=2, value=500, value2=1_000_000),
        Event(EventKind.SCAN, t + 32, 0, value=0, value2=250_000),
    ]
    t = 11 * S
    second = [
        Event(EventKind.COW, t + 1, 100, value=300_000_000),
        Event(EventKind.COW, t + 2, 100, value=4 * S),
        Event(EventKind.COW, t + 3, 300, value=int(LIFETIME_UNKNOWN)),
        Event(EventKind.UNMERGE, t + 4, 400, value=2, flags=UnmergeKind.MADVISE),
        Event(EventKind.UNMERGE, t + 5, 200, value=1, flags=UnmergeKind.KSMD_UNDO),
        Event(EventKind.MERGE, t + 6, 300),
        Event(EventKind.MERGE, t + 7, 400),
        Event(EventKind.SCAN, t + 8, 300, mm=3, value=200, value2=500_000),
        Event(EventKind.SCAN_STOP, t + 9, 0, value=12, addr=12 * S + 80_000_000),
    ]
    t = 12 * S
    third = [
        Event(EventKind.ENTER, t + 1, 500, value=400, flags=EventFlag.FORK),
        Event(EventKind.MERGE, t + 2, 500),
        Event(EventKind.COW, t + 3, 200, value=50_000_000),
        Event(EventKind.EXIT, t + 4, 500),
    ]
    return [
        tick(s0, s1, first),
        tick(s1, s2, second, lost={int(EventKind.COW): 3}),
        tick(s2, s3, third),
    ]


class ListSource:
    """A TickSource that yields the given Ticks, then waits for ``release`` (if given)."""

    def __init__(self, ticks: list[Tick], release: threading.Event | None = None) -> None:
        self._ticks = ticks
        self.release = release
        self.closed = False

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        """Yield every Tick in order; the interval is the recorded one."""
        yield from self._ticks
        if self.release is not None:
            self.release.wait(30)

    def close(self) -> None:
        """Nothing to release."""
        self.closed = True
