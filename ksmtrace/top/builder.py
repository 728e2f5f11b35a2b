"""Folds Ticks through the shared Accumulator into :class:`TopSnapshot` objects (pure, no I/O).

Rates are averages over a sliding window of the last interval reports, so every figure of
the terminal UI comes from the same IntervalReports as ``ksmtrace trace`` and the exporter.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ksmtrace.aggregate import (
    Accumulator,
    IntervalReport,
    ProcessInterval,
    ProcessTotals,
    efficiency,
)
from ksmtrace.events import EventBatch, HostSample, ProcessIdentity, Tick
from ksmtrace.kernel.sysfs import KNOBS
from ksmtrace.top.departures import DepartureTracker
from ksmtrace.top.model import Frame, HostFigures, KsmStatView, Row, RowTotals, TopSnapshot

#: Points kept for the plots of the detail pane.
HISTORY_POINTS = 120
#: Events folded at once; bigger ticks are folded in slices (see :func:`split_tick`).
SLICE_EVENTS = 16384


def split_tick(tick: Tick, max_events: int) -> list[Tick]:
    """Cut a tick into consecutive ticks of at most ``max_events`` events each.

    The slices share the tick's closing sample; the first keeps its previous sample and its
    lost counts, the others start from the closing sample. Folded one after another into an
    Accumulator they give the same totals, ledger and ksmd CPU as the whole tick: every
    counter delta lands in the first slice, every event in exactly one.
    """
    n = len(tick.events)
    if n <= max_events:
        return [tick]
    k = -(-n // max_events)
    span = tick.end_ns - tick.start_ns
    bounds = [tick.start_ns + span * i // k for i in range(k + 1)]
    records = tick.events.records
    return [
        dataclasses.replace(
            tick,
            start_ns=bounds[i],
            end_ns=bounds[i + 1],
            events=EventBatch(records[i * max_events : (i + 1) * max_events]),
            lost=tick.lost if i == 0 else {},
            previous=tick.previous if i == 0 else tick.sample,
        )
        for i in range(k)
    ]


@dataclass(slots=True)
class _Sums:
    """One process's event counts summed over the window."""

    merges: int = 0
    cows: int = 0
    unmerged: int = 0
    scanned: int = 0
    scan_cpu_ns: int = 0

    def add(self, r: ProcessInterval) -> None:
        self.merges += r.merges
        self.cows += r.cows
        self.unmerged += r.unmerged
        self.scanned += r.scanned
        self.scan_cpu_ns += r.scan_cpu_ns


def _window_sums(reports: Iterable[IntervalReport]) -> dict[int, _Sums]:
    sums: dict[int, _Sums] = {}
    for rep in reports:
        for r in rep.processes:
            sums.setdefault(r.pid, _Sums()).add(r)
    return sums


def _totals_view(t: ProcessTotals | None) -> RowTotals:
    if t is None:
        return RowTotals()
    return RowTotals(
        merges=t.merges,
        cows=t.cows,
        unmerged=t.unmerged_total,
        failures=sum(t.merge_failures.values()),
        scanned=t.scanned,
        scan_cpu_s=t.scan_cpu_ns / 1e9,
    )


