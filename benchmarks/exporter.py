"""Exporter cost on a busy host: folding one interval and one scrape, with 10,000 processes."""

from __future__ import annotations

import time

import numpy as np
from prometheus_client import generate_latest

from ksmtrace.events import EVENT_DTYPE, EventBatch, EventKind, HostSample, ProcessKsm, Tick
from ksmtrace.exporter import ExporterState, build_registry
from ksmtrace.exporter.collectors import SnapshotBoard

PROCESSES = 10_000
EVENTS = 200_000  # per interval: merges, scans and COWs spread over every process
S = 1_000_000_000


def _tick(i: int, rng: np.random.Generator) -> Tick:
    rec = np.zeros(EVENTS, dtype=EVENT_DTYPE)
    rec["pid"] = rng.integers(1000, 1000 + PROCESSES, EVENTS)
    rec["kind"] = rng.choice([EventKind.MERGE, EventKind.SCAN, EventKind.COW], EVENTS)
    rec["value"] = rng.integers(1, 1000, EVENTS)
    rec["value2"] = rng.integers(1, 10_000, EVENTS)
    rec["ts_ns"] = np.sort(rng.integers(i * S, (i + 1) * S, EVENTS))
    procs = {p: ProcessKsm(p, 100, 0, int(p % 97), p * 10) for p in range(1000, 1000 + PROCESSES)}
    ksm = {"pages_shared": 1000, "pages_sharing": 5000, "full_scans": i}
    sample = HostSample((i + 1) * S, ksm, {"cow_ksm": i * 100}, i * S // 10, procs)
    return Tick(i * S, (i + 1) * S, EventBatch(rec), sample)


def run() -> list[str]:
    """Median fold and scrape times over five intervals, and the exposition size."""
    rng = np.random.default_rng(4)
    ticks = [_tick(i, rng) for i in range(6)]
    state = ExporterState(top_n=20)
    board = SnapshotBoard()
    registry = build_registry(board, own_process=False)
    board.publish(state.fold(ticks[0]))  # first sight of every process
    folds, scrapes = [], []
    for t in ticks[1:]:
        started = time.perf_counter()
        board.publish(state.fold(t))
        folds.append(time.perf_counter() - started)
        started = time.perf_counter()
        body = generate_latest(registry)
        scrapes.append(time.perf_counter() - started)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return [
        f"fold one interval, {PROCESSES} processes, {EVENTS} events: "
        f"{sorted(folds)[2] * 1000:.0f} ms (median of 5)",
        f"scrape with --top 20: {sorted(scrapes)[2] * 1000:.1f} ms (median of 5), "
        f"{samples} samples, {len(body) / 1024:.0f} KiB",
    ]
