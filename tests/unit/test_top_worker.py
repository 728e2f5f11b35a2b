"""The worker thread of ksmtrace top: playback, pause, speed, seeking, back-off, closing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ksmtrace.events import Tick
from ksmtrace.top.feeds import LiveFeed, RecordedFeed, tick_list_feed
from ksmtrace.top.model import Regions, TopSnapshot
from ksmtrace.top.synthetic import FakeHost, FakeProcess, SyntheticSource, synthetic_ticks
from ksmtrace.top.worker import MAX_IN_FLIGHT, SnapshotWorker

PROCS = [FakeProcess(1, "a", merges_per_s=100, cows_per_s=10, scan_per_s=1000)]


class Collector:
    """Receives posted snapshots; acknowledges them like the app does unless told not to."""

    def __init__(self, ack: bool = True) -> None:
        self.snaps: list[TopSnapshot] = []
        self.cond = threading.Condition()
        self.ack = ack
        self.worker: SnapshotWorker | None = None

    def post(self, snap: TopSnapshot) -> None:
        with self.cond:
            self.snaps.append(snap)
            self.cond.notify_all()
        if self.ack and self.worker is not None:
            self.worker.ack(snap.seq)

    def wait(self, pred: Callable[[TopSnapshot], bool], timeout_s: float = 20) -> TopSnapshot:
        with self.cond:
            ok = self.cond.wait_for(lambda: self.snaps and pred(self.snaps[-1]), timeout_s)
            assert ok, f"no matching snapshot; last: {self.snaps[-1] if self.snaps else None}"
            return self.snaps[-1]


def start(feed: RecordedFeed | LiveFeed, collector: Collector, **kw: object) -> SnapshotWorker:
    worker = SnapshotWorker(feed, collector.post, **kw)  # type: ignore[arg-type]
    collector.worker = worker
    worker.start()
    return worker


@pytest.fixture
def recording() -> RecordedFeed:
    return tick_list_feed(synthetic_ticks(PROCS, 30))


def test_a_recording_plays_in_order_to_its_end(recording: RecordedFeed) -> None:
    c = Collector()
    w = start(recording, c, speed=100.0)
    try:
        last = c.wait(lambda s: s.at_end)
    finally:
        assert w.stop()
    times = [s.t_s for s in c.snaps]
    assert times == sorted(times) and times[0] == 1.0 and last.t_s == 30.0
    assert [s.seq for s in c.snaps] == sorted({s.seq for s in c.snaps})
    assert last.duration_s == 30.0 and not last.live


def test_paused_start_shows_the_first_tick_and_waits(recording: RecordedFeed) -> None:
    c = Collector()
    w = start(recording, c, paused=True)
    try:
        first = c.wait(lambda s: True)
        assert first.t_s == 1.0 and first.paused
        w.set_speed(100.0)
        c.wait(lambda s: s.speed == 100.0)
        assert {s.t_s for s in c.snaps} == {1.0}, "nothing plays while paused"
        w.toggle_pause()
        c.wait(lambda s: s.t_s >= 10 and not s.paused)
    finally:
        w.stop()


def test_seeking_within_the_tape_forward_and_far_back(recording: RecordedFeed) -> None:
    c = Collector()
    w = start(recording, c, paused=True, seek_s=20.0, tape=8)
    try:
        assert c.wait(lambda s: True).t_s == 20.0
        w.seek_by(-5)
        assert c.wait(lambda s: s.t_s == 15.0).note == ""
        w.seek(27.5)
        assert c.wait(lambda s: s.t_s != 15.0).t_s == 27.0
        w.seek(3.0)  # before the 8 snapshots kept: the recording is reopened
        snap = c.wait(lambda s: s.t_s == 3.0)
        assert snap.history[0].t_s == 1.0, "reopened a window before the target"
        w.seek(float("inf"))
        assert c.wait(lambda s: s.t_s == 30.0).at_end is False
    finally:
        w.stop()


def test_quick_seeks_add_up(recording: RecordedFeed) -> None:
    c = Collector()
    w = start(recording, c, paused=True, seek_s=5.0)
    try:
        c.wait(lambda s: s.t_s == 5.0)
        for _ in range(4):
            w.seek_by(5)
        c.wait(lambda s: s.t_s == 25.0)
        w.seek_by(-10)
        c.wait(lambda s: s.t_s == 15.0)
    finally:
        w.stop()


def test_seeking_past_a_far_point_reopens_and_says_totals_restart() -> None:
    feed = tick_list_feed(synthetic_ticks(PROCS, 400))
    c = Collector()
    w = start(feed, c, paused=True)
    try:
        c.wait(lambda s: True)
        w.seek(390.0)
        snap = c.wait(lambda s: s.t_s == 390.0)
        assert snap.note == "totals since 385s"
        assert snap.rows[0].totals.merges == 100 * 5, "the 5 ticks from 385 s to 390 s"
    finally:
        w.stop()


def test_a_slow_ui_gets_the_newest_snapshot_not_a_flood(recording: RecordedFeed) -> None:
    c = Collector(ack=False)
    w = start(recording, c, speed=1000.0)
    try:
        deadline = time.monotonic() + 20
        while w.newest_t_s != 30.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert len(c.snaps) == MAX_IN_FLIGHT, "held back until acknowledged"
        w.ack(c.snaps[-1].seq)
        assert len(c.snaps) == MAX_IN_FLIGHT + 1
        assert c.snaps[-1].t_s == 30.0, "the held snapshot is the newest, not the next"
    finally:
        w.stop()


def test_live_feed_follows_freezes_and_reads_the_selected_regions() -> None:
    source = SyntheticSource(PROCS, FakeHost(interval_s=0.05), realtime=True)
    asked: list[int] = []

    def regions(pid: int) -> Regions:
        asked.append(pid)
        return Regions(pid, ())

    c = Collector()
    w = start(LiveFeed(source, 0.05), c, regions=regions)
    try:
        c.wait(lambda s: s.live and s.t_s >= 0.2)
        w.select((1,))
        assert c.wait(lambda s: 1 in s.regions).live
        w.set_paused(True)
        frozen = c.wait(lambda s: s.paused)
        w.seek_by(-0.1)
        back = c.wait(lambda s: s.t_s < frozen.t_s)
        assert back.paused
        w.toggle_pause()
        c.wait(lambda s: not s.paused and s.t_s > frozen.t_s)
        assert asked[0] == 1
    finally:
        assert w.stop()
    assert source.closed and w.closed.is_set(), "stopping the worker closes the source"


def test_resuming_says_so_at_once_not_after_the_next_tick(recording: RecordedFeed) -> None:
    c = Collector()
    w = start(recording, c, paused=True, seek_s=10.0, speed=0.25)  # next tick 4 s away
    try:
        c.wait(lambda s: s.t_s == 10.0 and s.paused)
        w.toggle_pause()
        resumed = c.wait(lambda s: not s.paused, timeout_s=1.0)
        assert resumed.t_s == 10.0, "the same tick, now shown as playing"
    finally:
        w.stop()


def test_live_end_key_follows_again_after_a_pause() -> None:
    source = SyntheticSource(PROCS, FakeHost(interval_s=0.05), realtime=True)
    c = Collector()
    w = start(LiveFeed(source, 0.05), c)
    try:
        c.wait(lambda s: s.t_s >= 0.2)
        w.toggle_pause()
        frozen = c.wait(lambda s: s.paused)
        w.seek(float("inf"))
        c.wait(lambda s: not s.paused and s.t_s > frozen.t_s + 0.2)
    finally:
        assert w.stop()


def test_a_far_first_seek_reopens_a_window_early_so_rates_are_full() -> None:
    feed = tick_list_feed(synthetic_ticks(PROCS, 400))
    c = Collector()
    w = start(feed, c, paused=True, seek_s=390.0)
    try:
        snap = c.wait(lambda s: True)
        assert snap.t_s == 390.0 and snap.note == "totals since 385s"
        assert snap.rows[0].merges_per_s == pytest.approx(100.0)
    finally:
        w.stop()


def test_a_failing_source_is_reported_and_closed() -> None:
    closed = threading.Event()

    def broken(start_s: float | None) -> Iterator[Tick]:
        yield from synthetic_ticks(PROCS, 2)
        raise OSError("disk gone")

    errors: list[BaseException] = []
    feed = RecordedFeed(broken, closer=closed.set)
    c = Collector()
    w = SnapshotWorker(feed, c.post, errors.append, speed=1000.0)
    c.worker = w
    w.start()
    assert closed.wait(10)
    assert [str(e) for e in errors] == ["disk gone"]
    w.stop()
