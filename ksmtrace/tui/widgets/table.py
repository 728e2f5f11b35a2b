"""The process / VM / cgroup table: a fixed header, one line per row, a row cursor.

Drawn with textual's line API instead of DataTable: each row is formatted once per snapshot
into one string, and drawing a line is a slice of it with a style. DataTable renders every
cell through Rich, about 0.3 ms a cell, which put a full redraw of 40 rows at 50 ms and
pushed key-to-redraw past 100 ms whenever a snapshot arrived with the key
(``python -m benchmarks tui_latency``).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ksmtrace.top.columns import COLUMNS, Column
from ksmtrace.top.model import Row

#: Narrowest NAME column; it grows with the terminal.
NAME_MIN = 14


def _width(col: Column) -> int:
    # One leading space separates columns; one more cell for the sort arrow.
    return max(col.width, len(col.title) + 1) + 1


FIXED_WIDTH = sum(_width(c) for c in COLUMNS[1:])


def format_line(cells: Sequence[str], name_width: int) -> str:
    """A table line: NAME left-aligned (cut to fit), every other column right-aligned."""
    name = " " + cells[0]
    if len(name) > name_width:
        name = name[: name_width - 1] + "…"
    rest = "".join(c.rjust(_width(col)) for c, col in zip(cells[1:], COLUMNS[1:], strict=True))
    return name.ljust(name_width) + rest


class ProcessTable(ScrollView, can_focus=True):
    """Rows of a snapshot under a fixed header; up/down/page/home/end move the cursor.

    Left and right move the time cursor of the app (the columns always fit).
    """

    COMPONENT_CLASSES = {"table--header", "table--cursor", "table--even", "table--gone"}
    DEFAULT_CSS = """
    ProcessTable {
        background: $surface;
        & > .table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .table--even { background: $surface-lighten-1 50%; }
        & > .table--gone { color: $text-muted; }
    }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Previous row", show=False),
        Binding("down", "cursor(1)", "Next row", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "First row", show=False),
        Binding("end", "cursor_to(-1)", "Last row", show=False),
        Binding("left", "app.seek(-5)", "Back 5 s", show=False),
        Binding("right", "app.seek(5)", "Forward 5 s", show=False),
    ]

    cursor = reactive(0, always_update=True)

    class RowHighlighted(Message):
        """The cursor is on the row keyed ``key``."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class HeaderClicked(Message):
        """A column title was clicked."""

        def __init__(self, column_id: str) -> None:
            super().__init__()
            self.column_id = column_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.keys: list[str] = []
        self.header = ""
        self._lines: list[str] = []
        self._gone: list[bool] = []
        self._shown_key = ""
        self._shown: tuple[Sequence[Row], str, bool] | None = None

    # -- content ------------------------------------------------------------------------------

    def name_width(self) -> int:
        """Width of the NAME column for the current size."""
        return max(NAME_MIN, self.size.width - FIXED_WIDTH - 1)

    def show_rows(self, rows: Sequence[Row], sort_id: str, descending: bool, keep: str) -> None:
        """Show ``rows`` in order, keeping the cursor on the row keyed ``keep`` if present."""
        self._shown = (rows, sort_id, descending)
        width = self.name_width()
        arrow = "▼" if descending else "▲"
        titles = [c.title + (arrow if c.id == sort_id else "") for c in COLUMNS]
        self.header = format_line(titles, width)
        self._lines = [format_line([c.text(r) for c in COLUMNS], width) for r in rows]
        self._gone = [not r.alive for r in rows]
        self.keys = [r.key for r in rows]
        self.virtual_size = Size(len(self.header), len(rows) + 1)
        index = self.keys.index(keep) if keep in self.keys else min(self.cursor, len(rows) - 1)
        self.cursor = max(0, index)
        self.refresh()

    def on_resize(self) -> None:
        """Fit the NAME column to the new width."""
        if self._shown is not None:
            self.show_rows(*self._shown, keep=self.cursor_key)

    @property
    def row_count(self) -> int:
        """Rows in the table."""
        return len(self.keys)

    @property
    def cursor_key(self) -> str:
        """Key of the row under the cursor ("" when empty)."""
        return self.keys[self.cursor] if self.keys else ""

    # -- cursor ---------------------------------------------------------------------------------

    def watch_cursor(self, cursor: int) -> None:
        """Keep the cursor row visible and tell the app which row it is on."""
        body = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if cursor < top:
            self.scroll_to(y=cursor, animate=False)
        elif cursor >= top + body:
            self.scroll_to(y=cursor - body + 1, animate=False)
        self.refresh()
        if self.cursor_key and self.cursor_key != self._shown_key:
            self._shown_key = self.cursor_key
            self.post_message(self.RowHighlighted(self.cursor_key))

    def action_cursor(self, step: int) -> None:
        """Move the cursor by ``step`` rows."""
        self.cursor = max(0, min(self.row_count - 1, self.cursor + step))

    def action_page(self, direction: int) -> None:
        """Move the cursor by a screenful."""
        self.action_cursor(direction * max(1, self.size.height - 2))

    def action_cursor_to(self, index: int) -> None:
        """Put the cursor on row ``index`` (-1: the last)."""
        self.cursor = max(0, self.row_count - 1 if index < 0 else index)

    def on_click(self, event: events.Click) -> None:
        """A click on a row selects it; on the header, sorts by that column."""
        if event.y == 0:
            x = event.x + self.scroll_offset.x
            edges = [self.name_width()]
            for col in COLUMNS[1:]:
                edges.append(edges[-1] + _width(col))
            index = next((i for i, e in enumerate(edges) if x < e), len(COLUMNS) - 1)
            self.post_message(self.HeaderClicked(COLUMNS[index].id))
        elif self.keys:
            self.cursor = min(self.row_count - 1, event.y - 1 + self.scroll_offset.y)

    # -- drawing --------------------------------------------------------------------------------

    def _style(self, index: int) -> Style:
        base = self.rich_style
        if index == self.cursor:
            return base + self.get_component_rich_style("table--cursor")
        style = base + self.get_component_rich_style("table--even") if index % 2 else base
        if self._gone[index]:
            style += self.get_component_rich_style("table--gone", partial=True)
        return style

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or a row below the scroll position."""
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            text = self.header
            style = self.rich_style + self.get_component_rich_style("table--header")
        else:
            index = y - 1 + scroll_y
            if index >= len(self._lines):
                return Strip([Segment(" " * width, self.rich_style)], width)
            text, style = self._lines[index], self._style(index)
        text = text[scroll_x : scroll_x + width].ljust(width)
        return Strip([Segment(text, style)], width)
