"""Per-process accounting of KSM activity from Ticks: merges, copy-on-write, unmerges, scan cost.

Pure functions of the event model (numpy only), shared by every view: the live table, the
JSON stream, the demo summary and the exporter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ksmtrace.events import (
    LIFETIME_UNKNOWN,
    EventArray,
    EventBatch,
    EventFlag,
    EventKind,
    HostSample,
    ProcessIdentity,
    Tick,
    UnmergeKind,
)
from ksmtrace.sharing import SharingTracker

#: Full scans whose times are kept for :meth:`Accumulator.full_scan_times` readers.
MAX_SCAN_HISTORY = 10_000

#: Upper bounds (seconds) of the merge-lifetime histogram buckets, a 1-2-5 series.
LIFETIME_BUCKETS_S: tuple[float, ...] = tuple(
    m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)
) + (float("inf"),)


@dataclass(slots=True)
class LifetimeHistogram:
    """Merge-to-first-write lifetimes, counted in :data:`LIFETIME_BUCKETS_S` buckets.

    ``min_s`` and ``max_s`` are the shortest and longest lifetime counted (None when they
    are not known, as for a histogram summed from the counts of others).
    """

    counts: list[int] = field(default_factory=lambda: [0] * len(LIFETIME_BUCKETS_S))
    total_s: float = 0.0
    unknown: int = 0
    min_s: float | None = None
    max_s: float | None = None

    def add(self, lifetimes_ns: EventArray) -> None:
        """Count lifetimes (ns); LIFETIME_UNKNOWN values are counted apart."""
        known = lifetimes_ns[lifetimes_ns != LIFETIME_UNKNOWN].astype(np.float64) / 1e9
        self.unknown += int(len(lifetimes_ns) - len(known))
        if len(known):
            idx = np.searchsorted(np.array(LIFETIME_BUCKETS_S), known, side="left")
            for i, n in zip(*np.unique(idx, return_counts=True), strict=True):
                self.counts[int(i)] += int(n)
            self.total_s += float(known.sum())
            lo, hi = float(known.min()), float(known.max())
            self.min_s = lo if self.min_s is None else min(self.min_s, lo)
            self.max_s = hi if self.max_s is None else max(self.max_s, hi)

    @property
    def count(self) -> int:
        """Lifetimes with a known merge time."""
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Approximate quantile (seconds), interpolated inside the bucket that holds it.

        Lifetimes are taken as spread evenly over their bucket on a log scale (the buckets
        grow geometrically), narrowed to the shortest and longest lifetime seen, so a median
        is not rounded up to a bucket bound and no quantile exceeds the longest lifetime.
        """
        n = self.count
        if n == 0:
            return None
        rank = q * n
        seen = 0
        lower = 0.0
        for i, (bound, c) in enumerate(zip(LIFETIME_BUCKETS_S, self.counts, strict=True)):
            if c and seen + c >= rank:
                upper = bound if bound != float("inf") else LIFETIME_BUCKETS_S[i - 1]
                if self.min_s is not None and self.max_s is not None:
                    lower = max(lower, min(self.min_s, upper))
                    upper = max(lower, min(upper, self.max_s))
                frac = max(0.0, rank - seen) / c
                if lower > 0:  # the buckets grow geometrically: interpolate on a log scale
                    return float(lower * (upper / lower) ** frac)
                return upper * frac
            seen += c
            lower = bound
        return LIFETIME_BUCKETS_S[-2]