class SnapshotBuilder:
    """Accumulates Ticks and builds the snapshot of the latest one.

    Args:
        window_s: seconds the rates are averaged over (at least the last interval).
        origin_ns: the trace time origin (CLOCK_MONOTONIC ns); the first tick's start if None.
    """

    def __init__(self, window_s: float = 5.0, origin_ns: int | None = None) -> None:
        self.window_s = window_s
        self.origin_ns = origin_ns
        self.acc = Accumulator()
        self.window: deque[list[IntervalReport]] = deque()
        self.history: deque[Frame] = deque(maxlen=HISTORY_POINTS)
        self.departures = DepartureTracker()
        self._last_scan: tuple[float | None, float | None] = (None, None)

    def t_s(self, ns: int) -> float:
        """Trace seconds of a CLOCK_MONOTONIC time."""
        return (ns - (self.origin_ns or 0)) / 1e9

    def add(self, tick: Tick, pause: Callable[[], object] | None = None) -> None:
        """Fold one tick, in slices of :data:`SLICE_EVENTS` events.

        Args:
            tick: the tick.
            pause: called between slices, so that a thread folding 100,000 events lets
                others (the UI) run in between.
        """
        if self.origin_ns is None:
            self.origin_ns = tick.start_ns
        reports = []
        for i, part in enumerate(split_tick(tick, SLICE_EVENTS)):
            if i and pause is not None:
                pause()
            rep = self.acc.add(part)
            reports.append(rep)
            if rep.full_scan_s is not None:
                self._last_scan = (rep.full_scan_s, rep.full_scan_cpu_s)
        self.window.append(reports)
        while len(self.window) > 1 and self._span(1) >= self.window_s - 1e-6:
            self.window.popleft()
        self.departures.add(tick, self.acc.identities, self.t_s(tick.end_ns))
        self.history.append(self._frame(tick, reports))

    @property
    def reports(self) -> list[IntervalReport]:
        """The interval reports of the ticks in the window, oldest first."""
        return [r for reports in self.window for r in reports]

    def _span(self, skip: int = 0) -> float:
        """Seconds covered by the window's ticks, leaving out the ``skip`` oldest."""
        return sum(r.seconds for i, reps in enumerate(self.window) if i >= skip for r in reps)

    def _frame(self, tick: Tick, reports: list[IntervalReport]) -> Frame:
        seconds = max(1e-9, (tick.end_ns - tick.start_ns) / 1e9)
        cows: dict[int, int] = {}
        for rep in reports:
            for r in rep.processes:
                cows[r.pid] = cows.get(r.pid, 0) + r.cows
        per_pid = {
            r.pid: (r.saved_bytes, cows.get(r.pid, 0) / seconds)
            for r in reports[-1].processes
            if r.saved_bytes or cows.get(r.pid)
        }
        delta = sum(rep.ledger.cow_ksm_delta for rep in reports) if reports[0].previous else 0
        return Frame(self.t_s(tick.end_ns), tick.sample.saved_bytes, max(0.0, delta / seconds),
                     per_pid)  # fmt: skip

    def snapshot(self, seq: int = 0) -> TopSnapshot | None:
        """The snapshot after the last tick added (None before the first)."""
        if not self.window:
            return None
        last = self.window[-1][-1]
        window = self._span()
        return TopSnapshot(
            seq=seq,
            t_s=self.t_s(last.end_ns),
            window_s=window,
            live=False,
            duration_s=None,
            paused=False,
            speed=1.0,
            at_end=False,
            host=self._host(window, self.reports),
            rows=self._rows(window, self.reports),
            history=tuple(self.history),
            departures=self.departures.recent(),
        )

    def _host(self, window: float, reports: list[IntervalReport]) -> HostFigures:
        s = reports[-1].sample
        first_prev = reports[0].previous
        ksmd_cpu = sum(r.ksmd_cpu_ns for r in reports) if s.ksmd_cpu_ns >= 0 else None
        if first_prev is not None:
            scanned = s.counter("pages_scanned") - first_prev.counter("pages_scanned")
        else:
            scanned = sum(p.scanned for r in reports for p in r.processes)
        merges = sum(p.merges for r in reports for p in r.processes)
        cows = sum(r.ledger.cow_ksm_delta for r in reports if r.previous)
        return HostFigures(
            knobs={k: s.ksm[k] for k in KNOBS if k in s.ksm},
            saved_bytes=s.saved_bytes,
            zero_page_bytes=s.counter("ksm_zero_pages") * s.page_size,
            general_profit=s.counter("general_profit"),
            pages_shared=s.counter("pages_shared"),
            pages_sharing=s.counter("pages_sharing"),
            pages_unshared=s.counter("pages_unshared"),
            pages_volatile=s.counter("pages_volatile"),
            ksmd_cpu_pct=None if ksmd_cpu is None else ksmd_cpu / 1e7 / window,
            scan_pages_per_s=max(0, scanned) / window,
            merges_per_s=merges / window,
            cow_per_s=max(0, cows) / window,
            full_scans=s.counter("full_scans"),
            last_scan_s=self._last_scan[0],
            last_scan_cpu_s=self._last_scan[1],
            lost_window=sum(r.lost for r in reports),
            lost_total=self.acc.lost_total,
            page_size=s.page_size,
            wall_ns=s.wall_ns,
        )

    def _rows(self, window: float, reports: list[IntervalReport]) -> tuple[Row, ...]:
        last = reports[-1]
        sums = _window_sums(reports)
        ksmd_ns = sum(r.ksmd_cpu_ns for r in reports)
        latest = {r.pid: r for r in last.processes}
        rows = [
            self._row(pid, latest.get(pid), sums[pid], window, ksmd_ns, last.sample)
            for pid in sorted(set(latest) | set(sums))
        ]
        rows.sort(key=lambda r: (-r.saved_bytes, -r.merges_per_s, r.pids[0]))
        return tuple(rows)

    def _row(
        self,
        pid: int,
        now: ProcessInterval | None,
        w: _Sums,
        window: float,
        ksmd_ns: int,
        sample: HostSample,
    ) -> Row:
        ident = self.acc.identities.get(pid) or ProcessIdentity(pid)
        st = sample.processes.get(pid)
        totals = self.acc.totals.get(pid)
        hist = totals.lifetimes if totals else None
        saved = now.saved_bytes if now else 0
        cpu_per_s = w.scan_cpu_ns / 1e9 / window
        return Row(
            key=str(pid),
            label=f"{ident.vm or ident.comm}[{pid}]",
            pids=(pid,),
            alive=now.alive if now else st is not None,
            saved_bytes=saved,
            merging_pages=st.merging_pages if st else 0,
            merges_per_s=w.merges / window,
            cows_per_s=w.cows / window,
            unmerged_per_s=w.unmerged / window,
            scanned_per_s=w.scanned / window,
            scan_cpu_per_s=cpu_per_s,
            churn=w.cows / w.merges if w.merges else None,
            lifetime_p50_s=hist.quantile(0.5) if hist else None,
            scan_cpu_share=w.scan_cpu_ns / ksmd_ns if ksmd_ns > 0 else None,
            efficiency=efficiency(saved, cpu_per_s),
            ksm_stat=KsmStatView(
                st.rmap_items, st.zero_pages, st.merging_pages, st.process_profit,
                st.mergeable, st.merge_any,
            ) if st else KsmStatView(),
            lifetimes=tuple(hist.counts) if hist else (),
            lifetimes_unknown=hist.unknown if hist else 0,
            totals=_totals_view(totals),
            identities=(ident,),
        )  # fmt: skip
