"""The table of ``ksmtrace top``: its columns, grouping by VM or cgroup, sorting and filtering.

Pure functions of snapshot rows, so the UI can regroup, resort and refilter at a key press
without asking the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ksmtrace.aggregate import LifetimeHistogram, efficiency
from ksmtrace.events import GROUPINGS
from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_ratio, fmt_seconds
from ksmtrace.top.model import KsmStatView, Row, RowTotals

__all__ = ["COLUMNS", "GROUPINGS", "Column", "column", "filter_rows", "group_rows", "sort_rows"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def _eff(v: float | None) -> str:
    return "-" if v is None else fmt_count(v)


@dataclass(frozen=True, slots=True)
class Column:
    """One sortable column: its key, title, help line, value and cell text."""

    id: str
    title: str
    width: int
    help: str
    value: Callable[[Row], float | str | None]
    text: Callable[[Row], str]


COLUMNS: tuple[Column, ...] = (
    Column("name", "NAME", 16, "process (comm[pid]), VM or cgroup name",
           lambda r: r.label.lower(), lambda r: r.label if r.alive else f"{r.label} (gone)"),
    Column("saved", "SAVED", 7, "its share of the memory KSM saves (zero pages included)",
           lambda r: r.saved_bytes, lambda r: fmt_bytes(r.saved_bytes)),
    Column("merging", "MERGING", 7, "ksm_merging_pages: its mappings of KSM pages",
           lambda r: r.merging_pages, lambda r: fmt_count(r.merging_pages)),
    Column("merges", "MERGE/s", 7, "pages of it ksmd merged per second",
           lambda r: r.merges_per_s, lambda r: fmt_count(r.merges_per_s)),
    Column("cows", "COW/s", 6, "merged pages it broke by writing (copy-on-write) per second",
           lambda r: r.cows_per_s, lambda r: fmt_count(r.cows_per_s)),
    Column("churn", "CHURN", 5, "copy-on-write unmerges per merge in the window",
           lambda r: r.churn, lambda r: fmt_ratio(r.churn)),
    Column("life", "LIFE50", 6, "median time from merge to the first write",
           lambda r: r.lifetime_p50_s, lambda r: fmt_seconds(r.lifetime_p50_s)),
    Column("cpu", "CPU%", 5, "its share of ksmd's scan CPU",
           lambda r: r.scan_cpu_share, lambda r: _pct(r.scan_cpu_share)),
    Column("eff", "EFF", 6, "efficiency: saved MiB per ksmd CPU-second spent on it per second",
           lambda r: r.efficiency, lambda r: _eff(r.efficiency)),
)  # fmt: skip


def column(column_id: str) -> Column:
    """The column with this id."""
    return next(c for c in COLUMNS if c.id == column_id)


def sort_rows(rows: Iterable[Row], column_id: str, descending: bool = True) -> list[Row]:
    """Rows ordered by a column; rows without a value go last, ties by label."""
    col = column(column_id)
    valued = [r for r in rows if col.value(r) is not None]
    empty = sorted((r for r in rows if col.value(r) is None), key=lambda r: r.label)
    valued.sort(key=lambda r: r.label)
    valued.sort(key=lambda r: col.value(r), reverse=descending)  # type: ignore[arg-type,return-value]
    return valued + empty


def filter_rows(rows: Iterable[Row], text: str) -> list[Row]:
    """Rows whose label, comm, VM name or cgroup contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    if not needle:
        return list(rows)

    def hit(r: Row) -> bool:
        names = [r.label, *(i.comm for i in r.identities), *(i.vm or "" for i in r.identities)]
        names += [i.cgroup or "" for i in r.identities]
        return any(needle in n.lower() for n in names)

    return [r for r in rows if hit(r)]


def _any_flag(values: Sequence[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    return False if values and all(v is False for v in values) else None


def _sum_stat(stats: Sequence[KsmStatView]) -> KsmStatView:
    return KsmStatView(
        rmap_items=sum(s.rmap_items for s in stats),
        zero_pages=sum(s.zero_pages for s in stats),
        merging_pages=sum(s.merging_pages for s in stats),
        process_profit=sum(s.process_profit for s in stats),
        mergeable=_any_flag([s.mergeable for s in stats]),
        merge_any=_any_flag([s.merge_any for s in stats]),
    )


def _sum_totals(totals: Sequence[RowTotals]) -> RowTotals:
    return RowTotals(*(sum(getattr(t, f) for t in totals) for f in RowTotals.__dataclass_fields__))


def _merge(key: str, members: list[Row]) -> Row:
    counts = [sum(c) for c in zip(*(m.lifetimes for m in members if m.lifetimes), strict=True)]
    hist = LifetimeHistogram(counts=counts) if counts else None
    saved = sum(m.saved_bytes for m in members)
    merges = sum(m.merges_per_s for m in members)
    cows = sum(m.cows_per_s for m in members)
    cpu = sum(m.scan_cpu_per_s for m in members)
    shares = [m.scan_cpu_share for m in members if m.scan_cpu_share is not None]
    return Row(
        key=key,
        label=key,
        pids=tuple(p for m in members for p in m.pids),
        alive=any(m.alive for m in members),
        saved_bytes=saved,
        merging_pages=sum(m.merging_pages for m in members),
        merges_per_s=merges,
        cows_per_s=cows,
        unmerged_per_s=sum(m.unmerged_per_s for m in members),
        scanned_per_s=sum(m.scanned_per_s for m in members),
        scan_cpu_per_s=cpu,
        churn=cows / merges if merges else None,
        lifetime_p50_s=hist.quantile(0.5) if hist else None,
        scan_cpu_share=sum(shares) if shares else None,
        efficiency=efficiency(saved, cpu),
        ksm_stat=_sum_stat([m.ksm_stat for m in members]),
        lifetimes=tuple(counts),
        lifetimes_unknown=sum(m.lifetimes_unknown for m in members),
        totals=_sum_totals([m.totals for m in members]),
        identities=tuple(i for m in members for i in m.identities),
    )


def group_rows(rows: Iterable[Row], grouping: str) -> list[Row]:
    """Per-process rows folded into one row per VM or cgroup ("process" keeps them).

    Args:
        rows: per-process rows of a snapshot.
        grouping: one of ``GROUPINGS``.

    Returns:
        One row per group, keyed by the group's name.
    """
    if grouping == "process":
        return list(rows)
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.identities[0].group_key(grouping), []).append(r)
    return [_merge(key, members) for key, members in groups.items()]