@dataclass(slots=True)
class ProcessTotals:
    """Everything ksmtrace counted for one process since tracing began.

    Attributes:
        pid: the process (thread group) id.
        merges: pages of this process merged by ksmd (each is +1 in its ksm_merging_pages).
        merge_failures: failed merge attempts, by kernel error number.
        zero_merges: pages replaced by the zero page (use_zero_pages).
        cows: KSM pages copied by this process's own write faults (in cow_ksm).
        zero_cows: KSM zero pages replaced by write faults.
        unmerged: pages unshared without a write fault, by :class:`UnmergeKind`.
        scanned: pages ksmd handed to cmp_and_merge_page for this process.
        scan_cpu_ns: ksmd CPU time spent on them.
        lifetimes: merge-to-first-write lifetime histogram.
        registrations: ksm_enter events (FORK ones included).
        exits: ksm_exit events.
        first_ns / last_ns: time of the first and last event seen.
    """

    pid: int
    merges: int = 0
    merge_failures: dict[int, int] = field(default_factory=dict)
    zero_merges: int = 0
    cows: int = 0
    zero_cows: int = 0
    unmerged: dict[int, int] = field(default_factory=dict)
    scanned: int = 0
    scan_cpu_ns: int = 0
    lifetimes: LifetimeHistogram = field(default_factory=LifetimeHistogram)
    registrations: int = 0
    exits: int = 0
    first_ns: int = 0
    last_ns: int = 0

    @property
    def unmerged_total(self) -> int:
        """KSM pages unshared without a write fault (all kinds)."""
        return sum(self.unmerged.values())

    @property
    def net_merged(self) -> int:
        """Merges minus unmerges: what ksm_merging_pages should show once ksmd has passed.

        A ksmd undo takes back the first half of a pair whose second half failed; that half
        was never reported as a merge, so it is not subtracted (it still moved cow_ksm).
        """
        undone = self.unmerged.get(UnmergeKind.KSMD_UNDO, 0)
        return self.merges - self.cows - (self.unmerged_total - undone)


@dataclass(frozen=True, slots=True)
class ProcessInterval:
    """One process's activity in one interval, with the ksm_stat read at its end."""

    pid: int
    identity: ProcessIdentity
    merges: int
    cows: int
    zero_merges: int
    zero_cows: int
    unmerged: int
    failures: int
    scanned: int
    scan_cpu_ns: int
    lifetime_p50_s: float | None
    merging_pages: int
    zero_pages: int
    profit_bytes: int
    saved_bytes: int
    alive: bool
    rmap_items: int = 0
    scan_estimated: bool = False

    @property
    def churn(self) -> float | None:
        """Copy-on-write unmerges per merge in the interval (None without merges)."""
        return self.cows / self.merges if self.merges else None


@dataclass(frozen=True, slots=True)
class Ledger:
    """Where the interval's ``cow_ksm`` increments came from.

    ``cow_ksm_delta == write_cows + explicit + ksmd_undo + unattributed``; unattributed is
    what no probe here saw (for example KVM guest writes handled inside the kernel, or
    run=2), and may be negative when a KSM page was unshared twice in one interval.
    """

    cow_ksm_delta: int
    write_cows: int
    explicit: int
    ksmd_undo: int

    @property
    def unattributed(self) -> int:
        """cow_ksm increments no probe accounted for."""
        return self.cow_ksm_delta - self.write_cows - self.explicit - self.ksmd_undo


@dataclass(frozen=True, slots=True)
class IntervalReport:
    """What one Tick changed: per-process rows, the COW ledger and global counters."""

    start_ns: int
    end_ns: int
    sample: HostSample
    previous: HostSample | None
    processes: tuple[ProcessInterval, ...]
    ledger: Ledger
    full_scans: int
    full_scan_s: float | None
    full_scan_cpu_s: float | None
    ksmd_cpu_ns: int
    lost: int
    scan_overhead_ns: int = 0
    full_scan_rmap_items: int | None = None

    @property
    def seconds(self) -> float:
        """Interval length in seconds."""
        return max(1e-9, (self.end_ns - self.start_ns) / 1e9)


def _count_by_pid(
    records: EventArray, weights: npt.NDArray[np.float64] | None = None
) -> dict[int, int]:
    if not len(records):
        return {}
    pids, inv = np.unique(records["pid"], return_inverse=True)
    sums = np.bincount(inv, weights=weights, minlength=len(pids))
    return {int(p): int(s) for p, s in zip(pids, sums, strict=True)}


def efficiency(saved_bytes: int, scan_cpu_per_s: float) -> float | None:
    """Saved MiB per ksmd CPU-second spent each second (None when ksmd spent nothing).

    A ratio of two levels, saved memory over ksmd's CPU rate, so it does not grow or shrink
    with how long the trace ran.
    """
    return saved_bytes / 2**20 / scan_cpu_per_s if scan_cpu_per_s > 0 else None


