"""Folding Ticks into exporter snapshots with a bounded number of per-process series.

Only the top N processes by savings get their own series; every other process is summed
into one ``other`` series. Processes move between the two as their savings change, and a
Prometheus counter must never go down, so the exporter does not move a process's lifetime
totals from one series to another. Instead each interval's *increase* of a process is added
to the series the process belongs to in that interval:

- the ``other`` series only ever receives increases, so it is monotonic;
- a process's own series counts what happened while it was in the top N; while it is out,
  its series is not exposed and keeps its value, and when it comes back it continues from
  there, so it is monotonic too;
- every increase lands in exactly one exposed series, so ``sum(rate(...))`` over all series
  is the host-wide rate. The instantaneous sum of the counters is not a lifetime total (a
  process that left the top N took its count with it); use rates, or the global counters.

Pure (no prometheus_client): the Prometheus collectors and trace exports both render the
Snapshots built here.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from ksmtrace.aggregate import LIFETIME_BUCKETS_S, Accumulator, ProcessTotals, share_of_savings
from ksmtrace.errors import UsageError
from ksmtrace.events import EventKind, HostSample, ProcessIdentity, Tick
from ksmtrace.exporter.snapshot import (
    OTHER_LABELS,
    UNMERGE_KINDS,
    FullScans,
    ProbeReport,
    SeriesValues,
    Snapshot,
)
from ksmtrace.metrics_names import process_label_values

Labels = tuple[str, str, str, str]

#: Default number of processes with their own series.
DEFAULT_TOP_N = 20


@dataclass(slots=True)
class _Counts:
    """Counter values of one process (its totals) or of one series (what it was given)."""

    merges: int = 0
    cows: int = 0
    unmerged: list[int] = field(default_factory=lambda: [0] * len(UNMERGE_KINDS))
    scanned: int = 0
    scan_cpu_ns: int = 0
    lifetime_counts: list[int] = field(default_factory=lambda: [0] * len(LIFETIME_BUCKETS_S))
    lifetime_sum_s: float = 0.0

    @classmethod
    def of(cls, t: ProcessTotals) -> _Counts:
        """The counters of a process's totals."""
        return cls(
            t.merges,
            t.cows,
            [t.unmerged.get(int(k), 0) for k in UNMERGE_KINDS],
            t.scanned,
            t.scan_cpu_ns,
            list(t.lifetimes.counts),
            t.lifetimes.total_s,
        )

    def minus(self, old: _Counts) -> _Counts:
        """The increase from ``old`` to this."""
        return _Counts(
            self.merges - old.merges,
            self.cows - old.cows,
            [a - b for a, b in zip(self.unmerged, old.unmerged, strict=True)],
            self.scanned - old.scanned,
            self.scan_cpu_ns - old.scan_cpu_ns,
            [a - b for a, b in zip(self.lifetime_counts, old.lifetime_counts, strict=True)],
            self.lifetime_sum_s - old.lifetime_sum_s,
        )

    def add(self, d: _Counts) -> None:
        """Add an increase."""
        self.merges += d.merges
        self.cows += d.cows
        self.unmerged = [a + b for a, b in zip(self.unmerged, d.unmerged, strict=True)]
        self.scanned += d.scanned
        self.scan_cpu_ns += d.scan_cpu_ns
        self.lifetime_counts = [
            a + b for a, b in zip(self.lifetime_counts, d.lifetime_counts, strict=True)
        ]
        self.lifetime_sum_s += d.lifetime_sum_s

    def values(self, labels: Labels, merging: int, profit: int, saved: int) -> SeriesValues:
        """Freeze into a series with these gauge values."""
        return SeriesValues(
            labels,
            self.merges,
            self.cows,
            tuple(self.unmerged),
            self.scanned,
            self.scan_cpu_ns,
            tuple(self.lifetime_counts),
            self.lifetime_sum_s,
            merging,
            profit,
            saved,
        )


def process_labels(identity: ProcessIdentity) -> Labels:
    """The pid, comm, vm and cgroup label values of a process (see ksmtrace.metrics_names)."""
    return process_label_values(identity)


