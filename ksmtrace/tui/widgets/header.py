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


#: A header part: (drop order, text, whether it hangs on the part before with one space).
_Part = tuple[int, Text, bool]


def _fit(parts: list[_Part], width: int) -> Text:
    """Join ``parts``, leaving out the highest-numbered ones until the line fits ``width``.

    Parts numbered 0 always stay; what still overflows is cut with an ellipsis.
    """
    kept = list(parts)

    def joined() -> Text:
        line = Text()
        for i, (_, text, attached) in enumerate(kept):
            line.append("" if i == 0 else " " if attached else "  ")
            line.append_text(text)
        return line

    line = joined()
    while line.cell_len > width and max(p[0] for p in kept) > 0:
        kept.remove(max(kept, key=lambda p: p[0]))
        line = joined()
    return line


def _savings_line(h: HostFigures, width: int) -> Text:
    saved = Text.assemble("saved ", (fmt_bytes(h.saved_bytes), "bold green"))
    zero = Text(f"(zero pages {fmt_bytes(h.zero_page_bytes)})")
    profit = Text.assemble(
        "profit ",
        (fmt_bytes(h.general_profit), "bold" if h.general_profit >= 0 else "bold red"),
    )
    cpu = "-" if h.ksmd_cpu_pct is None else f"{h.ksmd_cpu_pct:.1f}%"
    ksmd = Text.assemble("ksmd ", (cpu, "bold"), " CPU")
    scan = Text(f"scan {fmt_count(h.scan_pages_per_s)} pages/s")
    # Left out first when the terminal is narrow: the zero-page split, then the scan rate.
    parts = [(0, saved, False), (3, zero, True), (1, profit, False), (0, ksmd, False)]
    return _fit([*parts, (2, scan, False)], width)


def _activity_line(h: HostFigures, window_s: float, width: int) -> Text:
    scans = Text(f"full scans {h.full_scans}")
    last = Text("")
    if h.last_scan_s is not None:
        last = Text(f"(last {fmt_seconds(h.last_scan_s)}, {fmt_seconds(h.last_scan_cpu_s)} CPU)")
    merges = Text(f"merges {fmt_count(h.merges_per_s)}/s")
    cow = Text.assemble(
        "COW ", (f"{fmt_count(h.cow_per_s)}/s", "bold yellow" if h.cow_per_s else "")
    )
    lost_text = f"{h.lost_window} ({h.lost_total} total)" if h.lost_total else "0"
    lost = Text.assemble("lost ", (lost_text, "bold red" if h.lost_total else ""))
    avg = Text(f"{window_s:.0f}s avg", "dim")
    # Rates and lost events matter more than when the last full scan ended.
    parts = [(0, scans, False), (2, last, True), (0, merges, False), (0, cow, False)]
    return _fit([p for p in [*parts, (0, lost, False), (1, avg, False)] if p[1].plain], width)


def _clock(snap: TopSnapshot) -> str:
    wall = ""
    if snap.host.wall_ns:
        wall = time.strftime(" %H:%M:%S", time.localtime(snap.host.wall_ns / 1e9))
    return f"t {snap.t_s:.0f}s{wall}"


class KsmHeader(TextBlock):
    """Three lines of host figures from the latest snapshot."""

    _snap: TopSnapshot | None = None

    def on_resize(self) -> None:
        """Fit the lines to the new width."""
        if self._snap is not None:
            self.show(self._snap)

    def show(self, snap: TopSnapshot) -> None:
        """Draw the header of ``snap``."""
        self._snap = snap
        h = snap.host
        first = _knobs_line(h)
        clock = _clock(snap)
        pad = max(2, self.size.width - 2 - first.cell_len - len(clock))
        first.append(" " * pad + clock, "dim")
        width = self.size.width
        lines = [first, _savings_line(h, width), _activity_line(h, snap.window_s, width)]
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        self.set_text(Text("\n", no_wrap=True).join(lines))
