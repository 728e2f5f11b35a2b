"""The help screen: every key, every column and what the groupings mean."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ksmtrace.top.columns import COLUMNS

#: Keys handled by the table itself, listed with the app's own bindings.
TABLE_KEYS = (
    ("up / down", "select the previous / next row"),
    ("page up / page down", "move the selection a page"),
    ("home / end", "first / last row"),
)

_KEY_NAMES = {
    "question_mark": "?",
    "slash": "/",
    "plus": "+",
    "minus": "-",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "space": "space",
    "escape": "esc",
    "ctrl+c": "ctrl+c",
}


def key_label(keys: str) -> str:
    """'question_mark,f1' -> '? / f1'."""
    return " / ".join(_KEY_NAMES.get(k, k) for k in keys.split(","))


def help_text(bindings: Iterable[Binding]) -> Text:
    """The whole help page for the app's bindings."""
    out = Text("ksmtrace top: keys\n", "bold")
    rows = [(key_label(b.key), b.description) for b in bindings if "sort_by" not in b.action]
    rows += [("1-9", "sort by that column (again: reverse)"), *TABLE_KEYS]
    width = max(len(k) for k, _ in rows)
    for key, what in rows:
        out.append(f"  {key:<{width}}  ", "bold cyan")
        out.append(f"{what}\n")
    out.append("\nColumns (key, title, meaning)\n", "bold")
    for i, col in enumerate(COLUMNS, 1):
        out.append(f"  {i} {col.title:<8}", "bold cyan")
        out.append(f" {col.help}\n")
    out.append("\nGroupings (g)\n", "bold")
    out.append(
        "  process  one row per process, comm[pid]\n"
        "  vm       QEMU / Firecracker / Cloud Hypervisor guests by name; other processes "
        "under (no vm)\n"
        "  cgroup   container, pod, systemd unit or cgroup path\n"
    )
    out.append(
        "\nRates are averages over the last few seconds (shown in the header). Everything is "
        "read-only: top changes no KSM knob.\n",
        "dim",
    )
    return out


class HelpScreen(ModalScreen[None]):
    """Lists every key; any of escape, q or ? closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close help"),
        Binding("down,j", "scroll('down')", "Scroll down", show=False),
        Binding("up,k", "scroll('up')", "Scroll up", show=False),
    ]

    def __init__(self, bindings: Iterable[Binding]) -> None:
        super().__init__()
        self._text = help_text(bindings)

    def compose(self) -> ComposeResult:
        """The help text in a scrollable box."""
        with VerticalScroll(id="help-box"):
            yield Static(self._text)
            yield Static(Text("esc, q or ? closes this page", "dim"))

    def action_scroll(self, direction: str) -> None:
        """Scroll the help text by a line."""
        box = self.query_one("#help-box", VerticalScroll)
        box.scroll_relative(y=1 if direction == "down" else -1, animate=False)

    async def action_dismiss(self, result: None = None) -> None:
        """Close the help screen."""
        self.dismiss(result)
