"""The exporter's accounting: top-N series, the 'other' series, monotonic counters, forgetting."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ksmtrace.errors import UsageError
from ksmtrace.events import Event, EventBatch, EventKind, HostSample, ProcessKsm, Tick, UnmergeKind
from ksmtrace.exporter import ExporterState, Listen, build_registry
from ksmtrace.exporter.collectors import COLLECTORS, SnapshotBoard
from ksmtrace.exporter.snapshot import OTHER_LABELS

from .exporter_input import S, golden_ticks

KSM = {"pages_shared": 100, "pages_sharing": 300, "ksm_zero_pages": 0}


def sample(ts_ns: int, merging: dict[int, int]) -> HostSample:
    procs = {pid: ProcessKsm(pid, n, 0, n, n * 4096) for pid, n in merging.items()}
    return HostSample(ts_ns, KSM, {"cow_ksm": 0}, ts_ns // 10, procs)


def tick_of(i: int, merging: dict[int, int], events: list[Event]) -> Tick:
    return Tick(i * S, (i + 1) * S, EventBatch.from_events(events), sample((i + 1) * S, merging))


def merges(pid: int, n: int, ts: int = 0) -> list[Event]:
    return [Event(EventKind.MERGE, ts + k, pid) for k in range(n)]


def test_top_n_by_savings_and_the_rest_in_other() -> None:
    state = ExporterState(top_n=2)
    snap = state.fold(tick_of(0, {1: 10, 2: 30, 3: 20, 4: 5}, merges(1, 3) + merges(4, 2)))
    assert [s.labels[0] for s in snap.series] == ["2", "3", "other"]
    other = snap.series[-1]
    assert other.merging_pages == 15 and other.merges == 5
    assert sum(s.saved_bytes for s in snap.series) == pytest.approx(0.75 * 65 * 4096, abs=3)


def test_counters_stay_monotonic_when_a_process_leaves_and_reenters_the_top() -> None:
    state = ExporterState(top_n=1)
    # pid 1 leads, then pid 2 overtakes it, then pid 1 leads again; both merge every interval
    plan = [{1: 50, 2: 10}, {1: 50, 2: 90}, {1: 50, 2: 90}, {1: 99, 2: 90}, {1: 99, 2: 90}]
    seen: dict[tuple[str, ...], int] = {}
    host_total = 0
    for i, merging in enumerate(plan):
        snap = state.fold(tick_of(i, merging, merges(1, 4, i * S) + merges(2, 7, i * S)))
        host_total += 11
        for s in snap.series:
            assert s.merges >= seen.get(s.labels, 0), f"{s.labels} went down"
            seen[s.labels] = s.merges
        assert len(snap.series) == 2  # one process and 'other', whatever moves
    one, two = ("1", "?", "", "(unknown)"), ("2", "?", "", "(unknown)")
    # pid 1 was exposed in intervals 0, 3, 4 and kept its count while pid 2 led
    assert seen[one] == 3 * 4
    assert seen[two] == 2 * 7
    # every increase went to exactly one series: the series add up to the host's merges
    assert seen[one] + seen[two] + seen[OTHER_LABELS] == host_total


def test_series_count_stays_bounded_with_many_short_lived_processes() -> None:
    state = ExporterState(top_n=5)
    longest = 0
    for i in range(40):
        pids = range(1000 + 50 * i, 1050 + 50 * i)  # 50 new processes per interval, then gone
        events = [e for p in pids for e in merges(p, 2, i * S)]
        snap = state.fold(tick_of(i, {p: p % 7 for p in pids}, events))
        longest = max(longest, len(snap.series))
        assert snap.processes_tracked <= 100  # exited processes are forgotten
    assert longest == 6
    assert snap.processes_seen == 2000
    assert snap.series[-1].labels == OTHER_LABELS


def test_published_snapshots_never_change() -> None:
    state = ExporterState(top_n=3)
    first = state.fold(tick_of(0, {1: 5}, merges(1, 2)))
    state.fold(tick_of(1, {1: 5}, merges(1, 9)))
    assert first.series[0].merges == 2


def test_unmerges_by_kind_and_lifetimes_per_series() -> None:
    state = ExporterState(top_n=4)
    events = [
        Event(EventKind.UNMERGE, 1, 7, value=5, flags=UnmergeKind.PRCTL),
        Event(EventKind.UNMERGE, 2, 7, value=2, flags=UnmergeKind.MADVISE),
        Event(EventKind.COW, 3, 7, value=3 * S),
    ]
    snap = state.fold(tick_of(0, {7: 1}, events))
    s = snap.series[0]
    kinds = dict(zip(list(UnmergeKind), s.unmerged, strict=True))
    assert kinds[UnmergeKind.PRCTL] == 5 and kinds[UnmergeKind.MADVISE] == 2
    assert s.cows == 1 and sum(s.lifetime_counts) == 1 and s.lifetime_sum_s == 3.0


def test_negative_top_is_refused() -> None:
    with pytest.raises(UsageError):
        ExporterState(top_n=-1)


def samples(board: SnapshotBoard) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(build_registry(board, own_process=False)).decode()
    return [
        (s.name, s.labels, s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def test_before_the_first_interval_only_health_is_served() -> None:
    got = samples(SnapshotBoard())
    names = {n for n, _, _ in got}
    assert names == {
        "ksmtrace_scrape_collector_success",
        "ksmtrace_scrape_collector_duration_seconds",
        "ksmtrace_build_info",
        "ksmtrace_source_up",
    }
    assert all(v == 0 for n, _, v in got if n in ("ksmtrace_scrape_collector_success",))


def test_a_failing_collector_reports_0_and_the_others_still_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(_snap: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setitem(COLLECTORS, "vmstat", broken)
    board = SnapshotBoard()
    state = ExporterState()
    for t in golden_ticks():
        board.publish(state.fold(t))
    got = samples(board)
    success = {lab["collector"]: v for n, lab, v in got if n.endswith("collector_success")}
    assert success == {"ksm": 1, "vmstat": 0, "ksmd": 1, "processes": 1, "probes": 1}
    names = {n for n, _, _ in got}
    assert "ksmtrace_pages_sharing" in names and "ksmtrace_cow_ksm_total" not in names


def test_missing_sysfs_files_are_skipped() -> None:
    state = ExporterState()
    t = golden_ticks()[0]
    old = {k: v for k, v in t.sample.ksm.items() if k not in ("ksm_zero_pages", "smart_scan")}
    board = SnapshotBoard()
    board.publish(state.fold(replace(t, sample=replace(t.sample, ksm=old))))
    names = {n for n, _, _ in samples(board)}
    assert "ksmtrace_pages_sharing" in names
    assert "ksmtrace_ksm_zero_pages" not in names and "ksmtrace_smart_scan" not in names


def test_the_source_ending_is_reported() -> None:
    state = ExporterState()
    board = SnapshotBoard()
    assert state.ended() is None
    board.publish(state.fold(golden_ticks()[0]))
    ended = state.ended()
    assert ended is not None
    board.publish(ended)
    assert ("ksmtrace_source_up", {}, 0.0) in samples(board)


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:10455", "127.0.0.1", 10455, True),
        (":9999", "127.0.0.1", 9999, True),
        ("0.0.0.0:10455", "0.0.0.0", 10455, False),
        ("[::1]:0", "::1", 0, True),
        ("localhost:80", "localhost", 80, True),
        ("metrics.example:10455", "metrics.example", 10455, False),
    ],
)
def test_listen_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    listen = Listen.parse(text)
    assert (listen.host, listen.port, listen.loopback) == (host, port, loopback)
    assert re.match(r"http://\[?[\w.:]+\]?:\d+/metrics", listen.url())


@pytest.mark.parametrize("text", ["10455", "host:", "host:http", "1.2.3.4:70000"])
def test_bad_listen_addresses_are_one_line_errors(text: str) -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        Listen.parse(text)


def test_the_series_of_an_exited_process_disappear_with_room_in_the_top() -> None:
    state = ExporterState(top_n=20)
    snap = state.fold(tick_of(0, {1: 10, 2: 30}, merges(1, 3) + merges(2, 3)))
    assert {s.labels[0] for s in snap.series} == {"1", "2", "other"}
    snap = state.fold(tick_of(1, {2: 30}, []))  # pid 1 exited: no KSM state, no events
    assert {s.labels[0] for s in snap.series} == {"2", "other"}
    assert snap.processes_tracked == 1
