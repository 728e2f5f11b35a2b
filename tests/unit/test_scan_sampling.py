"""Sampled scan cost: shares from a traced interval split the kernel's totals in the others."""

from __future__ import annotations

from ksmtrace.events import Event, EventBatch, EventFlag, EventKind, HostSample, ProcessKsm
from ksmtrace.probes.scan_sampling import ScanShares


def sample(pages_scanned: int, cpu_ns: int, pids: tuple[int, ...] = (1, 2)) -> HostSample:
    procs = {p: ProcessKsm(p, 1, 0, 1, 0) for p in pids}
    return HostSample(0, {"pages_scanned": pages_scanned}, {}, cpu_ns, procs)


def scan(pid: int, pages: int, ns: int, flags: int = 0) -> Event:
    return Event(EventKind.SCAN, 1, pid=pid, mm=100 + pid, value=pages, value2=ns, flags=flags)


def test_estimates_split_the_kernel_totals_by_the_learned_shares() -> None:
    shares = ScanShares()
    assert shares.estimate(sample(0, 0), sample(1000, 10_000)) == []
    shares.learn(EventBatch.from_events([scan(1, 300, 3000), scan(2, 100, 5000), scan(0, 0, 2000)]))
    est = shares.estimate(sample(10_000, 1_000_000), sample(14_000, 1_100_000))
    by_pid = {e.pid: e for e in est}
    assert by_pid[1].value == 3000 and by_pid[2].value == 1000
    assert by_pid[1].value2 == 30_000 and by_pid[2].value2 == 50_000 and by_pid[0].value2 == 20_000
    assert all(e.flags & EventFlag.ESTIMATED for e in est)
    assert by_pid[1].mm == 101


def test_estimated_or_empty_intervals_do_not_replace_learned_shares() -> None:
    shares = ScanShares()
    shares.learn(EventBatch.from_events([scan(1, 10, 10)]))
    shares.learn(EventBatch.from_events([scan(2, 50, 50, flags=int(EventFlag.ESTIMATED))]))
    shares.learn(EventBatch.from_events([]))
    assert shares.pages == {1: 10}


def test_processes_that_left_ksm_get_no_share() -> None:
    shares = ScanShares()
    shares.learn(EventBatch.from_events([scan(1, 300, 3000), scan(2, 100, 1000)]))
    est = shares.estimate(sample(0, 0, (1, 2)), sample(1000, 8000, (2,)))
    assert [(e.pid, e.value, e.value2) for e in est] == [(2, 1000, 8000)]
