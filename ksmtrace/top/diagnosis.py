"""Plain-language diagnosis of why KSM saves little: for the host and for one table row.

Each rule reads only a snapshot (and, live, the row's smaps regions), so the terminal UI can
show a sentence where it would otherwise show an empty table or a flat plot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_seconds
from ksmtrace.top.model import Departure, HostFigures, Regions, Row, TopSnapshot

#: ksmd CPU (% of one CPU) above which its cost is weighed against what it saves.
CPU_HIGH_PCT = 5.0
#: Below this many saved MiB per ksmd CPU-second per second, the cost is judged high.
EFFICIENCY_LOW = 1024.0
#: Copy-on-write unmerges per merge from which merging is judged wasted work.
CHURN_HIGH = 0.5
#: Below this churn, merges outliving a full scan or not, the writes do not matter.
CHURN_MIN = 0.2
#: A row taking this share of ksmd's CPU should save at least MIN_SAVED_SHARE of the total.
ROW_CPU_SHARE_HIGH = 0.25
MIN_SAVED_SHARE = 0.01
#: Bytes of unmergeable memory worth mentioning.
REGION_MIN_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosis: a short title and a sentence or two saying what to do.

    Attributes:
        code: stable identifier ("ksm-off", "nothing-registered", ...), for tests and docs.
        level: "info", "warn" or "bad".
        title: one line.
        text: the explanation.
    """

    code: str
    level: str
    title: str
    text: str


def _departures_text(departures: Iterable[Departure]) -> str:
    lines = [f"  {d.label} at {d.t_s:.1f}s: {d.how}" for d in list(departures)[-5:]]
    return ("\nStopped being mergeable:\n" + "\n".join(lines)) if lines else ""


def _ksm_off(h: HostFigures) -> Finding | None:
    if h.run == 0:
        return Finding(
            "ksm-off", "bad", "KSM is off (run=0)",
            "ksmd does not scan, so nothing new merges; pages merged earlier stay merged until "
            "written. Switch it on with: echo 1 > /sys/kernel/mm/ksm/run",
        )  # fmt: skip
    if h.run == 2:
        return Finding(
            "ksm-unmerging", "bad", "KSM is unmerging everything (run=2)",
            "Writing 2 to /sys/kernel/mm/ksm/run unshares every KSM page and stops ksmd.",
        )  # fmt: skip
    return None


def _registered(rows: Iterable[Row]) -> bool:
    return any(
        r.ksm_stat.mergeable or r.ksm_stat.merge_any or r.ksm_stat.rmap_items or r.merging_pages
        for r in rows
    )


def _nothing_registered(snap: TopSnapshot) -> Finding | None:
    if _registered(snap.rows):
        return None
    return Finding(
        "nothing-registered", "bad", "No process has memory registered as mergeable",
        "KSM only scans memory that a process marks with madvise(MADV_MERGEABLE) or "
        "prctl(PR_SET_MEMORY_MERGE, 1); QEMU marks guest RAM unless mem-merge=off, and never "
        "shared (share=on, memfd) or hugetlbfs RAM." + _departures_text(snap.departures),
    )  # fmt: skip


def _nothing_merges(h: HostFigures, window_s: float) -> Finding | None:
    if h.run != 1 or h.scan_pages_per_s <= 0 or h.merges_per_s > 0 or h.pages_sharing > 0:
        return None
    why = (
        f"{fmt_count(h.pages_volatile)} tracked pages are volatile: their content changed since "
        "ksmd last looked (or ksmd has seen them only once), so they are not even compared."
        if h.pages_volatile >= h.pages_unshared
        else f"{fmt_count(h.pages_unshared)} tracked pages are unique: no other page has the "
        "same content."
    )
    return Finding(
        "nothing-merges", "warn", "ksmd is scanning but nothing merges",
        f"ksmd scans {fmt_count(h.scan_pages_per_s)} pages/s and merged nothing in the last "
        f"{window_s:.0f} s. {why}",
    )  # fmt: skip


