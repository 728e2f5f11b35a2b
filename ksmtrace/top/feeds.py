"""Where the ``top`` worker gets its Ticks: the live probe set or a recording it can seek in.

A feed wraps a :class:`~ksmtrace.events.TickSource`. Live feeds deliver ticks in real time
and cannot seek; recorded feeds deliver ticks as fast as they are read (the worker paces
them) and reopen their source at any trace time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ksmtrace.events import Tick, TickSource


class Feed(Protocol):
    """A tick source the worker can (re)open; see :class:`LiveFeed` and :class:`RecordedFeed`."""

    live: bool
    """Ticks arrive in real time (no pacing, no seeking beyond what was seen)."""

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
    duration_s = None

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
    """

    live = False

    def __init__(
        self,
        opener: Callable[[float | None], Iterator[Tick]],
        duration_s: float | None = None,
        closer: Callable[[], None] | None = None,
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._duration_s = duration_s

    @property
    def duration_s(self) -> float | None:
        """Length of the recording in seconds, when known."""
        return self._duration_s

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

    return RecordedFeed(opener, ends[-1] if ends else None)
