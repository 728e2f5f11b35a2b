"""Wall-clock times of replayed Ticks, for exports that need absolute timestamps."""

from __future__ import annotations

from ksmtrace.events import HostSample
from ksmtrace.tracefile.schema import TraceHeader


def wall_ns(sample: HostSample, header: TraceHeader) -> int:
    """CLOCK_REALTIME of a sample: its own stamp, else derived from the recording's start."""
    if sample.wall_ns:
        return sample.wall_ns
    return header.started_wall_ns + (sample.ts_ns - header.started_mono_ns)