class ExporterState:
    """Accounts Ticks and builds one :class:`Snapshot` per Tick (owned by the source thread)."""

    def __init__(
        self,
        top_n: int = DEFAULT_TOP_N,
        probe: Callable[[], ProbeReport] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start with nothing accounted.

        Args:
            top_n: processes with their own series; the rest are summed as ``other``.
            probe: returns the source's self-description, asked at every Tick.
            clock: seconds, for the snapshot's age (injectable for golden tests).

        Raises:
            UsageError: ``top_n`` is negative.
        """
        if top_n < 0:
            raise UsageError(f"--top must be 0 or more, not {top_n}")
        self.top_n = top_n
        self.acc = Accumulator()
        self._probe = probe or (lambda: ProbeReport("unknown"))
        self._clock = clock
        self._prev: dict[int, _Counts] = {}
        self._labels: dict[int, Labels] = {}
        self._series: dict[Labels, _Counts] = {OTHER_LABELS: _Counts()}
        self._top: list[int] = []
        self._scans = FullScans()
        self._lost = {int(k): 0 for k in EventKind}
        self._seen = 0
        self._intervals = 0
        self._last: Snapshot | None = None

    def fold(self, tick: Tick) -> Snapshot:
        """Account one Tick and return the snapshot to serve from now on."""
        self.acc.add(tick, per_process=False)
        pids = np.unique(tick.events.records["pid"])
        touched = {int(p) for p in pids if p}
        deltas = {pid: self._delta(pid) for pid in touched}
        self._top = self._rank(tick.sample, touched)
        top = set(self._top)
        for pid in self._top:
            labels = self._label_of(pid)
            old = self._labels.get(pid, labels)
            if old != labels:  # comm changed (exec) or became known: a new series
                self._series.pop(old, None)
            self._labels[pid] = labels
        for pid, d in deltas.items():
            key = self._labels[pid] if pid in top else OTHER_LABELS
            self._series.setdefault(key, _Counts()).add(d)
        self._count_scans()
        for kind, n in tick.lost.items():
            self._lost[int(kind)] = self._lost.get(int(kind), 0) + n
        self._intervals += 1
        self._forget(tick.sample, touched | top)
        self._last = self._snapshot(tick.sample)
        return self._last

    def ended(self) -> Snapshot | None:
        """The last snapshot marked as coming from a source that ended (None: no Tick yet)."""
        if self._last is None:
            return None
        self._last = replace(self._last, source_up=False, published_s=self._clock())
        return self._last

    # -- accounting ----------------------------------------------------------------------

    def _delta(self, pid: int) -> _Counts:
        totals = self.acc.totals.get(pid)
        now = _Counts.of(totals) if totals is not None else _Counts()
        old = self._prev.get(pid)
        if old is None:
            self._seen += 1
            old = _Counts()
        self._prev[pid] = now
        return now.minus(old)

    def _label_of(self, pid: int) -> Labels:
        return process_labels(self.acc.identities.get(pid) or ProcessIdentity(pid))

    def _rank(self, sample: HostSample, touched: set[int]) -> list[int]:
        """The top-N pids by savings; on ties the current members stay (fewer series churn).

        A member that has exited (no KSM state and no events now) is no candidate, so its
        series go even when fewer than N processes are left.
        """
        members = set(self._top)
        candidates = set(sample.processes) | touched

        def key(pid: int) -> tuple[int, int, int, int]:
            st = sample.processes.get(pid)
            saved = share_of_savings(sample, st.merging_pages, st.zero_pages) if st else 0
            merging = st.merging_pages if st else 0
            return (-saved, pid not in members, -merging, pid)

        return heapq.nsmallest(self.top_n, candidates, key=key)

    def _count_scans(self) -> None:
        new = self.acc.full_scan_times(self._scans.count)
        if new:
            s = self._scans
            self._scans = FullScans(
                s.count + len(new),
                s.wall_s + sum(w for w, _ in new),
                s.cpu_s + sum(c for _, c in new),
                new[-1][0],
                new[-1][1],
            )

    def _forget(self, sample: HostSample, keep: set[int]) -> None:
        """Drop processes that exited (no KSM state, no events, not exposed)."""
        exposed = {self._labels[pid] for pid in self._top}
        known: Iterable[int] = set(self._prev) | set(self.acc.totals) | set(self.acc.identities)
        for pid in known:
            if pid in keep or pid in sample.processes:
                continue
            self._prev.pop(pid, None)
            self.acc.totals.pop(pid, None)
            self.acc.identities.pop(pid, None)
            labels = self._labels.pop(pid, None)
            if labels is not None and labels not in exposed:
                self._series.pop(labels, None)

    # -- snapshot ------------------------------------------------------------------------

    def _snapshot(self, sample: HostSample) -> Snapshot:
        top = set(self._top)
        series = []
        for pid in self._top:
            st = sample.processes.get(pid)
            labels = self._labels[pid]
            counts = self._series.setdefault(labels, _Counts())
            if st is None:
                series.append(counts.values(labels, 0, 0, 0))
                continue
            saved = share_of_savings(sample, st.merging_pages, st.zero_pages)
            series.append(counts.values(labels, st.merging_pages, st.process_profit, saved))
        rest = [st for pid, st in sample.processes.items() if pid not in top]
        other = self._series[OTHER_LABELS].values(
            OTHER_LABELS,
            sum(st.merging_pages for st in rest),
            sum(st.process_profit for st in rest),
            sum(share_of_savings(sample, st.merging_pages, st.zero_pages) for st in rest),
        )
        return Snapshot(
            sample=sample,
            series=(*series, other),
            full_scans=self._scans,
            scan_overhead_ns=self.acc.scan_overhead_total_ns,
            lost=tuple(sorted(self._lost.items())),
            probe=self._probe(),
            intervals=self._intervals,
            processes_tracked=len(set(self.acc.totals) | set(sample.processes)),
            processes_seen=self._seen,
            top_n=self.top_n,
            published_s=self._clock(),
        )
