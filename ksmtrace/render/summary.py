"""End-of-run summary in plain language: what merged, what broke again and why, what it cost."""

from __future__ import annotations

from dataclasses import dataclass

from ksmtrace.aggregate import Accumulator, ProcessTotals, efficiency, share_of_savings
from ksmtrace.events import ProcessIdentity, UnmergeKind
from ksmtrace.render.sharing import format_sharing
from ksmtrace.render.units import fmt_count, fmt_mib, fmt_seconds

_ERRNO = {-14: "EFAULT", -16: "EBUSY", -12: "ENOMEM", -11: "EAGAIN"}


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """One process's line of the summary."""

    totals: ProcessTotals
    identity: ProcessIdentity
    saved_bytes: int
    cpu_share: float

    @property
    def name(self) -> str:
        """VM name or comm."""
        return self.identity.vm or self.identity.comm


def format_efficiency(saved_bytes: int, ksmd_cpu_ns: int, seconds: float) -> str:
    """Saved MiB per ksmd CPU-second per second (per core it keeps busy), for the summaries."""
    eff = efficiency(saved_bytes, ksmd_cpu_ns / 1e9 / max(seconds, 1e-9))
    if eff is None:
        return "ksmd spent no CPU"
    return f"efficiency {eff:,.0f} MiB saved per core of ksmd CPU"


def process_summaries(acc: Accumulator) -> list[ProcessSummary]:
    """Per-process summary lines, by saved memory then merges."""
    last, first = acc.last, acc.first
    cpu_total = sum(t.scan_cpu_ns for t in acc.totals.values()) or 1
    if acc.pid_filter is not None and first and last and first.ksmd_cpu_ns >= 0:
        # Only the chosen processes are traced: their share of all of ksmd's CPU.
        cpu_total = max(cpu_total, last.ksmd_cpu_ns - first.ksmd_cpu_ns)
    out = []
    for pid, t in acc.totals.items():
        st = last.processes.get(pid) if last else None
        saved = share_of_savings(last, st.merging_pages, st.zero_pages) if last and st else 0
        ident = acc.identities.get(pid) or ProcessIdentity(pid)
        out.append(ProcessSummary(t, ident, saved, t.scan_cpu_ns / cpu_total))
    out.sort(key=lambda p: (-p.saved_bytes, -p.totals.merges, p.totals.pid))
    return out


def _insights(rows: list[ProcessSummary], saved_total: int) -> list[str]:
    notes = []
    for p in rows:
        t = p.totals
        if t.merges >= 50 and t.cows / t.merges > 0.2:
            life = t.lifetimes.quantile(0.5)
            notes.append(
                f"{p.name} [{t.pid}] writes to its merged pages: {fmt_count(t.cows)} "
                f"copy-on-write breaks for {fmt_count(t.merges)} merges"
                + (f", half of them within {fmt_seconds(life)} of the merge" if life else "")
                + "; ksmd keeps re-merging pages that do not stay equal."
            )
        alive = p.saved_bytes > 0 or t.exits == 0
        if alive and p.cpu_share > 0.1 and saved_total and p.saved_bytes / saved_total < 0.02:
            notes.append(
                f"{p.name} [{t.pid}] took {p.cpu_share:.0%} of ksmd's scan CPU and saved "
                f"almost nothing: its pages are unique; it need not be mergeable."
            )
    if not rows:
        notes.append("No process had KSM activity: nothing is marked mergeable, or KSM is off.")
    return notes


def _ksm_stat_check(acc: Accumulator) -> list[str]:
    """Per-process net merges against the kernel's ksm_merging_pages, where comparable.

    Comparable: processes traced since they registered with KSM (so every merge was seen)
    and still running. ksmd updates ksm_stat lazily, at its next pass over a page, so pages
    written since it last passed still count there.
    """
    last = acc.last
    if last is None:
        return []
    pairs = [
        (t, last.processes[pid].merging_pages)
        for pid, t in acc.totals.items()
        if t.registrations and pid in last.processes
    ]
    if not pairs:
        return []
    off = [(t, m) for t, m in pairs if t.net_merged != m]
    line = (
        f"  ksm_stat check  net merges (merged - COW - unmerged) = ksm_merging_pages for "
        f"{len(pairs) - len(off)} of {len(pairs)} processes traced since they registered"
    )
    details = [
        f"{(acc.identities.get(t.pid) or ProcessIdentity(t.pid)).comm}[{t.pid}] "
        f"{t.net_merged} vs {m}"
        for t, m in off[:4]
    ]
    if not details:
        return [line]
    return [
        line,
        f"                  differ: {', '.join(details)} (ksmd updates ksm_stat at its next "
        "pass over a written page)",
    ]


