"""The live per-process table of ``ksmtrace trace`` (80 columns), one block per interval."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterable, Sequence

from ksmtrace.aggregate import IntervalReport, ProcessInterval
from ksmtrace.mergeability import Mergeability
from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_ratio, fmt_seconds

HEADER = (
    f"{'PID':>7} {'NAME':<13} {'SAVED':>7} {'MERGING':>7} {'MERGE/s':>7} {'COW/s':>6} "
    f"{'CHURN':>5} {'LIFE50':>6} {'SCAN/s':>6} {'CPUms/s':>7}"
)


def _name(row: ProcessInterval) -> str:
    ident = row.identity
    name = ident.vm or ident.comm
    if ident.vm is None and ident.container:
        name = f"{ident.comm}@{ident.container[:6]}"
    if not row.alive:
        name = f"{name}(exit)"
    return name[:13]


def format_row(row: ProcessInterval, seconds: float) -> str:
    """One process line of the table; "~" marks scan cost estimated (sampled mode)."""
    mark = "~" if row.scan_estimated else ""
    scan = mark + fmt_count(row.scanned / seconds)
    cpu = f"{mark}{row.scan_cpu_ns / 1e6 / seconds:.1f}"
    return (
        f"{row.pid:>7} {_name(row):<13} {fmt_bytes(row.saved_bytes):>7} "
        f"{fmt_count(row.merging_pages):>7} {fmt_count(row.merges / seconds):>7} "
        f"{fmt_count(row.cows / seconds):>6} {fmt_ratio(row.churn):>5} "
        f"{fmt_seconds(row.lifetime_p50_s):>6} {scan:>6} {cpu:>7}"
    )


def format_header(rep: IntervalReport) -> list[str]:
    """Global lines: KSM state, savings, scan progress, ksmd CPU and the cow_ksm ledger."""
    s = rep.sample
    secs = rep.seconds
    run = s.ksm.get("run", "?")
    pts, sleep = s.ksm.get("pages_to_scan", "?"), s.ksm.get("sleep_millisecs", "?")
    scans = f"full scans {s.counter('full_scans')}"
    if rep.full_scan_s is not None:
        scans += f" (last {fmt_seconds(rep.full_scan_s)}, {fmt_seconds(rep.full_scan_cpu_s)} CPU"
        if rep.full_scan_rmap_items is not None:
            scans += f", {fmt_count(rep.full_scan_rmap_items)} rmap items"
        scans += ")"
    # The sample's own read time, so a replayed trace shows when its data was read.
    stamp = time.strftime("%H:%M:%S", time.localtime(s.wall_ns / 1e9 if s.wall_ns else None))
    led = rep.ledger
    lines = [
        f"{stamp}  KSM run={run}, {pts} pages every {sleep} ms   saved "
        f"{fmt_bytes(s.saved_bytes)} (general_profit {fmt_bytes(s.counter('general_profit'))})",
        f"{'':10}{scans}  ksmd {rep.ksmd_cpu_ns / 1e7 / secs:.1f}% CPU",
        f"{'':10}cow_ksm +{led.cow_ksm_delta} = {led.write_cows} write COW + {led.explicit} "
        f"explicit + {led.ksmd_undo} undo + {led.unattributed} unattributed"
        + (f"  LOST {rep.lost} events" if rep.lost else ""),
    ]
    return lines


def format_vm_notes(verdicts: Iterable[Mergeability]) -> list[str]:
    """Note lines (wrapped at 80 columns) for the VMs KSM cannot merge, with the reason."""
    lines: list[str] = []
    for m in verdicts:
        if m.mergeable is False:
            text = f"note: VM {m.name} [{m.pid}]: guest RAM cannot merge: {'; '.join(m.reasons)}"
            lines += textwrap.wrap(text, 80, subsequent_indent="      ", break_on_hyphens=False)
    return lines


def format_interval(rep: IntervalReport, top: int = 20, notes: Sequence[str] = ()) -> str:
    """The whole block for one interval: header lines, column titles, up to ``top`` rows.

    ``notes`` (such as :func:`format_vm_notes`) are printed under the rows.
    """
    rows = [r for r in rep.processes if r.merging_pages or r.merges or r.cows or r.scanned]
    lines = [*format_header(rep), HEADER]
    lines += [format_row(r, rep.seconds) for r in rows[:top]]
    if len(rows) > top:
        lines.append(f"{'':>7} ... {len(rows) - top} more processes")
    if not rows:
        lines.append(f"{'':>7} (no process has KSM activity yet)")
    return "\n".join([*lines, *notes])
