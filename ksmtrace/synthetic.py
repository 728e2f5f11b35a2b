"""Synthetic Ticks of realistic shape, for benchmarks and tests of the trace file and views."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ksmtrace.events import (
    EVENT_DTYPE,
    LIFETIME_UNKNOWN,
    EventBatch,
    EventKind,
    HostSample,
    ProcessIdentity,
    ProcessKsm,
    Tick,
    UnmergeKind,
)

#: Share of each kind in the synthetic stream: ksmd scans and merges dominate real traces.
_KIND_MIX = {
    EventKind.SCAN: 0.45,
    EventKind.MERGE: 0.30,
    EventKind.COW: 0.15,
    EventKind.MERGE_FAILED: 0.05,
    EventKind.UNMERGE: 0.03,
    EventKind.ZERO_MERGE: 0.02,
}


def synthetic_events(
    rng: np.random.Generator, n: int, t0_ns: int, span_ns: int, pids: list[int]
) -> EventBatch:
    """``n`` events spread over [t0_ns, t0_ns + span_ns), in time order."""
    rec = np.zeros(n, dtype=EVENT_DTYPE)
    kinds = np.array([int(k) for k in _KIND_MIX])
    rec["kind"] = rng.choice(kinds, size=n, p=np.array(list(_KIND_MIX.values())))
    rec["ts_ns"] = np.sort(rng.integers(t0_ns, t0_ns + span_ns, size=n, dtype=np.uint64))
    pid = rng.choice(np.array(pids, dtype=np.uint32), size=n)
    rec["pid"] = rec["tid"] = pid
    rec["mm"] = np.uint64(0xFFFF888100000000) + pid.astype(np.uint64) * np.uint64(0x1000)
    rec["addr"] = rng.integers(0x7F0000000, 0x7F0100000, size=n, dtype=np.uint64) << np.uint64(12)
    kind = rec["kind"]
    scan = kind == EventKind.SCAN
    rec["value"][scan] = rng.integers(1, 64, size=int(scan.sum()))
    rec["value2"][scan] = rng.integers(1_000, 200_000, size=int(scan.sum()))
    merge = kind == EventKind.MERGE
    rec["value"][merge] = rng.integers(0x100000, 0x600000, size=int(merge.sum()))
    cow = kind == EventKind.COW
    life = rng.integers(1_000_000, 20_000_000_000, size=int(cow.sum()), dtype=np.uint64)
    life[rng.random(int(cow.sum())) < 0.05] = LIFETIME_UNKNOWN
    rec["value"][cow] = life
    rec["value2"][cow] = rng.integers(0x100000, 0x600000, size=int(cow.sum()))
    rec["err"][kind == EventKind.MERGE_FAILED] = -14
    unm = kind == EventKind.UNMERGE
    rec["flags"][unm] = int(UnmergeKind.MADVISE)
    rec["value"][unm] = rng.integers(1, 16, size=int(unm.sum()))
    return EventBatch(rec)


def synthetic_sample(ts_ns: int, tick: int, pids: list[int]) -> HostSample:
    """A HostSample whose counters grow with ``tick``."""
    procs = {
        p: ProcessKsm(p, 1000 + tick, tick % 7, 100 * tick + i, 4096 * tick, True, False)
        for i, p in enumerate(pids)
    }
    ksm: dict[str, int | str] = {
        "run": 1,
        "pages_to_scan": 1000,
        "sleep_millisecs": 10,
        "pages_shared": 50 * tick,
        "pages_sharing": 200 * tick,
        "full_scans": tick // 3,
        "ksm_zero_pages": tick,
        "general_profit": 4096 * 150 * tick,
        "advisor_mode": "none",
    }
    vmstat = {"cow_ksm": 30 * tick, "ksm_swpin_copy": 0}
    return HostSample(
        ts_ns, ksm, vmstat, 10_000_000 * tick, procs, 4096, 1_700_000_000 * 10**9 + ts_ns
    )


def synthetic_ticks(
    count: int,
    events_per_tick: int,
    *,
    interval_ns: int = 1_000_000_000,
    pids: list[int] | None = None,
    seed: int = 1,
) -> Iterator[Tick]:
    """``count`` consecutive Ticks with ``events_per_tick`` events each."""
    rng = np.random.default_rng(seed)
    pids = pids or [1001, 1002, 1003, 1004]
    idents = {p: ProcessIdentity(p, f"worker{i}", 1000 + p) for i, p in enumerate(pids)}
    t0 = 1_000_000_000_000
    prev = synthetic_sample(t0, 0, pids)
    for i in range(1, count + 1):
        start, end = t0 + (i - 1) * interval_ns, t0 + i * interval_ns
        events = synthetic_events(rng, events_per_tick, start, interval_ns, pids)
        sample = synthetic_sample(end, i, pids)
        lost = {int(EventKind.COW): 3} if i % 5 == 0 else {}
        yield Tick(start, end, events, sample, lost, idents, prev)
        prev = sample
