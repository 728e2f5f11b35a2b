"""Each diagnosis rule of ksmtrace top fires on its situation and stays quiet otherwise."""

from __future__ import annotations

import dataclasses

from ksmtrace.kernel.smaps import Vma
from ksmtrace.mergeability import Mergeability
from ksmtrace.top.builder import SnapshotBuilder
from ksmtrace.top.diagnosis import diagnose_host, diagnose_row
from ksmtrace.top.feeds import RecordedFeed
from ksmtrace.top.model import Regions, TopSnapshot
from ksmtrace.top.synthetic import FakeProcess, synthetic_ticks
from tests.tui import scenarios


def last_snapshot(feed: RecordedFeed) -> TopSnapshot:
    b = SnapshotBuilder(5.0, feed.origin_ns)
    for t in feed.open(None):
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    return snap


def codes(snap: TopSnapshot) -> list[str]:
    return [f.code for f in diagnose_host(snap)]


def test_healthy_merging_has_no_finding() -> None:
    procs = [
        FakeProcess(1, "a", merges_per_s=100, cows_per_s=1, scan_per_s=2000, merging=50000),
        FakeProcess(2, "b", merges_per_s=100, scan_per_s=2000, merging=50000),
    ]
    b = SnapshotBuilder()
    for t in synthetic_ticks(procs, 10):
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    assert codes(snap) == []
    assert all(diagnose_row(snap, r) == [] for r in snap.rows)


def test_ksm_off() -> None:
    snap = last_snapshot(scenarios.ksm_off())
    assert codes(snap) == ["ksm-off"]
    assert "echo 1 > /sys/kernel/mm/ksm/run" in diagnose_host(snap)[0].text


def test_nothing_registered_names_who_stopped_and_when() -> None:
    snap = last_snapshot(scenarios.nothing_registered())
    (finding,) = diagnose_host(snap)
    assert finding.code == "nothing-registered"
    assert "web-1[101] at 4.0s: prctl(PR_SET_MEMORY_MERGE, 0)" in finding.text
    assert snap.rows == (), "no process left to list: the UI shows the finding instead"


def test_a_row_that_stopped_being_mergeable_says_when() -> None:
    feed = scenarios.nothing_registered()
    b = SnapshotBuilder(5.0, feed.origin_ns)
    for t in list(feed.open(None))[:6]:
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    row = next(r for r in snap.rows if r.pids == (101,))
    (finding,) = diagnose_row(snap, row)
    assert finding.code == "row-not-registered"
    assert "web-1[101] at 4.0s: prctl(PR_SET_MEMORY_MERGE, 0)" in finding.text


def test_scanning_without_merges_blames_volatile_pages() -> None:
    snap = last_snapshot(scenarios.nothing_merges())
    assert codes(snap)[0] == "nothing-merges"
    assert "volatile" in diagnose_host(snap)[0].text
    assert "row-nothing-merges" in [f.code for f in diagnose_row(snap, snap.rows[0])]


def test_churn_compares_merge_lifetime_with_the_full_scan() -> None:
    snap = last_snapshot(scenarios.churn())
    assert codes(snap) == ["churn"]
    text = diagnose_host(snap)[0].text
    assert diagnose_host(snap)[0].title == "Merges are broken faster than a full scan (churn)"
    assert "cache[101]: 480 copy-on-write/s for 500 merges/s" in text
    assert "half its broken merges lived 300ms or less, faster than a full scan (4.0s)" in text
    cache = next(r for r in snap.rows if r.pids == (101,))
    web = next(r for r in snap.rows if r.pids == (102,))
    assert "row-churn" in [f.code for f in diagnose_row(snap, cache)]
    assert diagnose_row(snap, web) == []


def test_churn_slower_than_a_scan_is_named_as_such() -> None:
    procs = [
        FakeProcess(1, "batch", merges_per_s=100, cows_per_s=90, lifetime_s=8.0, merging=900),
    ]
    b = SnapshotBuilder()
    for t in synthetic_ticks(procs, 10):
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    (finding,) = diagnose_host(snap)
    assert finding.title == "Merges are broken about as fast as they are made (churn)"
    assert "lived 8.0s or less (a full scan takes 4.0s)" in finding.text


def test_ksmd_cpu_high_for_what_it_saves() -> None:
    snap = last_snapshot(scenarios.cpu_costly())
    assert codes(snap) == ["cpu-costly"]
    assert "unique[101] 99%" in diagnose_host(snap)[0].text
    unique = next(r for r in snap.rows if r.pids == (101,))
    assert "row-cpu-costly" in [f.code for f in diagnose_row(snap, unique)]


def test_hugetlb_shared_and_thp_regions_are_explained() -> None:
    snap = last_snapshot(scenarios.churn())
    row = next(r for r in snap.rows if r.pids == (102,))
    mib = 1 << 20
    regions = Regions(102, (
        Vma(0, 64 * mib, "/dev/hugepages/x", hugetlb=True),
        Vma(64 * mib, 96 * mib, "/memfd:ram (deleted)", shared=True),
        Vma(96 * mib, 104 * mib, "[anon]", mergeable=True, anon_huge_bytes=8 * mib),
    ))  # fmt: skip
    found = {f.code: f for f in diagnose_row(snap, row, [regions])}
    assert set(found) == {"hugetlb", "shared", "thp"}
    assert found["hugetlb"].title == "64.0M in hugetlbfs mappings"
    assert found["shared"].title == "32.0M in shared mappings"
    small = Regions(102, (Vma(0, 4096, "/memfd:x", shared=True),))
    assert diagnose_row(snap, row, [small]) == []


def test_vm_verdicts_of_the_mergeability_module_are_said() -> None:
    snap = last_snapshot(scenarios.churn())
    off = Mergeability(
        77, "guest-off", "qemu", False, ("QEMU runs with mem-merge=off: guest RAM is never marked",)
    )
    ok = Mergeability(78, "guest-on", "qemu", True, notes=("guest RAM is in THP",))
    snap = dataclasses.replace(snap, vm_verdicts=(off, ok))
    found = {f.code: f for f in diagnose_host(snap)}
    assert found["vm-not-mergeable"].title == "1 VM cannot merge guest RAM"
    assert "guest-off (pid 77): QEMU runs with mem-merge=off" in found["vm-not-mergeable"].text
    row = next(r for r in snap.rows if r.pids == (102,))
    codes = [f.code for f in diagnose_row(snap, row, [Regions(102, (), verdict=off)])]
    assert codes[0] == "row-not-mergeable"
    notes = diagnose_row(snap, row, [Regions(102, (), verdict=ok)])
    assert [(f.code, f.text) for f in notes] == [("row-note", "guest RAM is in THP")]
    assert diagnose_row(snap, row, [Regions(999, (), verdict=off)]) == [], "other pid"
