"""Trace files: the SQLite format (schema), event chunk codec, writer and reader.

The format is described in docs/trace-format.md. Nothing here imports bcc, textual or
prometheus_client: a trace can be read on any host.
"""

from __future__ import annotations

from ksmtrace.tracefile.reader import TraceReader, TraceRecordError
from ksmtrace.tracefile.schema import FORMAT_VERSION, MAGIC, TraceHeader
from ksmtrace.tracefile.writer import TraceFullError, TraceWriter

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "TraceFullError",
    "TraceHeader",
    "TraceReader",
    "TraceRecordError",
    "TraceWriter",
]
