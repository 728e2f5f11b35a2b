"""The text form of a trace report: provenance, savings, cost, churn, lifetimes, lost events."""

from __future__ import annotations

import textwrap
import time

from ksmtrace.aggregate import ProcessTotals, share_of_savings
from ksmtrace.events import KNOB_NAMES, EventKind, UnmergeKind
from ksmtrace.render.summary import ProcessSummary, format_efficiency, process_summaries
from ksmtrace.render.units import fmt_count, fmt_mib, fmt_seconds
from ksmtrace.report.model import TraceSummary

_ERRNO = {-14: "EFAULT", -16: "EBUSY", -12: "ENOMEM", -11: "EAGAIN"}


def utc(ns: int) -> str:
    """A wall-clock time in UTC (reports do not depend on the reader's time zone)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9)) if ns else "unknown"


def kind_name(kind: int) -> str:
    """EventKind name of a stored kind number (the number itself when unknown)."""
    return EventKind(kind).name if kind in EventKind._value2member_map_ else str(kind)


def provenance_lines(s: TraceSummary) -> list[str]:
    """Where, when and how the trace was recorded."""
    h = s.header
    probes = h.probes
    names = [k for k in KNOB_NAMES if k in h.knobs] + sorted(set(h.knobs) - set(KNOB_NAMES))
    knob_lines = textwrap.wrap(" ".join(f"{k}={h.knobs[k]}" for k in names), 84) or ["unknown"]
    filt = ", ".join([f"pid {p}" for p in h.filter_pids] + [f"VM {v}" for v in h.filter_vms])
    lines = [
        f"Trace report: {s.path.name}",
        f"  Recorded      on {h.hostname or '?'} (Linux {h.kernel_release or '?'}, "
        f"{h.machine or '?'}, {h.page_size} B pages) by ksmtrace {h.ksmtrace_version or '?'}",
        f"  Time          {utc(h.started_wall_ns)}, {s.duration_s:.0f} s in {s.intervals} "
        f"intervals of {h.interval_s:g} s; ended: {h.stop_reason or 'not cleanly (crash?)'}",
        f"  Probes        {probes.get('page_walk_note') or 'unknown'}; "
        f"{len(probes.get('attach_points', []))} attach points; ksmd pid "
        f"{probes.get('ksmd_pid', '?')}",
        "  Privacy       "
        + (
            "kernel addresses and frame numbers replaced by salted ids"
            if h.sanitized
            else "RAW kernel addresses and frame numbers (recorded with --raw)"
        ),
        f"  Knobs         {knob_lines[0]}",
        *[f"                {line}" for line in knob_lines[1:]],
    ]
    if filt:
        lines.append(f"  Only          {filt}")
    if h.note:
        note = textwrap.wrap(h.note, 84)
        lines += [f"  Note          {note[0]}", *[f"                {n}" for n in note[1:]]]
    for c in s.knob_changes[:20]:
        lines.append(f"  Knob change   +{c.t_s:.1f} s  {c.name} {c.old} -> {c.new}")
    if len(s.knob_changes) > 20:
        lines.append(f"  Knob change   ... {len(s.knob_changes) - 20} more")
    if s.advisor:
        steps = [a.pages_to_scan for a in s.advisor]
        last = s.advisor[-1]
        lines.append(
            f"  Advisor       set pages_to_scan {len(steps)} times ({min(steps)}..{max(steps)}); "
            f"last {last.pages_to_scan} at +{last.t_s:.1f} s (scan time {last.scan_time_s} s, "
            f"{last.cpu_percent}% CPU)"
        )
    return lines


def global_lines(s: TraceSummary) -> list[str]:
    """Savings, cost and churn of the whole host."""
    acc, first, last = s.acc, s.first, s.last
    if first is None or last is None:
        return ["", "No interval could be read: nothing to report."]
    totals = acc.totals.values()
    merges = sum(t.merges for t in totals)
    cows = sum(t.cows for t in totals)
    explicit = sum(n for t in totals for k, n in t.unmerged.items() if k != UnmergeKind.KSMD_UNDO)
    scanned = sum(t.scanned for t in totals)
    fails: dict[int, int] = {}
    for t in totals:
        for err, n in t.merge_failures.items():
            fails[err] = fails.get(err, 0) + n
    cpu_ns = max(0, last.ksmd_cpu_ns - first.ksmd_cpu_ns) if first.ksmd_cpu_ns >= 0 else 0
    scans = acc.full_scan_times()
    scan_txt = (
        f"; a traced full scan took {fmt_seconds(sum(w for w, _ in scans) / len(scans))} and "
        f"{fmt_seconds(sum(c for _, c in scans) / len(scans))} of CPU on average"
        if scans
        else ""
    )
    peak_t, peak = s.peak_saved
    led = acc.ledger_total
    lifetimes = [t.lifetimes for t in totals]
    known = sum(h.count for h in lifetimes)
    unknown = sum(h.unknown for h in lifetimes)
    fail_txt = ", ".join(f"{_ERRNO.get(e, e)} {n}" for e, n in sorted(fails.items()))
    return [
        "",
        "Savings",
        f"  Saved         {fmt_mib(first.saved_bytes)} at the start, {fmt_mib(last.saved_bytes)} "
        f"at the end, peak {fmt_mib(peak)} at +{peak_t:.0f} s",
        f"  Profit        general_profit {fmt_mib(last.counter('general_profit'))} at the end "
        f"(savings minus KSM's own metadata)",
        "",
        "Cost",
        f"  ksmd CPU      {cpu_ns / 1e9:.2f} s "
        f"({cpu_ns / 1e7 / max(s.duration_s, 1e-9):.1f}% of one core); "
        f"{format_efficiency(last.saved_bytes, cpu_ns, s.duration_s)}",
        f"  Scanning      {fmt_count(scanned)} pages traced, "
        f"{last.counter('full_scans') - first.counter('full_scans')} full scans by the kernel's "
        f"count ({acc.full_scans_total} traced){scan_txt}",
        "",
        "Churn",
        f"  Merged        {fmt_count(merges)} pages"
        + (f"; failed attempts: {fail_txt}" if fails else ""),
        f"  Broken again  {fmt_count(cows)} by copy-on-write ("
        + (f"{cows / merges:.2f} per merge" if merges else "no merges")
        + f"), {fmt_count(explicit)} by explicit unmerges, "
        f"{fmt_count(led.ksmd_undo)} undone by ksmd",
        f"  cow_ksm       +{led.cow_ksm_delta} = {led.write_cows} write COW + {led.explicit} "
        f"explicit + {led.ksmd_undo} ksmd undo + {led.unattributed} unattributed"
        + (" (events the damaged file lost are in it)" if s.unreadable_events else ""),
        f"  Lifetimes     {known} copy-on-writes with a known merge time, {unknown} without",
        "",
        "Lost events",
        "  "
        + (
            ", ".join(f"{kind_name(k)} {n}" for k, n in sorted(s.lost.items()) if n)
            or (
                "none recorded, but the counts of some intervals are damaged"
                if s.lost_unknown
                else "none: the kernel side delivered every event"
            )
        ),
    ] + _damage_lines(s)


def process_rows(s: TraceSummary) -> list[ProcessSummary]:
    """Every process with traced activity or KSM pages at the end, by saving then merges."""
    rows = process_summaries(s.acc)
    last = s.last
    if last is not None:
        seen = {r.totals.pid for r in rows}
        for pid, st in last.processes.items():
            if pid not in seen and (st.merging_pages or st.zero_pages):
                saved = share_of_savings(last, st.merging_pages, st.zero_pages)
                rows.append(ProcessSummary(ProcessTotals(pid), s.identity(pid), saved, 0.0))
    rows.sort(key=lambda p: (-p.saved_bytes, -p.totals.merges, p.totals.pid))
    return rows


def process_lines(s: TraceSummary, top: int = 20) -> list[str]:
    """One line per process: who saved what, at what CPU cost, with what churn."""
    rows = process_rows(s)
    peaks = {pid: max(col) for pid, col in s.series.process_saved.items()}
    lines = [
        "",
        "Per process (saved at the end of the trace; share of ksmd's traced scan CPU)",
        f"  {'PID':>7} {'NAME':<16} {'SAVED':>9} {'PEAK':>9} {'MERGED':>7} {'COW':>7} "
        f"{'CHURN':>5} {'LIFE50':>6} {'LIFE90':>6} {'SCANNED':>8} {'CPU':>7} {'SHARE':>5}",
    ]
    for p in rows[:top]:
        t = p.totals
        churn = f"{t.cows / t.merges:.2f}" if t.merges else "-"
        lines.append(
            f"  {t.pid:>7} {p.name[:16]:<16} {fmt_mib(p.saved_bytes):>9} "
            f"{fmt_mib(peaks.get(t.pid, 0)):>9} {fmt_count(t.merges):>7} {fmt_count(t.cows):>7} "
            f"{churn:>5} {fmt_seconds(t.lifetimes.quantile(0.5)):>6} "
            f"{fmt_seconds(t.lifetimes.quantile(0.9)):>6} {fmt_count(t.scanned):>8} "
            f"{t.scan_cpu_ns / 1e9:>6.2f}s {p.cpu_share:>5.0%}"
        )
    if len(rows) > top:
        lines.append(f"  ... {len(rows) - top} more processes")
    if not rows:
        lines.append("  (no process had KSM activity)")
    return lines


def format_report(s: TraceSummary, top: int = 20) -> str:
    """The whole text report (deterministic: only recorded times appear in it)."""
    lines = provenance_lines(s) + global_lines(s) + process_lines(s, top)
    if s.warnings:
        lines += ["", "Damage"] + [f"  {w}" for w in s.warnings]
    return "\n".join(lines)


def _damage_lines(s: TraceSummary) -> list[str]:
    """What a damaged file leaves unknown, below the lost-event line."""
    lines = []
    if s.lost_unknown:
        lines.append(
            f"  lost-event counts unreadable for {s.lost_unknown} intervals (damaged file)"
        )
    if s.unreadable_events:
        lines.append(f"  {s.unreadable_events} recorded events unreadable (damaged file)")
    return lines