def _faster_than_scan(row: Row, last_scan_s: float | None) -> bool:
    """Half the row's broken merges lived less than a full scan takes."""
    life = row.lifetime_p50_s
    return life is not None and last_scan_s is not None and life < last_scan_s


def _churning(row: Row, last_scan_s: float | None) -> bool:
    if row.churn is None or row.churn < CHURN_MIN or row.merges_per_s < 1:
        return False
    return _faster_than_scan(row, last_scan_s) or row.churn >= CHURN_HIGH


def _churn_title(rows: Iterable[Row], last_scan_s: float | None, host: bool) -> str:
    if any(_faster_than_scan(r, last_scan_s) for r in rows):
        return "Merges are broken faster than a full scan" + (" (churn)" if host else "")
    return "Merges are broken about as fast as they are made" + (" (churn)" if host else "")


def _churn_text(row: Row, h: HostFigures) -> str:
    scan = fmt_seconds(h.last_scan_s)
    when = (
        f", faster than a full scan ({scan})"
        if _faster_than_scan(row, h.last_scan_s)
        else f" (a full scan takes {scan})"
    )
    return (
        f"{row.label}: {fmt_count(row.cows_per_s)} copy-on-write/s for "
        f"{fmt_count(row.merges_per_s)} merges/s; half its broken merges lived "
        f"{fmt_seconds(row.lifetime_p50_s)} or less{when}."
    )


def _churn(snap: TopSnapshot) -> Finding | None:
    rows = [r for r in snap.rows if _churning(r, snap.host.last_scan_s)]
    if not rows:
        return None
    rows.sort(key=lambda r: -r.cows_per_s)
    return Finding(
        "churn", "warn", _churn_title(rows, snap.host.last_scan_s, host=True),
        "ksmd merges pages that are written again soon after: CPU spent for no lasting "
        "saving. Unregister the writers' volatile memory or scan more slowly.\n"
        + "\n".join(_churn_text(r, snap.host) for r in rows[:3]),
    )  # fmt: skip


def _cpu_costly(snap: TopSnapshot) -> Finding | None:
    h = snap.host
    if h.ksmd_cpu_pct is None or h.ksmd_cpu_pct < CPU_HIGH_PCT:
        return None
    per_cpu = h.saved_bytes / 2**20 / (h.ksmd_cpu_pct / 100)
    if per_cpu >= EFFICIENCY_LOW:
        return None
    top = sorted(snap.rows, key=lambda r: -(r.scan_cpu_share or 0))[:3]
    names = ", ".join(f"{r.label} {(r.scan_cpu_share or 0):.0%}" for r in top)
    return Finding(
        "cpu-costly", "warn", "ksmd's CPU is high for what it saves",
        f"ksmd uses {h.ksmd_cpu_pct:.1f}% of a CPU and saves {fmt_bytes(h.saved_bytes)} "
        f"({per_cpu:.0f} MiB per CPU-second per second). Raise sleep_millisecs or lower "
        f"pages_to_scan, or stop registering memory that never merges. Scan CPU: {names}.",
    )  # fmt: skip


def _vms_not_mergeable(snap: TopSnapshot) -> Finding | None:
    blocked = [v for v in snap.vm_verdicts if v.mergeable is False]
    if not blocked:
        return None
    lines = [f"  {v.name} (pid {v.pid}): {'; '.join(v.reasons)}" for v in blocked[:5]]
    return Finding(
        "vm-not-mergeable", "bad",
        f"{len(blocked)} VM{'s' if len(blocked) > 1 else ''} cannot merge guest RAM",
        "\n".join(lines),
    )  # fmt: skip


def diagnose_host(snap: TopSnapshot) -> list[Finding]:
    """Host-wide findings, most severe first (empty when KSM works as it should)."""
    off = _ksm_off(snap.host)
    found = [off] if off else []
    for rule in (
        _nothing_registered(snap),
        _vms_not_mergeable(snap),
        None if off else _nothing_merges(snap.host, snap.window_s),
        _churn(snap),
        _cpu_costly(snap),
    ):
        if rule is not None:
            found.append(rule)
    return found


