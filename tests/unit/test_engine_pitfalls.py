"""One test per "thing a simulator author is most likely to get wrong" (KSM-INTERNALS §12)."""

from __future__ import annotations

import numpy as np
import pytest

from ksmtrace.engine.handmade import from_contents
from ksmtrace.events import EventKind, UnmergeKind

from .engine_helpers import MS, PASS, kinds, make, run_passes, state

X, Y, Z = 21, 22, 23


def first_merge_pass(e, pid: int, passes: int = 10) -> int:  # type: ignore[no-untyped-def]
    """Index (from 1) of the first pass in which ``pid`` got a MERGE event."""
    for k in range(1, passes + 1):
        run_passes(e, 1)
        merges = e.take_events().of_kind(EventKind.MERGE)
        if np.any(merges["pid"] == pid):
            return k
    return -1


# 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ordering", "expected"), [("6.11", 2), ("6.7", 1)])
def test_1_a_page_equal_to_a_ksm_page_needs_two_visits_from_6_11(
    ordering: str, expected: int
) -> None:
    # p0 holds a KSM page of X already; p1 (registered after pass 2) has one page of X.
    w = from_contents([[X, X], [X, Y]], register_ns=[0, 2 * PASS + 10 * MS])
    e = make(w, ordering=ordering)
    run_passes(e, 3)  # p1 is visited first in pass 4 (it joined between passes)
    e.take_events()
    assert first_merge_pass(e, 1001) == expected


def test_1_every_page_is_volatile_on_its_first_visit() -> None:
    e = make(from_contents([[X, X, X, Y]]))
    run_passes(e, 1)
    assert state(e) == (4, 0, 0, 0, 4)


# 2 -------------------------------------------------------------------------------------
def pass_times(pages: int, pages_to_scan: int) -> list[tuple[int, int]]:
    """(start, stop) times of the first passes over one process of unique pages."""
    e = make(from_contents([list(range(100, 100 + pages))]), pages_to_scan=pages_to_scan)
    e.run_to(20 * PASS)
    ev = e.take_events()
    starts = ev.of_kind(EventKind.SCAN_START)["ts_ns"].tolist()
    stops = ev.of_kind(EventKind.SCAN_STOP)["ts_ns"].tolist()
    return list(zip(starts, stops, strict=False))


@pytest.mark.parametrize(("mid_pass", "stops_before_merge"), [(False, 1), (True, 2)])
def test_2_a_new_mm_joins_behind_the_cursor(mid_pass: bool, stops_before_merge: int) -> None:
    times = pass_times(40, 10)  # a pass spans several batches
    start, stop = times[1]
    t_reg = (start + stop) // 2 if mid_pass else stop + MS
    w = from_contents([list(range(100, 140)), [X, X]], register_ns=[0, t_reg])
    e = make(w, pages_to_scan=10)
    e.run_to(40 * PASS)
    ev = e.take_events()
    first = ev.of_kind(EventKind.MERGE)
    first_t = first["ts_ns"][first["pid"] == 1001].min()
    stops = ev.of_kind(EventKind.SCAN_STOP)["ts_ns"]
    assert int(np.count_nonzero((stops > t_reg) & (stops < first_t))) == stops_before_merge


# 3 -------------------------------------------------------------------------------------
def test_3_a_pass_boundary_ends_the_batch_and_discards_the_budget() -> None:
    e = make(from_contents([list(range(100, 115))]), pages_to_scan=10, sleep_millisecs=10)
    scanned = []
    for _ in range(4):
        e.run_to(e.now_ns + 1)
        scanned.append(int(e.counters()["pages_scanned"]))
    assert scanned == [10, 15, 25, 30]


def test_3_sleep_is_rounded_up_to_jiffies() -> None:
    # HZ=250: sleep_millisecs=10 -> msecs_to_jiffies = 3 jiffies (12 ms), and the timer
    # wheel fires one jiffy later than the expiry (it never fires early), so batches start
    # 16 ms apart; measured on this host: 17.4 ms (10 ms), 24.8 ms (20 ms), 12.2 ms (5 ms).
    e = make(from_contents([[X, Y]]), sleep_millisecs=10, hz=250)
    e.run_to(100 * MS)
    starts = e.take_events().of_kind(EventKind.SCAN_START)["ts_ns"]
    gaps = np.diff(starts)
    assert np.all(gaps == 16 * MS), gaps
    e2 = make(from_contents([[X, Y]]), sleep_millisecs=10, hz=1000)
    e2.run_to(100 * MS)
    assert np.all(np.diff(e2.take_events().of_kind(EventKind.SCAN_START)["ts_ns"]) == 11 * MS)
    e3 = make(from_contents([[X, Y]]), sleep_millisecs=0)
    e3.run_to(MS)
    assert e3.counters()["full_scans"] > 10, "sleep_millisecs=0: no sleep at all"


