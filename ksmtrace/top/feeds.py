"""Where the ``top`` worker gets its Ticks: the live probe set or a recording it can seek in.

A feed wraps a :class:`~ksmtrace.events.TickSource`. Live feeds deliver ticks in real time
and cannot seek; recorded feeds deliver ticks as fast as they are read (the worker paces
them) and reopen their source at any trace time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from ksmtrace.events import Tick, TickSource
from ksmtrace.replay import ReplaySource


class Feed(Protocol):
    """A tick source the worker can (re)open; see :class:`LiveFeed` and :class:`RecordedFeed`."""

    live: bool
    """Ticks arrive in real time (no pacing, no seeking beyond what was seen)."""
    origin_ns: int | None
    """CLOCK_MONOTONIC time that is trace second 0 (None: the first tick's start)."""

    @property
    def status(self) -> str:
        """A short line for the status bar ("" when all is well)."""
        ...

    @property
    def duration_s(self) -> float | None:
        """Length of the recording in seconds (None: live or unknown)."""
        ...

    def open(self, start_s: float | None) -> Iterator[Tick]:
        """Ticks from ``start_s`` seconds after the origin (None: from the start)."""
        ...

    def close(self) -> None:
        """Release the source (detach probes, close files)."""
        ...


class LiveFeed:
    """The live probe set (or any real-time TickSource) as a feed."""

    live = True
    duration_s: float | None = None
    origin_ns: int | None = None
    status = ""

    def __init__(self, source: TickSource, interval_s: float = 1.0) -> None:
        self.source = source
        self.interval_s = interval_s

    def open(self, start_s: float | None) -> Iterator[Tick]:
        """Ticks every ``interval_s`` until closed (``start_s`` is ignored)."""
        return self.source.ticks(self.interval_s)

    def close(self) -> None:
        """Close the source: for LiveSource this detaches every probe."""
        self.source.close()


class RecordedFeed:
    """A recording, reopened at a trace time by ``opener(start_s)``.

    Args:
        opener: returns the recording's ticks from ``start_s`` seconds, as fast as read.
        duration_s: length of the recording, when known.
        closer: releases what ``opener`` opened (called once, on close).
        origin_ns: the recording's time 0 (None: its first tick's start).
    """

    live = False

    def __init__(
        self,
        opener: Callable[[float | None], Iterator[Tick]],
        duration_s: float | None = None,
        closer: Callable[[], None] | None = None,
        origin_ns: int | None = None,
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._duration_s = duration_s
        self.origin_ns = origin_ns

    @property
    def duration_s(self) -> float | None:
        """Length of the recording in seconds, when known."""
        return self._duration_s

    @property
    def status(self) -> str:
        """Nothing to report about an in-memory recording."""
        return ""

    def open(self, start_s: float | None) -> Iterator[Tick]:
        """Ticks from ``start_s`` seconds after the recording's first tick."""
        return self._opener(start_s)

    def close(self) -> None:
        """Release the recording."""
        if self._closer is not None:
            self._closer()
            self._closer = None


def tick_list_feed(ticks: Sequence[Tick]) -> RecordedFeed:
    """A recorded feed over ticks held in memory (tests, benchmarks, synthetic sources)."""
    origin = ticks[0].start_ns if ticks else 0
    ends = [(t.end_ns - origin) / 1e9 for t in ticks]

    def opener(start_s: float | None) -> Iterator[Tick]:
        first = 0 if start_s is None else bisect.bisect_right(ends, start_s)
        return iter(ticks[first:])

    return RecordedFeed(opener, ends[-1] if ends else None, origin_ns=origin)


class ReplayFeed(RecordedFeed):
    """A trace file (``ksmtrace record``) read as fast as possible, reopened to seek.

    Args:
        path: the trace; None for the sample bundled with ksmtrace.
        start_s: ``--from``, seconds into the trace: refuses a window past the end; the UI
            seeks there first (reading from the start, so its rates are averaged in full).
        end_s: where it ends (``--to``).

    Raises:
        TraceFormatError: the file is not a readable trace (raised here, before any UI).
        UsageError: the --from/--to window holds no recorded interval.
    """

    def __init__(
        self, path: str | Path | None, start_s: float | None = None, end_s: float | None = None
    ) -> None:
        self.path, self.start_s, self.end_s = path, start_s, end_s
        # SQLite connections belong to the thread that opened them: this one only checks the
        # file and reads its length; the worker thread opens its own.
        with ReplaySource(path, 0.0, start_s, end_s) as probe:
            probe.check_window()
            self.trace_path = probe.path
            self.header = probe.header
            self.warnings: list[str] = list(probe.warnings)
            duration, origin = probe.duration_s, probe.trace_start_ns
        self._source: ReplaySource | None = None
        super().__init__(self._open_at, duration, self._close, origin)

    @property
    def status(self) -> str:
        """How many damaged parts were skipped, if any."""
        seen = set(self.warnings) | set(self._source.warnings if self._source else ())
        return f"{len(seen)} damaged parts skipped" if seen else ""

    def _open_at(self, start_s: float | None) -> Iterator[Tick]:
        if self._source is not None:
            self._source.close()
        self._source = ReplaySource(self.trace_path, 0.0, start_s, self.end_s)
        new = [w for w in self._source.warnings if w not in self.warnings]
        self.warnings += new
        return self._source.ticks(0.0)

    def _close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
