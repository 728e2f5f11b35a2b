"""ksmtrace top: key press to redraw while the source delivers 100,000 events per second.

The app runs for real (not headless) on a pseudo-terminal of 160x48: keys are written to the
terminal as bytes, go through textual's input parser and the app's handlers, and a redraw
counts when the frame that shows the new view state has been written to the terminal. The
source delivers a tick every second, like ``ksmtrace top`` live, from 100 processes at 1,000
events/s each, so the worker thread folds 100,000 events per second through the
Accumulator while keys are pressed at random moments. The ticks are made before the run
and re-timed as they are delivered, so the figure is the UI's and the worker's, not the
synthetic generator's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import os
import pty
import random
import statistics
import struct
import termios
import threading
import time
from collections.abc import Iterator

import numpy as np

from ksmtrace.events import EventBatch, Tick
from ksmtrace.top.feeds import LiveFeed
from ksmtrace.top.synthetic import FakeHost, FakeProcess, synthetic_ticks
from ksmtrace.tui import TopApp

SIZE = (160, 48)
PRESSES = 40
KEYS = (b"s", b"r", b"g")
TARGET_MS = 100.0
LAG_PERIOD_S = 0.01


def _procs(n: int, events_per_s: int) -> list[FakeProcess]:
    merges = events_per_s * 0.6
    return [
        FakeProcess(1000 + i, f"worker-{i:03d}", merges_per_s=merges,
                    cows_per_s=events_per_s - merges, scan_per_s=20000, merging=10000,
                    vm=f"vm-{i % 8}" if i % 3 == 0 else None)
        for i in range(n)
    ]  # fmt: skip


class MeasuredApp(TopApp):
    """TopApp that timestamps each frame written with the view state it shows."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.frames: list[tuple[float, tuple[object, ...]]] = []
        self.frame_written = threading.Event()
        self.snapshots_shown = 0
        self.lags: list[float] = []
        self._last_beat = 0.0

    def on_mount(self) -> None:
        # textual also calls TopApp.on_mount (handlers run for every class of the MRO).
        self._last_beat = time.perf_counter()
        self.set_interval(LAG_PERIOD_S, self._beat)

    def _beat(self) -> None:
        """How late the event loop runs a 10 ms timer: how long the UI thread was held up."""
        now = time.perf_counter()
        self.lags.append(max(0.0, (now - self._last_beat - LAG_PERIOD_S) * 1000))
        self._last_beat = now

    def view_state(self) -> tuple[object, ...]:
        return (self.sort_id, self.descending, self.grouping)

    def _display(self, screen: object, renderable: object) -> None:  # type: ignore[override]
        super()._display(screen, renderable)  # type: ignore[arg-type]
        if renderable is not None:
            self.frames.append((time.perf_counter(), self.view_state()))
            self.frame_written.set()

    def refresh_view(self) -> None:
        super().refresh_view()
        self.snapshots_shown += 1


@contextlib.contextmanager
def _on_pty(size: tuple[int, int]) -> Iterator[int]:
    """Make fds 0 and 2 a pseudo-terminal of ``size``; yields the master end (drained)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    saved = [os.dup(0), os.dup(2)]
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.read(master, 1 << 16)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    os.dup2(slave, 0)
    os.dup2(slave, 2)
    try:
        yield master
    finally:
        os.dup2(saved[0], 0)
        os.dup2(saved[1], 2)
        stop.set()
        for fd in (*saved, slave):
            os.close(fd)
        os.close(master)


def _press_keys(app: MeasuredApp, master: int, latencies: list[float]) -> None:
    rng = random.Random(5)
    deadline = time.monotonic() + 60
    while app.snapshots_shown < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(PRESSES):
        time.sleep(rng.uniform(0.15, 0.45))
        before = app.view_state()
        seen = len(app.frames)
        t0 = time.perf_counter()
        os.write(master, KEYS[i % len(KEYS)])
        while time.monotonic() < deadline:
            app.frame_written.wait(0.5)
            app.frame_written.clear()
            new = [t for t, state in app.frames[seen:] if state != before]
            if new:
                latencies.append((new[0] - t0) * 1000)
                break
    os.write(master, b"q")


class PacedSource:
    """Delivers pre-made ticks in real time, one per second, re-timed to follow each other."""

    def __init__(self, ticks: list[Tick]) -> None:
        self.made = ticks
        self.delivered = 0
        self.closed = False

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        span = self.made[0].end_ns - self.made[0].start_ns
        started = time.monotonic()
        prev = self.made[0].previous
        for n in itertools.count():
            if self.closed:
                return
            base = self.made[n % len(self.made)]
            shift = np.uint64(n * span)
            records = base.events.records.copy()
            records["ts_ns"] += shift
            tick = dataclasses.replace(
                base, start_ns=base.start_ns + n * span, end_ns=base.end_ns + n * span,
                events=EventBatch(records), previous=prev,
            )  # fmt: skip
            time.sleep(max(0.0, started + (n + 1) * span / 1e9 - time.monotonic()))
            self.delivered += len(records)
            prev = tick.sample
            yield tick

    def close(self) -> None:
        self.closed = True


def measure(events_per_s: int, processes: int = 100) -> tuple[list[float], MeasuredApp, float]:
    """Latencies (ms) of key presses, the app after the run, events delivered per second."""
    made = synthetic_ticks(_procs(processes, events_per_s // processes), 10, FakeHost())
    source = PacedSource(made)
    started = time.monotonic()
    app = MeasuredApp(LiveFeed(source, 1.0))
    latencies: list[float] = []
    with _on_pty(SIZE) as master:
        presser = threading.Thread(target=_press_keys, args=(app, master, latencies))
        presser.start()
        app.run()
        presser.join()
    app.worker.stop()
    return latencies, app, source.delivered / (time.monotonic() - started)


def _summary(label: str, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=20)
    return (
        f"{label}: key to redraw p50 {statistics.median(lat):.1f} ms, p95 {q[18]:.1f} ms, "
        f"max {max(lat):.1f} ms over {len(lat)} presses (target {TARGET_MS:.0f} ms: "
        f"p95 {'met' if q[18] < TARGET_MS else 'missed'}, "
        f"max {'met' if max(lat) < TARGET_MS else 'missed'})"
    )


def run() -> list[str]:
    """Key-to-redraw latency idle and under 100,000 events/s."""
    lines = []
    for label, rate in (("idle source", 0), ("100k events/s", 100_000)):
        lat, app, delivered = measure(rate)
        lines.append(_summary(label, lat))
        lag = statistics.quantiles(app.lags, n=100)
        lines.append(
            f"  UI event loop held up p99 {lag[98]:.1f} ms, max {max(app.lags):.1f} ms; "
            f"source delivered {delivered:,.0f} events/s; {app.snapshots_shown} screen "
            f"updates; {SIZE[0]}x{SIZE[1]} terminal, 100 processes"
        )
    load = os.getloadavg()[0]
    lines.append(f"load average during the run: {load:.2f} on {os.cpu_count()} CPUs")
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
