"""Prometheus exporter: ``ksmtrace serve`` (live) and ``ksmtrace replay FILE --serve``.

A source thread folds Ticks into immutable snapshots (:mod:`.state`, :mod:`.snapshot`);
custom collectors build fresh metrics from the latest one on every scrape
(:mod:`.collectors`); :func:`serve` ties a TickSource to the HTTP server (:mod:`.server`).
Metric names come from :mod:`ksmtrace.metrics_names`.
"""

from ksmtrace.exporter.server import DEFAULT_LISTEN, DEFAULT_PORT, Listen, build_registry, serve
from ksmtrace.exporter.snapshot import ProbeReport, Snapshot
from ksmtrace.exporter.state import DEFAULT_TOP_N, ExporterState

__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PORT",
    "DEFAULT_TOP_N",
    "ExporterState",
    "Listen",
    "ProbeReport",
    "Snapshot",
    "build_registry",
    "serve",
]
