"""Helpers for trace-file tests: write synthetic traces."""

from __future__ import annotations

from pathlib import Path

from ksmtrace.events import Tick
from ksmtrace.recorder import Recorder
from ksmtrace.synthetic import synthetic_ticks
from ksmtrace.tracefile import TraceHeader, TraceWriter


def write_trace(
    path: Path, ticks: list[Tick] | None = None, *, salt: bytes | None = None, **writer_kw: object
) -> list[Tick]:
    """Record ``ticks`` (default: 6 synthetic ticks of 2,000 events) to ``path``."""
    ticks = ticks if ticks is not None else list(synthetic_ticks(6, 2000))
    writer = TraceWriter(path, TraceHeader(hostname="unit", interval_s=1.0), **writer_kw)  # type: ignore[arg-type]
    rec = Recorder(writer, salt)
    for t in ticks:
        rec.submit(t)
    rec.close("test")
    return ticks
