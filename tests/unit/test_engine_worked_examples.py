"""Exact tests: KSM-INTERNALS.md §4.7 (worked example) and §3.5.4 (the ksm_tests formula)."""

from __future__ import annotations

import pytest

from ksmtrace.engine.handmade import from_contents
from ksmtrace.events import EventKind

from .engine_helpers import MS, PASS, kinds, make, run_passes, state

X, U, W1, W2 = 11, 12, 13, 14


@pytest.mark.parametrize("smart_scan", [0, 1])
def test_worked_example_4_7(smart_scan: int) -> None:
    # a1 < a2 identical, u unique; A writes a1 after pass 3 and a2 after pass 4.
    w = from_contents([[X, X, U]], [(2 * PASS + 10 * MS, 0, 0, W1), (3 * PASS + 10 * MS, 0, 1, W2)])
    e = make(w, smart_scan=smart_scan)
    run_passes(e, 1)
    assert state(e) == (3, 0, 0, 0, 3)
    run_passes(e, 1)
    assert state(e) == (3, 1, 1, 1, 0)
    run_passes(e, 1)
    assert state(e) == (3, 1, 1, 1, 0)
    e.run_to(2 * PASS + 15 * MS)  # A wrote a1: cow_ksm at once, counters later
    assert e.cow_ksm == 1
    assert state(e) == (3, 1, 1, 1, 0)
    run_passes(e, 1)
    assert state(e) == (3, 1, 0, 1, 1)
    e.run_to(3 * PASS + 15 * MS)  # A wrote a2: the KSM page is freed, its node is stale
    assert e.cow_ksm == 2
    assert state(e) == (3, 1, 0, 1, 1)
    e.take_events()
    run_passes(e, 1)
    events = e.take_events()
    if smart_scan:
        assert state(e) == (3, 0, 0, 1, 2)
    else:
        assert state(e) == (3, 0, 0, 2, 1)
    assert kinds(events, EventKind.REMOVE_KSM_PAGE) == 1
    assert kinds(events, EventKind.REMOVE_RMAP_ITEM) == 0


def test_worked_example_stale_node_found_by_a1s_stable_tree_walk() -> None:
    # Pass 5: a1 (content unchanged since pass 4) walks the stable tree first and tears the
    # stale node down, before a2 is reached.
    w = from_contents([[X, X, U]], [(2 * PASS + 10 * MS, 0, 0, W1), (3 * PASS + 10 * MS, 0, 1, W2)])
    e = make(w, smart_scan=0)
    run_passes(e, 4)
    e.take_events()
    run_passes(e, 1)
    events = e.take_events()
    removal = events.of_kind(EventKind.REMOVE_KSM_PAGE)
    visits = [r for r in events.records if r["kind"] == EventKind.MERGE]
    assert not visits
    assert len(removal) == 1
    # a1 is then inserted in the unstable tree: its item is UNSTABLE, a2's volatile.
    assert state(e)[3] == 2


def ksm_tests_formula(n: int, m: int) -> tuple[int, int]:
    """tools/testing/selftests/mm/ksm_tests.c: expected (pages_shared, pages_sharing)."""
    if n % m in (0, 1):
        shared = n // m
        return shared, shared * (m - 1)
    shared = n // m + 1
    return shared, n - shared


@pytest.mark.parametrize("m", [2, 3, 5, 256])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9, 10, 11, 16, 17, 21])
def test_ksm_tests_formula_3_5_4(n: int, m: int) -> None:
    e = make(from_contents([[X] * n]), max_page_sharing=m)
    run_passes(e, 3)
    c = e.counters()
    assert (c["pages_shared"], c["pages_sharing"]) == ksm_tests_formula(n, m)
    copies = int(c["pages_shared"])
    assert c["stable_node_chains"] == (1 if copies > 1 else 0)
    assert c["stable_node_dups"] == (copies if copies > 1 else 0)


def test_ksm_tests_m_p_10_event_multiset() -> None:
    # KSM-INTERNALS §8.3: 10 pages of '*': pass 1 all volatile; pass 2 one unstable insert,
    # the pair (PAIR_FIRST = the later page, then PAIR_SECOND) and 8 stable-tree merges.
    e = make(from_contents([[X] * 10]))
    run_passes(e, 1)
    assert state(e) == (10, 0, 0, 0, 10)
    e.take_events()
    run_passes(e, 1)
    merges = e.take_events().of_kind(EventKind.MERGE)
    assert len(merges) == 10
    assert merges["flags"].tolist() == [1, 2] + [4] * 8
    assert merges["addr"][0] > merges["addr"][1], "the later-visited page becomes the KSM page"
    assert state(e) == (10, 1, 9, 0, 0)