def test_3_budget_counts_only_pages_handed_to_cmp_and_merge() -> None:
    # Holes and KSM zero pages are free; so are smart-scan skips.
    pages = [100 + i if i % 2 else None for i in range(20)]  # 10 present, 10 holes
    e = make(from_contents([pages]), pages_to_scan=10)
    e.run_to(1)
    c = e.counters()
    assert c["pages_scanned"] == 10 and c["full_scans"] == 0
    e.run_to(e.now_ns + 1)
    assert e.counters()["full_scans"] == 1  # next batch: pass end, 0 items


# 4 -------------------------------------------------------------------------------------
def test_4_counters_lag_cow_unmap_and_exit_but_cow_ksm_does_not() -> None:
    t = 2 * PASS + 10 * MS
    w = from_contents(
        [[X, X, X, X], [X, X]],
        [(t, 0, 0, Y), (t, 0, 1, None)],
        exit_ns=[None, t],
    )
    e = make(w)
    run_passes(e, 3)
    before = state(e), e.process_stats()[1000].merging_pages
    assert before == ((6, 1, 5, 0, 0), 4)
    e.run_to(t + MS)
    assert e.cow_ksm == 1, "only the write copies; unmap and exit do not"
    assert (state(e), e.process_stats()[1000].merging_pages) == before
    run_passes(e, 1)
    assert state(e) == (3, 1, 1, 0, 1)  # p0: a1 volatile, a2 gone, a3+a4 merged
    assert e.process_stats()[1000].merging_pages == 2


# 5 -------------------------------------------------------------------------------------
def test_5_cow_ksm_counts_unsharing_and_last_mapper_writes_not_zero_pages() -> None:
    t = 2 * PASS + 10 * MS
    w = from_contents(
        [[X, X], [0, 0, Y, Y, Z, Z]],
        [(t, 0, 0, 31), (t, 0, 1, 32), (t, 1, 0, 33)],
        knob_changes=[(3 * PASS + 10 * MS, "run", 2)],
    )
    e = make(w, use_zero_pages=1)
    run_passes(e, 3)
    assert e.counters()["ksm_zero_pages"] == 2
    e.run_to(t + MS)
    assert e.cow_ksm == 2, "both mappers of the pair copy, the last one too"
    assert e.counters()["ksm_zero_pages"] == 1, "a zero-page write is not a COW"
    e.take_events()
    e.run_to(3 * PASS + 15 * MS)  # run=2 unshares Y,Y and Z,Z: 4 more
    assert e.cow_ksm == 6
    assert e.counters()["ksm_zero_pages"] == 0
    unmerges = e.take_events().of_kind(EventKind.UNMERGE)
    assert [(int(r["pid"]), int(r["value"]), int(r["value2"])) for r in unmerges] == [(1001, 4, 1)]
    assert int(unmerges["flags"][0]) == UnmergeKind.RUN2


# 6 -------------------------------------------------------------------------------------
def test_6_pages_unshared_is_not_reset_at_pass_start() -> None:
    e = make(from_contents([list(range(100, 110))]), pages_to_scan=1, smart_scan=0)
    run_passes(e, 2)
    assert e.counters()["pages_unshared"] == 10
    for _ in range(5):  # the first batches of pass 3: one page each
        e.run_to(e.now_ns + 1)
        assert e.counters()["pages_unshared"] == 10


def test_6_pages_volatile_holds_zero_page_merged_items_until_freed() -> None:
    e = make(from_contents([[0, 0, X]]), use_zero_pages=1, smart_scan=0)
    run_passes(e, 2)
    c = e.counters()
    assert (c["ksm_zero_pages"], c["pages_shared"], c["pages_sharing"]) == (2, 0, 0)
    assert state(e) == (3, 0, 0, 1, 2)
    run_passes(e, 1)
    assert state(e) == (1, 0, 0, 1, 0), "the walker freed the zero-mapped items"


# 7 -------------------------------------------------------------------------------------
def test_7_smart_scan_skips_an_old_unique_page_8_of_9_passes() -> None:
    e = make(from_contents([[X]]), smart_scan=1)
    scanned_at = []
    for k in range(40):
        before = int(e.counters()["pages_scanned"])
        run_passes(e, 1)
        if int(e.counters()["pages_scanned"]) > before:
            scanned_at.append(k)
    assert scanned_at == [0, 1, 2, 3, 5, 8, 13, 22, 31]
    assert e.counters()["pages_skipped"] == 40 - len(scanned_at)