def share_of_savings(sample: HostSample, merging_pages: int, zero_pages: int) -> int:
    """Bytes of the kernel's saving that belong to a process with these ksm_stat values.

    The kernel saves ``pages_sharing`` pages: every mapping of a KSM page beyond the first.
    A process's share is its merging pages times ``pages_sharing / (pages_shared +
    pages_sharing)``, plus its KSM zero pages; summed over processes this is the global saving.
    """
    shared = sample.counter("pages_shared")
    sharing = sample.counter("pages_sharing")
    ratio = sharing / (shared + sharing) if shared + sharing else 0.0
    return int(round((merging_pages * ratio + zero_pages) * sample.page_size))


class Accumulator:
    """Folds Ticks into per-process totals and produces one IntervalReport per Tick."""

    def __init__(self, pids: Iterable[int] | None = None, track_sharing: bool = False) -> None:
        """Create an empty accumulator.

        Args:
            pids: only account these processes (None: every process).
            track_sharing: also follow which processes map each KSM page (``sharing``,
                for the cross-tenant report; it sees every process, whatever ``pids``).
        """
        self.sharing = SharingTracker() if track_sharing else None
        self.pid_filter = set(pids) if pids is not None else None
        self.totals: dict[int, ProcessTotals] = {}
        self.identities: dict[int, ProcessIdentity] = {}
        self.ledger_total = Ledger(0, 0, 0, 0)
        self.full_scans_total = 0
        self.lost_total = 0
        self.scan_overhead_total_ns = 0
        self.first: HostSample | None = None
        self.last: HostSample | None = None
        self._scan_start: tuple[int, int] | None = None
        self._scan_durations: list[tuple[float, float]] = []
        self._scan_durations_dropped = 0
        #: rmap_items ksmd reported at the end of the last traced full scan.
        self.last_scan_rmap_items: int | None = None

    def _totals(self, pid: int) -> ProcessTotals:
        t = self.totals.get(pid)
        if t is None:
            t = self.totals[pid] = ProcessTotals(pid)
        return t

    def full_scan_times(self, since: int = 0) -> list[tuple[float, float]]:
        """(wall seconds, ksmd CPU seconds) of the full scans traced from start to stop.

        Args:
            since: skip this many of the oldest (a caller that remembers how many it saw).
        """
        return self._scan_durations[max(0, since - self._scan_durations_dropped) :]

    def _remember_scan(self, times: tuple[float, float]) -> None:
        # Bounded: a long-running exporter sees a full scan every few seconds for months.
        self._scan_durations.append(times)
        if len(self._scan_durations) > 2 * MAX_SCAN_HISTORY:
            drop = len(self._scan_durations) - MAX_SCAN_HISTORY
            del self._scan_durations[:drop]
            self._scan_durations_dropped += drop

    def add_events(self, batch: EventBatch) -> None:
        """Fold events into the per-process totals without an interval report."""
        rec = batch.records
        if self.sharing is not None:
            self.sharing.add(batch)
        if self.pid_filter is not None:
            rec = rec[np.isin(rec["pid"], np.fromiter(self.pid_filter, dtype=np.uint32))]
        self._fold({k: rec[rec["kind"] == int(k)] for k in EventKind}, rec)

    def add(self, tick: Tick, per_process: bool = True) -> IntervalReport:
        """Account one Tick and report what happened in it.

        Args:
            tick: the interval to account.
            per_process: build the report's per-process rows; False leaves ``processes``
                empty, for consumers that read only the totals (the exporter).
        """
        if self.last is None:
            self.last = tick.previous
        rec = tick.events.records
        ledger = self._ledger(tick, rec)
        scans, scan_s, scan_cpu = self._full_scans(rec)
        scan = rec[(rec["kind"] == EventKind.SCAN) & (rec["mm"] == 0)]
        overhead = int(scan["value2"].sum())
        self.scan_overhead_total_ns += overhead
        self.identities.update(tick.identities)
        if self.sharing is not None:
            self.sharing.add(tick.events)
        if self.pid_filter is not None:
            rec = rec[np.isin(rec["pid"], np.fromiter(self.pid_filter, dtype=np.uint32))]
        per_kind = {k: rec[rec["kind"] == int(k)] for k in EventKind}
        self._fold(per_kind, rec)
        rows = self._rows(tick, per_kind) if per_process else ()
        prev, self.last = self.last, tick.sample
        if self.first is None:
            self.first = prev or tick.sample
        lost = sum(tick.lost.values())
        self.lost_total += lost
        cpu = tick.sample.ksmd_cpu_ns - prev.ksmd_cpu_ns if prev and prev.ksmd_cpu_ns >= 0 else 0
        return IntervalReport(
            tick.start_ns, tick.end_ns, tick.sample, prev, rows, ledger, scans, scan_s,
            scan_cpu, max(0, cpu), lost, overhead, self.last_scan_rmap_items,
        )  # fmt: skip

    def _ledger(self, tick: Tick, rec: EventArray) -> Ledger:
        prev = self.last
        delta = 0
        if prev is not None:
            delta = tick.sample.vmstat.get("cow_ksm", 0) - prev.vmstat.get("cow_ksm", 0)
        cows = int(np.count_nonzero(rec["kind"] == EventKind.COW))
        unm = rec[rec["kind"] == EventKind.UNMERGE]
        undo = int(unm["value"][unm["flags"] == UnmergeKind.KSMD_UNDO].sum())
        explicit = int(unm["value"][unm["flags"] != UnmergeKind.KSMD_UNDO].sum())
        led = Ledger(delta, cows, explicit, undo)
        t = self.ledger_total
        self.ledger_total = Ledger(
            t.cow_ksm_delta + delta,
            t.write_cows + cows,
            t.explicit + explicit,
            t.ksmd_undo + undo,
        )
        return led

    def _full_scans(self, rec: EventArray) -> tuple[int, float | None, float | None]:
        marks = rec[(rec["kind"] == EventKind.SCAN_START) | (rec["kind"] == EventKind.SCAN_STOP)]
        done = 0
        last: tuple[float, float] | None = None
        for r in marks:
            if int(r["kind"]) == EventKind.SCAN_START:
                self._scan_start = (int(r["ts_ns"]), int(r["addr"]))
            elif self._scan_start is not None:
                self.last_scan_rmap_items = int(r["value2"])
                wall = (int(r["ts_ns"]) - self._scan_start[0]) / 1e9
                cpu = (int(r["addr"]) - self._scan_start[1]) / 1e9
                last = (wall, cpu)
                self._remember_scan(last)
                self._scan_start = None
                done += 1
            else:
                done += 1
        self.full_scans_total += done
        return done, (last[0] if last else None), (last[1] if last else None)

    def _fold(self, per_kind: dict[EventKind, EventArray], rec: EventArray) -> None:
        def bump(kind: EventKind, attr: str, weight: str | None = None) -> None:
            r = per_kind[kind]
            w = r[weight].astype(np.float64) if weight else None
            for pid, n in _count_by_pid(r, w).items():
                t = self._totals(pid)
                setattr(t, attr, getattr(t, attr) + n)

        bump(EventKind.MERGE, "merges")
        bump(EventKind.ZERO_MERGE, "zero_merges")
        bump(EventKind.COW, "cows")
        bump(EventKind.ZERO_COW, "zero_cows")
        bump(EventKind.SCAN, "scanned", "value")
        bump(EventKind.SCAN, "scan_cpu_ns", "value2")
        bump(EventKind.ENTER, "registrations")
        bump(EventKind.EXIT, "exits")
        for r in per_kind[EventKind.MERGE_FAILED]:
            t = self._totals(int(r["pid"]))
            t.merge_failures[int(r["err"])] = t.merge_failures.get(int(r["err"]), 0) + 1
        for r in per_kind[EventKind.UNMERGE]:
            t = self._totals(int(r["pid"]))
            kind = int(r["flags"])
            t.unmerged[kind] = t.unmerged.get(kind, 0) + int(r["value"])
        # Grouped by pid with one stable sort (not a mask per pid): linear in the events.
        cows = per_kind[EventKind.COW]
        if len(cows):
            order = np.argsort(cows["pid"], kind="stable")
            pids, starts = np.unique(cows["pid"][order], return_index=True)
            for pid, part in zip(pids, np.split(cows["value"][order], starts[1:]), strict=True):
                self._totals(int(pid)).lifetimes.add(part)
        if len(rec):
            order = np.argsort(rec["pid"], kind="stable")
            pids, starts = np.unique(rec["pid"][order], return_index=True)
            ts = rec["ts_ns"][order]
            firsts = np.minimum.reduceat(ts, starts)
            lasts = np.maximum.reduceat(ts, starts)
            for pid, first, last in zip(pids, firsts, lasts, strict=True):
                t = self._totals(int(pid))
                t.first_ns = t.first_ns or int(first)
                t.last_ns = max(t.last_ns, int(last))
        self.totals.pop(0, None)

    def _rows(
        self, tick: Tick, per_kind: dict[EventKind, EventArray]
    ) -> tuple[ProcessInterval, ...]:
        sample = tick.sample
        counts = {
            k: _count_by_pid(per_kind[k])
            for k in (
                EventKind.MERGE,
                EventKind.COW,
                EventKind.ZERO_MERGE,
                EventKind.ZERO_COW,
                EventKind.MERGE_FAILED,
            )
        }
        unm = per_kind[EventKind.UNMERGE]
        unmerged = _count_by_pid(unm, unm["value"].astype(np.float64))
        scan = per_kind[EventKind.SCAN]
        scanned = _count_by_pid(scan, scan["value"].astype(np.float64))
        cpu = _count_by_pid(scan, scan["value2"].astype(np.float64))
        estimated = set(scan["pid"][(scan["flags"] & int(EventFlag.ESTIMATED)) != 0].tolist())
        pids = set(sample.processes) | set().union(*counts.values(), unmerged, scanned)
        if self.pid_filter is not None:
            pids &= self.pid_filter
        pids.discard(0)
        cows = per_kind[EventKind.COW]
        known = cows[cows["value"] != LIFETIME_UNKNOWN]
        known = known[np.argsort(known["pid"], kind="stable")]
        bounds = np.searchsorted(known["pid"], np.array(sorted(pids), dtype=np.uint32))
        ends = np.searchsorted(known["pid"], np.array(sorted(pids), dtype=np.uint32), "right")
        rows = []
        for pid, lo, hi in zip(sorted(pids), bounds, ends, strict=True):
            st = sample.processes.get(pid)
            life = known["value"][lo:hi]
            merging = st.merging_pages if st else 0
            zero = st.zero_pages if st else 0
            rows.append(
                ProcessInterval(
                    pid=pid,
                    identity=self.identities.get(pid) or ProcessIdentity(pid),
                    merges=counts[EventKind.MERGE].get(pid, 0),
                    cows=counts[EventKind.COW].get(pid, 0),
                    zero_merges=counts[EventKind.ZERO_MERGE].get(pid, 0),
                    zero_cows=counts[EventKind.ZERO_COW].get(pid, 0),
                    unmerged=unmerged.get(pid, 0),
                    failures=counts[EventKind.MERGE_FAILED].get(pid, 0),
                    scanned=scanned.get(pid, 0),
                    scan_cpu_ns=cpu.get(pid, 0),
                    lifetime_p50_s=float(np.median(life)) / 1e9 if len(life) else None,
                    merging_pages=merging,
                    zero_pages=zero,
                    profit_bytes=st.process_profit if st else 0,
                    saved_bytes=share_of_savings(sample, merging, zero),
                    alive=st is not None,
                    rmap_items=st.rmap_items if st else 0,
                    scan_estimated=pid in estimated,
                )
            )
        rows.sort(key=lambda r: (-r.saved_bytes, -r.merges, r.pid))
        return tuple(rows)


def has_flag(records: EventArray, flag: EventFlag) -> npt.NDArray[np.bool_]:
    """Boolean mask of records whose ``flags`` include ``flag``."""
    mask: npt.NDArray[np.bool_] = (records["flags"] & int(flag)) != 0
    return mask