def _regions_findings(regions: Iterable[Regions]) -> list[Finding]:
    regs = list(regions)
    huge_tlb = sum(r.size for rs in regs for r in rs.regions if r.hugetlb)
    shared = sum(r.size for rs in regs for r in rs.regions if r.shared and not r.hugetlb)
    thp = sum(rs.total("anon_huge_bytes", mergeable=True) for rs in regs)
    out = []
    if huge_tlb >= REGION_MIN_BYTES:
        out.append(Finding(
            "hugetlb", "warn", f"{fmt_bytes(huge_tlb)} in hugetlbfs mappings",
            "KSM never merges hugetlbfs memory (VM_HUGETLB); back it with ordinary pages to "
            "let it merge.",
        ))  # fmt: skip
    if shared >= REGION_MIN_BYTES:
        out.append(Finding(
            "shared", "warn", f"{fmt_bytes(shared)} in shared mappings",
            "KSM never merges MAP_SHARED memory (VM_SHARED: shm, memfd, QEMU share=on); "
            "only private anonymous memory merges.",
        ))  # fmt: skip
    if thp >= REGION_MIN_BYTES:
        out.append(Finding(
            "thp", "info", f"{fmt_bytes(thp)} of mergeable memory in transparent huge pages",
            "ksmd splits a huge page only when one of its subpages matches, so it merges "
            "later and less; THP off for this memory merges sooner.",
        ))  # fmt: skip
    return out


def _verdict_findings(regions: Sequence[Regions]) -> list[Finding]:
    out = []
    for rs in regions:
        v = rs.verdict
        if v is not None and v.mergeable is False:
            out.append(Finding("row-not-mergeable", "bad", f"{v.name} cannot merge",
                               "; ".join(v.reasons)))  # fmt: skip
        elif v is not None and v.notes:
            out.append(Finding("row-note", "info", f"{v.name}: note", "; ".join(v.notes)))
    return out


def diagnose_row(snap: TopSnapshot, row: Row, regions: Iterable[Regions] = ()) -> list[Finding]:
    """Findings for one table row (process, VM or cgroup)."""
    regions = [r for r in regions if r.pid in row.pids]
    verdicts = _verdict_findings(regions)
    out: list[Finding] = []
    st = row.ksm_stat
    registered = _registered([row])
    if not registered and not any(f.code == "row-not-mergeable" for f in verdicts):
        gone = [d for d in snap.departures if d.pid in row.pids]
        out.append(Finding(
            "row-not-registered", "bad", "Not registered with KSM",
            "No mapping of it is marked mergeable (madvise or prctl)."
            + _departures_text(gone),
        ))  # fmt: skip
    elif row.scanned_per_s > 0 and row.merges_per_s == 0 and st.merging_pages == 0:
        out.append(Finding(
            "row-nothing-merges", "warn", "Scanned but nothing merges",
            f"ksmd scans {fmt_count(row.scanned_per_s)} of its pages/s and merges none: they "
            "change between scans (volatile) or no other page has the same content.",
        ))  # fmt: skip
    if _churning(row, snap.host.last_scan_s):
        title = _churn_title([row], snap.host.last_scan_s, host=False)
        out.append(Finding("row-churn", "warn", title, _churn_text(row, snap.host)))
    share = row.scan_cpu_share or 0.0
    total_saved = snap.host.saved_bytes or 1
    costly = share >= ROW_CPU_SHARE_HIGH and row.saved_bytes / total_saved < MIN_SAVED_SHARE
    if costly and registered:
        out.append(Finding(
            "row-cpu-costly", "warn", "Costs ksmd CPU, saves almost nothing",
            f"{share:.0%} of ksmd's scan CPU goes to it and it saves "
            f"{fmt_bytes(row.saved_bytes)}: its pages are unique; it need not be mergeable.",
        ))  # fmt: skip
    return verdicts + out + _regions_findings(regions)
