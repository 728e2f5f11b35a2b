"""The time cursor: play state, speed and where the shown snapshot lies in the recording."""

from __future__ import annotations

from rich.text import Text

from ksmtrace.top.model import TopSnapshot
from ksmtrace.tui.widgets.text import TextBlock


def _state(snap: TopSnapshot) -> Text:
    if snap.live:
        if snap.paused:
            return Text("⏸ FROZEN ", "bold yellow")
        return Text("● LIVE ", "bold green")
    if snap.at_end:
        return Text("■ END ", "bold")
    if snap.paused:
        return Text(f"⏸ PAUSED {snap.speed:g}x ", "bold yellow")
    return Text(f"▶ {snap.speed:g}x ", "bold green")


def timeline_text(snap: TopSnapshot, width: int) -> Text:
    """One line: state, a bar with the cursor (recordings of known length), time."""
    line = _state(snap)
    if snap.duration_s:
        tail = f" {snap.t_s:6.1f}s / {snap.duration_s:.1f}s"
        bar_w = max(10, width - line.cell_len - len(tail) - 1)
        pos = round(min(1.0, max(0.0, snap.t_s / snap.duration_s)) * (bar_w - 1))
        line.append("━" * pos, "green")
        line.append("●", "bold")
        line.append("─" * (bar_w - 1 - pos), "dim")
        line.append(tail)
    else:
        line.append(f"t {snap.t_s:.1f}s")
    if snap.note:
        line.append(f"  ({snap.note})", "dim")
    return line


class Timeline(TextBlock):
    """Draws :func:`timeline_text` for the shown snapshot."""

    def show(self, snap: TopSnapshot) -> None:
        """Draw the line for ``snap`` at the current width."""
        self.set_text(timeline_text(snap, self.size.width or 80))