def format_summary(acc: Accumulator, seconds: float) -> str:
    """The summary block printed when ``trace`` or ``demo`` ends."""
    first, last = acc.first, acc.last
    if last is None or first is None:
        return "No interval completed: nothing to summarise."
    rows = process_summaries(acc)
    merges = sum(t.merges for t in acc.totals.values())
    fails: dict[int, int] = {}
    for t in acc.totals.values():
        for err, n in t.merge_failures.items():
            fails[err] = fails.get(err, 0) + n
    cows = sum(t.cows for t in acc.totals.values())
    explicit = sum(
        n for t in acc.totals.values() for k, n in t.unmerged.items() if k != UnmergeKind.KSMD_UNDO
    )
    scanned = sum(t.scanned for t in acc.totals.values())
    cpu_ns = max(0, last.ksmd_cpu_ns - first.ksmd_cpu_ns) if first.ksmd_cpu_ns >= 0 else 0
    saved = last.saved_bytes
    led = acc.ledger_total
    fail_txt = ", ".join(f"{_ERRNO.get(e, e)} {n}" for e, n in sorted(fails.items()))
    lines = [
        f"Summary of {seconds:.0f} s of KSM activity ({len(rows)} processes):",
        f"  Saved now       {fmt_mib(saved)} = (pages_sharing {last.counter('pages_sharing')} + "
        f"ksm_zero_pages {last.counter('ksm_zero_pages')}) x {last.page_size} B; "
        f"general_profit {fmt_mib(last.counter('general_profit'))}",
        f"  Merged          {fmt_count(merges)} pages"
        + (
            f"; failed attempts: {fail_txt} (the page changed, was locked or pinned while "
            "ksmd tried; it retries at its next pass)"
            if fails
            else ""
        ),
        f"  Broken again    {fmt_count(cows)} by copy-on-write writes, {fmt_count(explicit)} by "
        f"explicit unmerges (madvise/prctl), {fmt_count(led.ksmd_undo)} undone by ksmd",
        f"  ksmd cost       {cpu_ns / 1e9:.2f} s CPU ({cpu_ns / 1e7 / max(seconds, 1e-9):.1f}% of "
        f"one core), {fmt_count(scanned)} pages scanned, {acc.full_scans_total} full scans; "
        f"{format_efficiency(saved, cpu_ns, seconds)}",
        f"  cow_ksm ledger  +{led.cow_ksm_delta} = {led.write_cows} write COW + {led.explicit} "
        f"explicit + {led.ksmd_undo} ksmd undo + {led.unattributed} unattributed",
        f"  Lost events     {acc.lost_total}",
        *_ksm_stat_check(acc),
        "",
        f"  {'PID':>7} {'NAME':<16} {'SAVED':>9} {'MERGED':>7} {'COW':>7} {'LIFE50':>7} "
        f"{'SCANNED':>8} {'CPU':>7} {'SHARE':>5}",
    ]
    for p in rows[:20]:
        t = p.totals
        lines.append(
            f"  {t.pid:>7} {p.name[:16]:<16} {fmt_mib(p.saved_bytes):>9} {fmt_count(t.merges):>7} "
            f"{fmt_count(t.cows):>7} {fmt_seconds(t.lifetimes.quantile(0.5)):>7} "
            f"{fmt_count(t.scanned):>8} {t.scan_cpu_ns / 1e9:>6.2f}s {p.cpu_share:>5.0%}"
        )
    if acc.sharing is not None:
        sharing = format_sharing(acc.sharing.report(acc.identities), last.page_size)
        lines += ["", *sharing] if sharing else []
    notes = _insights(rows, saved)
    if notes:
        lines += ["", "What this means:"] + [f"  - {n}" for n in notes]
    return "\n".join(lines)
