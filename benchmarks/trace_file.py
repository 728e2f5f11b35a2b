"""Trace file throughput: the recorder at 250,000 events/s sustained, replay reading speed.

Figures (printed by ``python -m benchmarks trace_file``):

* recorder, paced: one synthetic Tick of 250,000 events per second for 10 s goes through
  the whole recording path (queue, writer thread, process filter, knob events, privacy
  salting, column encoding, zlib, one SQLite transaction per Tick). It keeps up when every
  Tick is written within its interval and the file holds every event (zero loss).
* recorder, flat out: the same path without pacing: the most events/s it can take.
* replay: ReplaySource(speed=0) decoding the file; with and without the Accumulator.
* the design alternative, one SQLite row per event, measured the same way for comparison.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from ksmtrace.aggregate import Accumulator
from ksmtrace.events import Tick
from ksmtrace.recorder import Recorder
from ksmtrace.replay import ReplaySource
from ksmtrace.synthetic import synthetic_ticks
from ksmtrace.tracefile import TraceHeader, TraceWriter

RATE = 250_000
SECONDS = 10
REPLAY_TARGET = 1_000_000


def _record(path: Path, ticks: list[Tick], paced: bool) -> tuple[float, float, float, int]:
    """(elapsed s, mean write s, max write s, file bytes) of recording ``ticks``."""
    writer = TraceWriter(path, TraceHeader(hostname="benchmark"), overwrite=True)
    rec = Recorder(writer, salt=os.urandom(32))
    started = time.monotonic()
    for i, tick in enumerate(ticks):
        if paced:
            delay = started + (i + 1) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        rec.submit(tick)
    stats = rec.close("benchmark")
    elapsed = time.monotonic() - started
    return elapsed, stats.write_seconds / stats.ticks, stats.max_write_seconds, path.stat().st_size


def _replay(path: Path, accumulate: bool) -> tuple[int, float]:
    started = time.perf_counter()
    n = 0
    acc = Accumulator()
    with ReplaySource(path, speed=0) as src:
        for tick in src.ticks():
            n += len(tick.events)
            if accumulate:
                acc.add(tick)
    return n, time.perf_counter() - started


def _rows_alternative(path: Path, tick: Tick) -> tuple[float, float]:
    """events/s writing and reading one SQLite row per event (the rejected design)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE ev (ts_ns, mm, addr, value, value2, pid, tid, err, kind, flags)")
    rec = tick.events.records
    started = time.perf_counter()
    rows = rec.astype(
        [(n, "<i8") for n in rec.dtype.names or ()]  # SQLite integers are signed 64-bit
    ).tolist()
    with db:
        db.executemany("INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    write = len(rec) / (time.perf_counter() - started)
    started = time.perf_counter()
    got = db.execute("SELECT * FROM ev").fetchall()
    np.array(got, dtype=[(n, "<i8") for n in rec.dtype.names or ()])
    read = len(rec) / (time.perf_counter() - started)
    db.close()
    return write, read


def run() -> list[str]:
    ticks = list(synthetic_ticks(SECONDS, RATE, seed=7))
    total = RATE * SECONDS
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ksmtrace-bench-") as tmp:
        path = Path(tmp) / "bench.ksmtrace"
        elapsed, mean_w, max_w, size = _record(path, ticks, paced=True)
        n, _ = _replay(path, accumulate=False)
        keeps_up = max_w < 1.0 and elapsed < SECONDS + 1.0 and n == total
        out.append(
            f"recorder paced at {RATE:,} events/s for {SECONDS} s: write per 1 s tick "
            f"mean {mean_w * 1000:.0f} ms, max {max_w * 1000:.0f} ms; {n:,} of {total:,} "
            f"events in the file; {'KEEPS UP, zero loss' if keeps_up else 'FALLS BEHIND'}"
        )
        out.append(f"file size: {size / total:.1f} bytes/event ({size / 2**20:.1f} MiB)")
        elapsed, _, _, _ = _record(path, ticks, paced=False)
        out.append(f"recorder flat out: {total / elapsed:,.0f} events/s")
        n, secs = _replay(path, accumulate=False)
        verdict = "meets" if n / secs >= REPLAY_TARGET else "MISSES"
        out.append(
            f"replay read (ReplaySource, speed=0): {n / secs:,.0f} events/s "
            f"({verdict} the {REPLAY_TARGET:,}/s target)"
        )
        n, secs = _replay(path, accumulate=True)
        out.append(f"replay + Accumulator: {n / secs:,.0f} events/s")
        w, r = _rows_alternative(Path(tmp) / "rows.db", ticks[0])
        out.append(f"alternative, one SQLite row per event: write {w:,.0f}/s, read {r:,.0f}/s")
    return out
