"""What a report says about a trace: totals, time series and provenance, from one replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ksmtrace.aggregate import Accumulator
from ksmtrace.events import ADVISOR_MODES, KNOB_NAMES, EventKind, HostSample, ProcessIdentity
from ksmtrace.replay import ReplaySource
from ksmtrace.tracefile.schema import TraceHeader


@dataclass(slots=True)
class Series:
    """Per-interval values, aligned with ``t_s`` (seconds from the start of the trace)."""

    t_s: list[float] = field(default_factory=list)
    saved_bytes: list[int] = field(default_factory=list)
    ksmd_cpu_pct: list[float] = field(default_factory=list)
    merges_per_s: list[float] = field(default_factory=list)
    cows_per_s: list[float] = field(default_factory=list)
    scanned_per_s: list[float] = field(default_factory=list)
    #: Each process's share of the saving at each interval's end (0 when absent).
    process_saved: dict[int, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KnobChange:
    """A KNOB event: a knob changed at ``t_s`` seconds into the trace."""

    t_s: float
    name: str
    old: int | str
    new: int | str


@dataclass(frozen=True, slots=True)
class AdvisorStep:
    """An ADVISOR event: the scan-time advisor set pages_to_scan at ``t_s``."""

    t_s: float
    pages_to_scan: int
    scan_time_s: int
    cpu_percent: int


@dataclass(slots=True)
class TraceSummary:
    """Everything a report shows, computed by replaying the trace once as fast as possible."""

    path: Path
    header: TraceHeader
    acc: Accumulator
    series: Series
    intervals: int
    duration_s: float
    first: HostSample | None
    last: HostSample | None
    knob_changes: list[KnobChange]
    advisor: list[AdvisorStep]
    lost: dict[int, int]
    warnings: list[str]
    unreadable_events: int
    lost_unknown: int = 0

    @property
    def peak_saved(self) -> tuple[float, int]:
        """(seconds into the trace, bytes) of the largest saving seen."""
        s = self.series
        if not s.saved_bytes:
            return 0.0, 0
        i = int(np.argmax(s.saved_bytes))
        return s.t_s[i], s.saved_bytes[i]

    def identity(self, pid: int) -> ProcessIdentity:
        """Who ``pid`` was (its last identity in the trace)."""
        return self.acc.identities.get(pid) or ProcessIdentity(pid)


def _knob_value(name: str, code: int) -> int | str:
    if name == "advisor_mode":
        return ADVISOR_MODES[code] if code < len(ADVISOR_MODES) else code
    return code


def summarize(
    path: Path | None, start_s: float | None = None, end_s: float | None = None
) -> TraceSummary:
    """Replay a trace (None: the bundled sample) and gather what the report shows.

    Raises:
        TraceFormatError: the file is not a readable trace.
        UsageError: the --from/--to window holds no recorded interval.
    """
    with ReplaySource(path, speed=0, start_s=start_s, end_s=end_s) as src:
        src.check_window()
        acc = Accumulator()
        series = Series()
        knobs: list[KnobChange] = []
        advisor: list[AdvisorStep] = []
        origin = src.trace_start_ns
        first_ns = last_ns = None
        n = 0
        for tick in src.ticks():
            rep = acc.add(tick)
            n += 1
            first_ns = tick.start_ns if first_ns is None else first_ns
            last_ns = tick.end_ns
            secs = rep.seconds
            t = (tick.end_ns - origin) / 1e9
            series.t_s.append(round(t, 3))
            series.saved_bytes.append(tick.sample.saved_bytes)
            series.ksmd_cpu_pct.append(rep.ksmd_cpu_ns / 1e7 / secs)
            series.merges_per_s.append(sum(r.merges for r in rep.processes) / secs)
            series.cows_per_s.append(sum(r.cows for r in rep.processes) / secs)
            series.scanned_per_s.append(sum(r.scanned for r in rep.processes) / secs)
            for row in rep.processes:
                col = series.process_saved.setdefault(row.pid, [0] * (n - 1))
                col.append(row.saved_bytes)
            for col in series.process_saved.values():
                col.extend([0] * (n - len(col)))
            for r in tick.events.of_kind(EventKind.KNOB):
                i = int(r["addr"])
                name = KNOB_NAMES[i] if i < len(KNOB_NAMES) else f"knob{i}"
                knobs.append(
                    KnobChange(
                        round((int(r["ts_ns"]) - origin) / 1e9, 3),
                        name,
                        _knob_value(name, int(r["value2"])),
                        _knob_value(name, int(r["value"])),
                    )
                )
            for r in tick.events.of_kind(EventKind.ADVISOR):
                t_adv = round((int(r["ts_ns"]) - origin) / 1e9, 3)
                advisor.append(AdvisorStep(t_adv, int(r["value2"]), int(r["value"]), int(r["err"])))
        duration = (last_ns - first_ns) / 1e9 if first_ns is not None and last_ns else 0.0
        return TraceSummary(
            path=src.path,
            header=src.header,
            acc=acc,
            series=series,
            intervals=n,
            duration_s=duration,
            first=acc.first,
            last=acc.last,
            knob_changes=knobs,
            advisor=advisor,
            lost=dict(src.lost_total),
            warnings=src.warnings,
            unreadable_events=src.unreadable_events,
            lost_unknown=src.lost_unknown,
        )
