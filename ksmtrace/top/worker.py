"""The background thread of ``ksmtrace top``: owns the feed, builds snapshots, plays and seeks.

Only this thread touches the event source (BPF ring buffer, /proc, trace files). It folds
every tick through :class:`~ksmtrace.top.builder.SnapshotBuilder`, keeps the recent
snapshots on a tape (for seeking back, live or replayed), paces recordings at the chosen
speed and hands finished :class:`TopSnapshot` objects to ``post``. While the UI has not
acknowledged earlier snapshots, newer ones wait in a single slot (the newest wins), so a
fast source never floods the UI.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ksmtrace.events import Tick
from ksmtrace.mergeability import Mergeability
from ksmtrace.top.builder import SnapshotBuilder
from ksmtrace.top.feeds import Feed
from ksmtrace.top.model import Regions, TopSnapshot

#: Snapshots kept for seeking back (15 minutes of 1 s ticks).
TAPE_SNAPSHOTS = 900
#: Snapshots posted but not yet acknowledged before newer ones are held back.
MAX_IN_FLIGHT = 2
#: Playback speeds offered by faster()/slower().
SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 100.0)
#: A seek this far past the newest snapshot reopens the recording instead of reading through.
FAR_SEEK_S = 300.0
#: How much nicer than the UI thread the worker thread runs, so that folding a large tick
#: never starves the thread that answers key presses.
WORKER_NICE = 5
#: Longest the worker waits for the UI to draw its answer to a key before folding a tick.
MAX_HOLD_S = 0.25
#: Seconds between two reads of the selected processes' smaps.
REGIONS_EVERY_S = 2.0

Post = Callable[[TopSnapshot], None]
Fail = Callable[[BaseException], None]
RegionsReader = Callable[[int], Regions | None]
VmVerdicts = Callable[[], Sequence[Mergeability]]


def _lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to the UI thread (Linux: per-thread nice)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE)


class _Tape:
    """The last snapshots in time order, addressed by absolute index."""

    def __init__(self, size: int) -> None:
        self.items: deque[TopSnapshot] = deque(maxlen=size)
        self.base = 0

    def append(self, snap: TopSnapshot) -> None:
        if len(self.items) == self.items.maxlen:
            self.base += 1
        self.items.append(snap)

    def clear(self) -> None:
        self.base += len(self.items)
        self.items.clear()

    @property
    def head(self) -> int:
        """Absolute index of the newest snapshot (base - 1 when empty)."""
        return self.base + len(self.items) - 1

    def get(self, index: int) -> TopSnapshot:
        return self.items[index - self.base]

    def index_at(self, t_s: float) -> int:
        """Absolute index of the last snapshot at or before ``t_s`` (the oldest if none)."""
        times = [s.t_s for s in self.items]
        return self.base + max(0, bisect.bisect_right(times, t_s + 1e-9) - 1)


class SnapshotWorker:
    """Runs the feed on a thread and posts snapshots; every control method is thread-safe.

    Args:
        feed: the live probe set or a recording.
        post: receives each snapshot to show (called from the worker thread, or from the
            caller of :meth:`ack`).
        fail: receives the exception that ended the worker, if any.
        window_s: seconds the rates are averaged over.
        speed: initial playback speed of a recording.
        paused: start paused (a recording shows its first tick, or ``seek_s``).
        seek_s: start at this trace time.
        regions: reads a process's smaps for the detail pane (live only).
        vms: says which VMs on the host can merge (live only; it paces its own reads).
        tape: snapshots kept for seeking back.
    """

    def __init__(
        self,
        feed: Feed,
        post: Post,
        fail: Fail | None = None,
        *,
        window_s: float = 5.0,
        speed: float = 1.0,
        paused: bool = False,
        seek_s: float | None = None,
        regions: RegionsReader | None = None,
        vms: VmVerdicts | None = None,
        tape: int = TAPE_SNAPSHOTS,
    ) -> None:
        self.feed = feed
        self._post_fn, self._fail_fn = post, fail
        self.window_s = window_s
        self.speed = speed
        self.paused = paused
        self._seek: float | None = seek_s
        self._target: float | None = None
        self._read_regions = regions if feed.live else None
        self._read_vms = vms if feed.live else None
        self._vms: tuple[Mergeability, ...] = ()
        self._tape = _Tape(tape)
        self._cursor = -1
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="ksmtrace-top-feed", daemon=True)
        self._ticks: Iterator[Tick] | None = None
        self._builder = SnapshotBuilder(window_s, feed.origin_ns)
        self._at_end = False
        self._note = ""
        self._seq = self._posted = self._acked = 0
        self._pending: TopSnapshot | None = None
        self._selected: tuple[int, ...] = ()
        self._regions: dict[int, Regions] = {}
        self._regions_read_at = 0.0
        self.closed = threading.Event()
        self._input_done = threading.Event()
        self._input_done.set()

    # -- controls (any thread) ------------------------------------------------------------

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Ask the thread to end, wait for it (it closes the feed); False if it did not end."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _control(self, **changes: object) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, value)
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume playback (live: freeze the display or follow the newest tick)."""
        follow = None if paused or not self.feed.live else float("inf")
        self._control(paused=paused, _seek=follow, _resend=True)

    def toggle_pause(self) -> None:
        """Pause if playing, play if paused (a finished recording plays from the start)."""
        if self.feed.live:
            frozen = self.paused or self._cursor < self._tape.head
            self.set_paused(not frozen)
        elif self.paused or self._at_end:
            self._control(paused=False, _seek=0.0 if self._at_end else None, _resend=True)
        else:
            self.set_paused(True)

    def set_speed(self, speed: float) -> None:
        """Set the playback speed of a recording (trace seconds per wall second)."""
        self._control(speed=max(SPEEDS[0], min(SPEEDS[-1], speed)), _resend=True)

    def faster(self) -> None:
        """Next speed up in :data:`SPEEDS`."""
        self.set_speed(next((s for s in SPEEDS if s > self.speed), SPEEDS[-1]))

    def slower(self) -> None:
        """Next speed down in :data:`SPEEDS`."""
        self.set_speed(next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0]))

    def seek(self, t_s: float) -> None:
        """Show the trace at ``t_s`` seconds (live: within the tape; past the end: follow)."""
        if self.feed.live and t_s == float("inf"):
            self.set_paused(False)  # following the newest tick is playing, even after a pause
            return
        duration = self.feed.duration_s
        if duration is not None:
            t_s = min(t_s, duration)
        self._control(_seek=max(0.0, t_s), _target=max(0.0, t_s))

    def seek_by(self, delta_s: float) -> None:
        """Move the time cursor by ``delta_s`` seconds (from a seek not yet shown, if any)."""
        with self._lock:
            target = self._target
        start = target if target is not None and target != float("inf") else self._shown_t()
        self.seek(start + delta_s)

    def select(self, pids: tuple[int, ...]) -> None:
        """The processes of the selected row, whose smaps the detail pane shows (live)."""
        if pids != self._selected:
            self._control(_selected=pids, _regions_read_at=0.0)

    def hold(self) -> None:
        """The UI is answering input: fold no tick until :meth:`release` (or MAX_HOLD_S)."""
        self._input_done.clear()

    def release(self) -> None:
        """The UI has drawn its answer to the input."""
        self._input_done.set()

    def ack(self, seq: int) -> None:
        """The UI has shown snapshot ``seq``; post the one held back, if any."""
        with self._lock:
            self._acked = max(self._acked, seq)
            pending, self._pending = self._pending, None
        if pending is not None:
            self._post(pending)

    @property
    def newest_t_s(self) -> float | None:
        """Trace time of the newest snapshot built (None before the first)."""
        with self._lock:
            return self._tape.items[-1].t_s if self._tape.items else None

    def _shown_t(self) -> float:
        with self._lock:
            if self._cursor < self._tape.base:
                return 0.0
            return self._tape.get(self._cursor).t_s

    # -- the thread -------------------------------------------------------------------------

    _resend = False

    def _main(self) -> None:
        _lower_thread_priority()
        try:
            self._ticks = self.feed.open(None)
            if not self.feed.live and self._seek is None:
                self._seek = 0.0
            while not self._stopping.is_set():
                self._step()
        except BaseException as exc:  # noqa: BLE001 - reported to the UI, which exits
            if self._fail_fn is not None and not self._stopping.is_set():
                self._fail_fn(exc)
        finally:
            try:
                self.feed.close()
            finally:
                self.closed.set()

    def _step(self) -> None:
        with self._lock:
            seek, self._seek = self._seek, None
            resend, self._resend = self._resend, False
        if resend and self._cursor >= self._tape.base:
            self._show(self._cursor)
        if seek is not None:
            self._do_seek(seek)
        elif self.feed.live:
            self._live_step()
        elif self.paused or self._at_end:
            self._wake.wait(0.5)
            self._wake.clear()
        else:
            self._play_step()

    def _read(self) -> TopSnapshot | None:
        """Fold the next tick into the tape; None at the end of a recording."""
        assert self._ticks is not None
        tick = next(self._ticks, None)
        if tick is None:
            return None
        self._builder.add(tick, self._let_ui_run)
        snap = self._builder.snapshot()
        assert snap is not None
        with self._lock:
            self._tape.append(snap)
        return snap

    def _let_ui_run(self) -> None:
        """Between two slices of a tick: let the UI thread have the interpreter."""
        self._input_done.wait(MAX_HOLD_S)  # a key press is being answered: let it draw first
        time.sleep(0)

    def _live_step(self) -> None:
        following = self._cursor >= self._tape.head
        if self._read() is None:
            self._stopping.set()
            return
        refreshed = self._refresh_regions()
        if following and not self.paused:
            self._show(self._tape.head)
        elif refreshed:
            self._show(self._cursor)

    def _play_step(self) -> None:
        if self._cursor >= self._tape.head and self._read() is None:
            self._at_end = True
            self._show(self._cursor)
            return
        if self._cursor < self._tape.base:
            self._show(self._tape.head)
            return
        nxt = self._tape.get(self._cursor + 1)
        wait_s = (nxt.t_s - self._tape.get(self._cursor).t_s) / self.speed
        if self._wait(wait_s):
            self._show(self._cursor + 1)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` of wall time unless a control arrives; True if undisturbed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._wake.wait(left):
                self._wake.clear()
                with self._lock:
                    disturbed = self._seek is not None or self.paused or self._resend
                if disturbed or self._stopping.is_set():
                    return False
        return True

    def _do_seek(self, t_s: float) -> None:
        items = self._tape.items
        if not self.feed.live:
            newest = items[-1].t_s if items else 0.0
            ahead = t_s > newest + FAR_SEEK_S and t_s != float("inf")
            if ahead or (items and t_s < items[0].t_s - 1e-9):
                self._reopen(t_s)
            self._at_end = False
            while not items or items[-1].t_s < t_s:
                if self._read() is None:
                    self._at_end = True
                    break
        if items:
            self._show(self._tape.index_at(t_s))
        with self._lock:
            if self._seek is None:
                self._target = None  # shown: later seeks start from the shown time

    def _reopen(self, t_s: float) -> None:
        start = max(0.0, t_s - self.window_s)
        origin = self._builder.origin_ns
        close = getattr(self._ticks, "close", None)
        if close is not None:
            close()
        self._ticks = self.feed.open(start if start > 0 else None)
        self._builder = SnapshotBuilder(self.window_s, origin)
        self._tape.clear()
        self._at_end = False
        self._note = f"totals since {start:.0f}s" if start > 0 else ""

    def _refresh_regions(self) -> bool:
        if self._read_vms is not None:
            self._vms = tuple(self._read_vms())
        if self._read_regions is None:
            return False
        now = time.monotonic()
        if now - self._regions_read_at < REGIONS_EVERY_S:
            return False
        self._regions_read_at = now
        found = {pid: self._read_regions(pid) for pid in self._selected[:16]}
        self._regions = {pid: r for pid, r in found.items() if r is not None}
        return True

    def _show(self, index: int) -> None:
        if not self._tape.items:
            return
        index = max(self._tape.base, min(index, self._tape.head))
        with self._lock:
            self._cursor = index
            self._seq += 1
            snap = replace(
                self._tape.get(index),
                seq=self._seq,
                live=self.feed.live,
                duration_s=self.feed.duration_s,
                paused=self.paused or (self.feed.live and index < self._tape.head),
                speed=1.0 if self.feed.live else self.speed,
                at_end=self._at_end,
                regions=dict(self._regions),
                note=self._note or self.feed.status,
                vm_verdicts=self._vms,
            )
        self._post(snap)

    def _post(self, snap: TopSnapshot) -> None:
        with self._lock:
            if self._posted - self._acked >= MAX_IN_FLIGHT:
                self._pending = snap
                return
            self._posted = snap.seq
        self._post_fn(snap)
