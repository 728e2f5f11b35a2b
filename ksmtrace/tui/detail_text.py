"""Text blocks of the detail pane: lifetime histogram, ksm_stat, totals, regions, cgroup and VM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text

from ksmtrace.aggregate import LIFETIME_BUCKETS_S
from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_seconds
from ksmtrace.top.diagnosis import Finding
from ksmtrace.top.model import Regions, Row

_LEVEL_STYLE = {"bad": "bold red", "warn": "bold yellow", "info": "bold cyan"}
_LEVEL_MARK = {"bad": "✗", "warn": "!", "info": "i"}
#: Mappings listed per process in the regions block.
REGIONS_LISTED = 6


def findings_text(findings: Sequence[Finding], full: bool = True) -> Text:
    """Findings as "mark title: text" paragraphs (only titles when not ``full``)."""
    out = Text()
    for i, f in enumerate(findings):
        if i:
            out.append("\n")
        out.append(f"{_LEVEL_MARK[f.level]} {f.title}", _LEVEL_STYLE[f.level])
        if full:
            out.append(f"\n{f.text}")
    return out


_BARS = "▁▂▃▄▅▆▇█"


def spark_text(values: Sequence[float], width: int) -> Text:
    """A one-line sparkline scaled from zero to the maximum, newest value at the right edge.

    More values than columns are folded by taking each column's maximum; zero draws the
    lowest bar dimmed, any positive value at least the second lowest.
    """
    if width <= 0:
        return Text()
    if len(values) > width:
        step = len(values) / width
        values = [max(values[int(i * step) : int((i + 1) * step)]) for i in range(width)]
    peak = max(values, default=0.0)
    out = Text(" " * (width - len(values)))
    for v in values:
        if v <= 0 or peak <= 0:
            out.append(_BARS[0], "dim")
        else:
            out.append(_BARS[max(1, min(7, round(v / peak * 7)))], "cyan")
    return out


def _bucket_label(i: int) -> str:
    bound = LIFETIME_BUCKETS_S[i]
    if bound == float("inf"):
        return f">{fmt_seconds(LIFETIME_BUCKETS_S[i - 1])}"
    return f"≤{fmt_seconds(bound)}"


def histogram_text(counts: Sequence[int], unknown: int, bar_width: int = 24) -> Text:
    """The merge-lifetime histogram: one bar per bucket between the first and last used."""
    used = [i for i, c in enumerate(counts) if c]
    out = Text("merge lifetime (merge to first write)", "bold")
    if not used:
        out.append("\n  no copy-on-write of a merge seen yet", "dim")
    else:
        top = max(counts)
        for i in range(used[0], used[-1] + 1):
            bar = "█" * max(1 if counts[i] else 0, round(counts[i] / top * bar_width))
            out.append(f"\n  {_bucket_label(i):>7} ")
            out.append(bar.ljust(bar_width), "cyan")
            out.append(f" {fmt_count(counts[i])}")
    if unknown:
        out.append(f"\n  + {fmt_count(unknown)} merged before tracing began", "dim")
    return out


def _yes_no(flag: bool | None) -> str:
    return "?" if flag is None else ("yes" if flag else "no")


def ksm_stat_text(row: Row) -> Text:
    """The row's ksm_stat (summed over a group) and what was counted for it."""
    st, t = row.ksm_stat, row.totals
    out = Text("ksm_stat", "bold")
    out.append(
        f"\n  merging {fmt_count(st.merging_pages)}  zero {fmt_count(st.zero_pages)}  "
        f"rmap_items {fmt_count(st.rmap_items)}  profit {fmt_bytes(st.process_profit)}"
        f"\n  mergeable {_yes_no(st.mergeable)}  merge_any {_yes_no(st.merge_any)}"
    )
    out.append("\ncounted", "bold")
    out.append(
        f"\n  merges {fmt_count(t.merges)}  COW {fmt_count(t.cows)}  unmerged "
        f"{fmt_count(t.unmerged)}  failed {fmt_count(t.failures)}"
        f"\n  scanned {fmt_count(t.scanned)} pages, {fmt_seconds(t.scan_cpu_s)} ksmd CPU"
    )
    return out


def _region_flags(mergeable: bool, shared: bool, hugetlb: bool) -> str:
    return " ".join(f for f, on in (("mg", mergeable), ("sh", shared), ("ht", hugetlb)) if on)


def regions_text(row: Row, regions: Iterable[Regions], live: bool) -> Text:
    """Mergeable regions (VmFlags mg) from smaps, with the mappings KSM may not merge."""
    out = Text("mergeable regions", "bold")
    regs = [r for r in regions if r.pid in row.pids]
    if not regs:
        why = "reading smaps..." if live else "recorded traces carry ksm_stat, not smaps"
        out.append(f"\n  {why}", "dim")
        return out
    for rs in regs:
        if rs.verdict is not None:
            out.append(f"\n  [{rs.pid}] {rs.verdict.verdict}")
        mg = [v for v in rs.regions if v.mergeable]
        out.append(
            f"\n  [{rs.pid}] {len(mg)} mappings, {fmt_bytes(sum(v.size for v in mg))} "
            f"(resident {fmt_bytes(rs.total('anon_bytes', mergeable=True))}, KSM "
            f"{fmt_bytes(rs.total('ksm_bytes', mergeable=True))}, THP "
            f"{fmt_bytes(rs.total('anon_huge_bytes', mergeable=True))})"
        )
        odd = [v for v in rs.regions if v.mergeable or v.shared or v.hugetlb]
        for v in sorted(odd, key=lambda v: -v.size)[:REGIONS_LISTED]:
            flags = _region_flags(v.mergeable, v.shared, v.hugetlb)
            out.append(f"\n    {fmt_bytes(v.size):>7} {flags:<8} {v.name[:40]}", "dim")
    return out


def identity_text(row: Row) -> Text:
    """Cgroup, container, pod, unit and VM of the row's processes (distinct values)."""
    out = Text("cgroup and identity", "bold")
    seen: set[str] = set()
    for ident in row.identities[:8]:
        parts = [f"{ident.comm}[{ident.pid}]", ident.cgroup or "(cgroup unknown)"]
        if ident.vm or ident.vm_kind:
            parts.append(f"VM {ident.vm or '?'} ({ident.vm_kind})")
        parts += [f"{k} {v}" for k, v in (("container", ident.container), ("pod", ident.pod))
                  if v]  # fmt: skip
        line = "  ".join(parts)
        if line not in seen:
            seen.add(line)
            out.append(f"\n  {line}")
    if len(row.identities) > 8:
        out.append(f"\n  ... {len(row.identities) - 8} more processes", "dim")
    return out