def test_7_an_old_unique_page_oscillates_between_unshared_and_volatile() -> None:
    e = make(from_contents([[X]]), smart_scan=1)
    seen = set()
    for _ in range(12):
        run_passes(e, 1)
        seen.add(state(e)[3:])
    assert {(1, 0), (0, 1)} <= seen


@pytest.mark.parametrize(("appears_after", "merge_pass"), [(20, 3), (23, 9)])
def test_7_a_new_duplicate_of_an_aged_page_waits_for_its_next_scan(
    appears_after: int, merge_pass: int
) -> None:
    # u (age 22 at pass 23) is scanned in passes 23, 32, ...; the new page at address 1 is
    # scanned in its passes 0, 1, 2, 3, 5, 8 after appearing. They merge in the first pass
    # that scans both with a stable checksum.
    t = (appears_after - 1) * PASS + 10 * MS
    e = make(from_contents([[X, None]], [(t, 0, 1, X)]), smart_scan=1)
    run_passes(e, appears_after)
    e.take_events()
    assert first_merge_pass(e, 1000, 12) == merge_pass


# 8 -------------------------------------------------------------------------------------
def test_8_fork_pushes_a_node_past_max_page_sharing() -> None:
    n = 4
    w = from_contents(
        [[X] * n, [None] * n], register_ns=[0, 3 * PASS + 10 * MS], fork_parent=[None, 0]
    )
    e = make(w, max_page_sharing=n)
    run_passes(e, 3)
    assert (e.counters()["pages_shared"], e.counters()["pages_sharing"]) == (1, n - 1)
    run_passes(e, 3)
    c = e.counters()
    assert (c["pages_shared"], c["pages_sharing"]) == (1, 2 * n - 1)
    adopts = e.take_events().of_kind(EventKind.MERGE)
    assert np.all(adopts["flags"][adopts["pid"] == 1001] == 8)  # ADOPT


def test_8_further_copies_of_a_full_content_only_come_from_the_unstable_tree() -> None:
    e = make(from_contents([[X] * 5]), max_page_sharing=2)
    run_passes(e, 2)
    merges = e.take_events().of_kind(EventKind.MERGE)
    assert not np.any(merges["flags"] == 4), "no stable-tree merge into a full node"
    assert e.counters()["pages_shared"] == 2  # 2 pairs, the fifth page stays alone


# 9 -------------------------------------------------------------------------------------
def test_9_a_freed_ksm_page_keeps_its_node_until_revalidated() -> None:
    t = 2 * PASS + 10 * MS
    w = from_contents([[X, X, Y]], [(t, 0, 0, 41), (t, 0, 1, 42)])
    e = make(w)
    run_passes(e, 3)
    e.take_events()
    e.run_to(t + MS)
    assert e.counters()["pages_shared"] == 1, "both mappings gone, node still counted"
    assert kinds(e.take_events(), EventKind.REMOVE_KSM_PAGE) == 0
    run_passes(e, 1)
    assert e.counters()["pages_shared"] == 0
    assert kinds(e.take_events(), EventKind.REMOVE_KSM_PAGE) == 1


def test_9_an_emptied_chain_stays_counted() -> None:
    t = 2 * PASS + 10 * MS
    w = from_contents([[X] * 4], [(t, 0, i, 50 + i) for i in range(4)])
    e = make(w, max_page_sharing=2)
    run_passes(e, 3)
    c = e.counters()
    assert (c["stable_node_chains"], c["stable_node_dups"]) == (1, 2)
    run_passes(e, 2)
    c = e.counters()
    assert (c["pages_shared"], c["stable_node_chains"], c["stable_node_dups"]) == (0, 1, 0)


# 10 ------------------------------------------------------------------------------------
def test_10_run_2_unmerges_everything_and_resets_full_scans() -> None:
    t = 3 * PASS + 10 * MS
    e = make(from_contents([[X, X, Y]], knob_changes=[(t, "run", 2)]))
    run_passes(e, 3)
    assert e.counters()["full_scans"] == 3 and e.counters()["pages_sharing"] == 1
    e.run_to(t + MS)
    c = e.counters()
    assert (c["full_scans"], c["pages_shared"], c["pages_sharing"], e.rmap_items) == (0, 0, 0, 0)
    assert c["pages_scanned"] > 0, "pages_scanned is not reset"
    e.run_to(t + 10 * PASS)
    assert e.counters()["full_scans"] == 0, "ksmd stays idle with run=2"


def test_10_zero_page_merges_never_count_as_shared_or_sharing() -> None:
    e = make(from_contents([[0] * 50]), use_zero_pages=1)
    run_passes(e, 3)
    c = e.counters()
    assert (c["pages_shared"], c["pages_sharing"], c["ksm_zero_pages"]) == (0, 0, 50)
    assert c["general_profit"] == 50 * 4096 - e.rmap_items * 64
