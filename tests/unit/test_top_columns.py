"""Grouping, sorting and filtering the rows of ksmtrace top."""

from __future__ import annotations

import pytest

from ksmtrace.top.builder import SnapshotBuilder
from ksmtrace.top.columns import COLUMNS, filter_rows, group_rows, sort_rows
from ksmtrace.top.model import Row
from ksmtrace.top.synthetic import FakeProcess, synthetic_ticks
from tests.tui.scenarios import busy_procs


@pytest.fixture(scope="module")
def rows() -> tuple[Row, ...]:
    b = SnapshotBuilder(5.0)
    for t in synthetic_ticks(busy_procs(), 20):
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    return snap.rows


def test_every_column_sorts_both_ways_with_empty_values_last(rows: tuple[Row, ...]) -> None:
    for col in COLUMNS:
        for descending in (True, False):
            ordered = sort_rows(rows, col.id, descending)
            values = [col.value(r) for r in ordered]
            known = [v for v in values if v is not None]
            assert known == sorted(known, reverse=descending), col.id  # type: ignore[type-var]
            assert values[len(known) :] == [None] * (len(values) - len(known)), col.id


def test_sorting_by_cow_rate_puts_the_churning_cache_first(rows: tuple[Row, ...]) -> None:
    assert sort_rows(rows, "cows")[0].label == "cache[103]"
    assert sort_rows(rows, "name", descending=False)[0].label == "cache[103]"
    assert sort_rows(rows, "churn")[0].label == "cache[103]"


def test_grouping_by_vm_sums_the_guests_and_keeps_the_rest_apart(rows: tuple[Row, ...]) -> None:
    groups = {r.key: r for r in group_rows(rows, "vm")}
    assert set(groups) == {"guest-a", "guest-b", "(no vm)"}
    rest = groups["(no vm)"]
    members = [r for r in rows if r.identities[0].vm is None]
    assert rest.pids == tuple(p for r in members for p in r.pids)
    assert rest.saved_bytes == sum(r.saved_bytes for r in members)
    assert rest.merges_per_s == pytest.approx(sum(r.merges_per_s for r in members))
    assert rest.churn == pytest.approx(rest.cows_per_s / rest.merges_per_s)
    hists = [r.lifetimes for r in members if r.lifetimes]
    assert rest.lifetimes == tuple(map(sum, zip(*hists, strict=True)))
    assert rest.totals.merges == sum(r.totals.merges for r in members)


def test_grouping_by_cgroup_uses_the_unit(rows: tuple[Row, ...]) -> None:
    groups = {r.key: r for r in group_rows(rows, "cgroup")}
    assert set(groups) == {"app.service", "machine-qemu.scope"}
    assert len(groups["machine-qemu.scope"].pids) == 2
    assert group_rows(rows, "process") == list(rows)


def test_filter_matches_label_comm_vm_and_cgroup_case_insensitively(
    rows: tuple[Row, ...],
) -> None:
    assert [r.label for r in filter_rows(rows, "WEB")] == ["web-1[101]", "web-2[102]"]
    assert {r.label for r in filter_rows(rows, "guest-b")} == {"guest-b[202]"}
    assert len(filter_rows(rows, "machine.slice")) == 2
    assert filter_rows(rows, "nomatch") == []
    assert len(filter_rows(rows, "  ")) == len(rows)


def test_a_group_is_mergeable_if_any_member_is() -> None:
    procs = [FakeProcess(1, "a", merging=10), FakeProcess(2, "b", merging=5, mergeable=False)]
    b = SnapshotBuilder()
    for t in synthetic_ticks(procs, 2):
        b.add(t)
    snap = b.snapshot()
    assert snap is not None
    (group,) = group_rows(snap.rows, "cgroup")
    assert group.ksm_stat.mergeable is True
    assert group.ksm_stat.merging_pages == 15
