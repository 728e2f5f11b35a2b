"""The sample trace bundled with ksmtrace (ksmtrace/data/sample.ksmtrace), for UI tests."""

from __future__ import annotations

import bisect
from functools import cache

from ksmtrace.replay import ReplaySource


@cache
def tick_ends() -> tuple[float, ...]:
    """Trace seconds at which each recorded tick of the sample ends."""
    with ReplaySource(None, 0.0) as src:
        return tuple((r.end_ns - src.trace_start_ns) / 1e9 for r in src.rows())


def shown_t(at_s: float) -> float:
    """The trace time of the snapshot top shows after seeking to ``at_s``."""
    ends = tick_ends()
    return ends[max(0, bisect.bisect_right(ends, at_s + 1e-9) - 1)]
