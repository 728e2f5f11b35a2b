"""Replaying a recorded trace as a :class:`~ksmtrace.events.TickSource`, like the live source.

Every consumer of live Ticks (the trace table, JSON lines, summaries, the exporter, the
terminal UI) takes a :class:`ReplaySource` unchanged::

    with ReplaySource("incident.ksmtrace", speed=0) as src:
        for tick in src.ticks(interval_s=0):
            report = accumulator.add(tick)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from types import TracebackType

from ksmtrace.errors import TraceFormatError, UsageError
from ksmtrace.events import EventBatch, ProcessIdentity, Tick
from ksmtrace.tracefile.reader import TickRow, TraceReader, TraceRecordError
from ksmtrace.tracefile.schema import TraceHeader

SAMPLE_NAME = "sample.ksmtrace"


def sample_trace_path() -> Path:
    """The small trace bundled with the package (ksmtrace/data/sample.ksmtrace)."""
    return Path(str(resources.files("ksmtrace") / "data" / SAMPLE_NAME))


def merge_ticks(ticks: list[Tick]) -> Tick:
    """One Tick spanning consecutive Ticks: their events, losses and identities together."""
    if len(ticks) == 1:
        return ticks[0]
    lost: dict[int, int] = {}
    identities: dict[int, ProcessIdentity] = {}
    for t in ticks:
        for k, n in t.lost.items():
            lost[k] = lost.get(k, 0) + n
        identities.update(t.identities)
    first, last = ticks[0], ticks[-1]
    return Tick(
        first.start_ns,
        last.end_ns,
        EventBatch.concat([t.events for t in ticks]),
        last.sample,
        lost,
        identities,
        first.previous,
    )


class ReplaySource:
    """A trace file as a stream of Ticks: the same Ticks the recorder wrote.

    Attributes:
        path: the trace file.
        header: its provenance (host, kernel, knobs, probes, filters).
        speed: 1.0 replays at recorded pace, 2.0 twice as fast, 0 as fast as possible.
        warnings: one line per damaged part skipped so far (grows while replaying).
        lost_total: kernel-side dropped events replayed so far, by EventKind value.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        speed: float = 1.0,
        start_s: float | None = None,
        end_s: float | None = None,
        *,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        """Open a trace for replay.

        Args:
            path: the trace file; None for the sample trace bundled with ksmtrace.
            speed: pace relative to the recording; 0 for as fast as possible.
            start_s: skip intervals that end before this many seconds into the trace.
            end_s: stop after the interval ending at this many seconds into the trace.
            on_warning: called with each warning line as it is found (besides
                ``warnings``), e.g. to print it.

        Raises:
            UsageError: a negative speed or an empty window.
            TraceFormatError: the file is not a readable trace.
        """
        if speed < 0:
            raise UsageError("the replay speed must be 0 (as fast as possible) or positive")
        if start_s is not None and end_s is not None and end_s <= start_s:
            raise UsageError(f"--to {end_s:g} s must come after --from {start_s:g} s")
        self.path = Path(path) if path is not None else sample_trace_path()
        self.speed = speed
        self._on_warning = on_warning
        self._reported = 0
        self._reader: TraceReader | None = TraceReader(self.path)
        self.header: TraceHeader = self._reader.header
        self.lost_total: dict[int, int] = {}
        rows = self._reader.ticks
        self.trace_start_ns = rows[0].start_ns if rows else 0
        self.trace_end_ns = rows[-1].end_ns if rows else 0
        lo = self.trace_start_ns + int((start_s or 0.0) * 1e9)
        hi = None if end_s is None else self.trace_start_ns + int(end_s * 1e9)
        self._rows = [r for r in rows if r.end_ns > lo and (hi is None or r.end_ns <= hi)]
        self._window = (start_s, end_s)
        self._flush_warnings()

    def check_window(self) -> None:
        """Refuse a --from/--to window that holds no recorded interval.

        Raises:
            UsageError: the window starts past the end or falls between two intervals.
        """
        start_s, end_s = self._window
        if self._rows or (start_s is None and end_s is None) or not self._reader:
            return
        if not self._reader.ticks:
            raise UsageError(f"{self.path} holds no recorded interval yet")
        covers = f"the trace covers 0 to {self.duration_s:.0f} s"
        if start_s is not None and start_s >= self.duration_s:
            raise UsageError(f"--from {start_s:g} s is past the end: {covers}")
        raise UsageError(
            f"no recorded interval ends inside --from/--to ({covers} in "
            f"{self.interval_s:g} s intervals); widen the window"
        )

    @property
    def warnings(self) -> list[str]:
        """Problems found so far, one line each."""
        return list(self._reader.warnings) if self._reader else []

    @property
    def unreadable_events(self) -> int:
        """Stored events that could not be decoded (damaged chunks)."""
        return self._reader.unreadable_events if self._reader else 0

    @property
    def lost_unknown(self) -> int:
        """Intervals whose lost-event counts were damaged."""
        return self._reader.lost_unknown if self._reader else 0

    @property
    def duration_s(self) -> float:
        """Length of the whole trace in seconds."""
        return (self.trace_end_ns - self.trace_start_ns) / 1e9

    @property
    def interval_s(self) -> float:
        """Seconds per recorded tick (as asked for when recording)."""
        return self.header.interval_s

    @property
    def tick_count(self) -> int:
        """Recorded ticks in the replay window."""
        return len(self._rows)

    def _flush_warnings(self) -> None:
        if self._reader is None:
            return
        new = self._reader.warnings[self._reported :]
        self._reported += len(new)
        if self._on_warning is not None:
            for line in new:
                self._on_warning(line)

    def _recorded(self) -> Iterator[Tick]:
        assert self._reader is not None
        for row in self._rows:
            try:
                tick = self._reader.read_tick(row)
            except TraceRecordError as exc:
                self._reader.warnings.append(f"{self.path}: interval {row.id} skipped: {exc}")
                self._flush_warnings()
                continue
            self._flush_warnings()
            yield tick

    def ticks(self, interval_s: float = 0.0, duration_s: float | None = None) -> Iterator[Tick]:
        """Yield the recorded Ticks in order, paced by ``speed``.

        Args:
            interval_s: join consecutive recorded ticks until each yielded Tick spans at
                least this long; 0 (or anything up to the recorded interval) yields the
                recorded ticks unchanged.
            duration_s: stop once this many seconds of the trace have been yielded.

        Raises:
            TraceFormatError: the source was closed.
        """
        if self._reader is None:
            raise TraceFormatError(f"{self.path}: the replay source is closed")
        if not self._rows:
            return
        origin_ns = self._rows[0].start_ns
        wall0 = time.monotonic()
        for group in self._groups(int(interval_s * 1e9 * 0.999)):
            out = merge_ticks(group)
            self._pace(wall0, (out.end_ns - origin_ns) / 1e9)
            for k, n in out.lost.items():
                self.lost_total[k] = self.lost_total.get(k, 0) + n
            yield out
            if duration_s is not None and out.end_ns - origin_ns >= duration_s * 1e9 * 0.999:
                return

    def _groups(self, span_ns: int) -> Iterator[list[Tick]]:
        """Consecutive recorded ticks, grouped until each group spans ``span_ns``."""
        pending: list[Tick] = []
        for tick in self._recorded():
            pending.append(tick)
            if tick.end_ns - pending[0].start_ns >= span_ns:
                yield pending
                pending = []
        if pending:
            yield pending

    def _pace(self, wall0: float, trace_s: float) -> None:
        if self.speed <= 0:
            return
        delay = wall0 + trace_s / self.speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def recorded_pids(self) -> set[int]:
        """Every pid the trace names (for checking --pid before replaying)."""
        return self._reader.recorded_pids() if self._reader is not None else set()

    def rows(self) -> list[TickRow]:
        """The recorded ticks in the replay window (ids and times), without reading them."""
        return list(self._rows)

    def close(self) -> None:
        """Close the trace file (idempotent)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
