"""The header: KSM state and knobs, what it saves, what ksmd costs, scans, COW rate, lost events."""

from __future__ import annotations

import time

from rich.text import Text

from ksmtrace.render.units import fmt_bytes, fmt_count, fmt_seconds
from ksmtrace.top.model import HostFigures, TopSnapshot
from ksmtrace.tui.widgets.text import TextBlock

_RUN = {0: ("off", "bold red"), 1: ("on", "bold green"), 2: ("unmerging", "bold red")}


def _knobs_line(h: HostFigures) -> Text:
    word, style = _RUN.get(h.run, ("?", "bold"))
    k = h.knobs
    line = Text.assemble(("KSM ", "bold"), (word, style))
    line.append(f"  scan {k.get('pages_to_scan', '?')} pages/{k.get('sleep_millisecs', '?')}ms")
    for name, short in (
        ("smart_scan", "smart"),
        ("use_zero_pages", "zero"),
        ("max_page_sharing", "max_share"),
    ):
        if name in k:
            line.append(f"  {short}={k[name]}")
    if k.get("merge_across_nodes") == 0:
        line.append("  numa_merge=0")
    if k.get("advisor_mode") not in (None, "none"):
        line.append(f"  advisor={k['advisor_mode']}")
    return line


def _savings_line(h: HostFigures) -> Text:
    line = Text.assemble("saved ", (fmt_bytes(h.saved_bytes), "bold green"))
    line.append(f" (zero pages {fmt_bytes(h.zero_page_bytes)})  profit ")
    line.append(fmt_bytes(h.general_profit), "bold" if h.general_profit >= 0 else "bold red")
    cpu = "-" if h.ksmd_cpu_pct is None else f"{h.ksmd_cpu_pct:.1f}%"
    line.append("  ksmd ")
    line.append(cpu, "bold")
    line.append(f" CPU  scan {fmt_count(h.scan_pages_per_s)} pages/s")
    return line


def _activity_line(h: HostFigures, window_s: float) -> Text:
    last = ""
    if h.last_scan_s is not None:
        last = f" (last {fmt_seconds(h.last_scan_s)}, {fmt_seconds(h.last_scan_cpu_s)} CPU)"
    line = Text(f"full scans {h.full_scans}{last}  merges {fmt_count(h.merges_per_s)}/s  COW ")
    line.append(f"{fmt_count(h.cow_per_s)}/s", "bold yellow" if h.cow_per_s else "")
    line.append("  lost ")
    lost = f"{h.lost_window} ({h.lost_total} total)" if h.lost_total else "0"
    line.append(lost, "bold red" if h.lost_total else "")
    line.append(f"  {window_s:.0f}s avg", "dim")
    return line


def _clock(snap: TopSnapshot) -> str:
    wall = ""
    if snap.host.wall_ns:
        wall = time.strftime(" %H:%M:%S", time.localtime(snap.host.wall_ns / 1e9))
    return f"t {snap.t_s:.0f}s{wall}"


class KsmHeader(TextBlock):
    """Three lines of host figures from the latest snapshot."""

    def show(self, snap: TopSnapshot) -> None:
        """Draw the header of ``snap``."""
        h = snap.host
        first = _knobs_line(h)
        clock = _clock(snap)
        pad = max(2, self.size.width - 2 - first.cell_len - len(clock))
        first.append(" " * pad + clock, "dim")
        lines = [first, _savings_line(h), _activity_line(h, snap.window_s)]
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        self.set_text(Text("\n", no_wrap=True).join(lines))
