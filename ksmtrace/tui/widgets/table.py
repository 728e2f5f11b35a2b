"""The process / VM / cgroup table: one row per group, the sorted column marked in its title."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from ksmtrace.top.columns import COLUMNS, Column
from ksmtrace.top.model import Row

#: Narrowest NAME column; it grows with the terminal.
NAME_MIN = 14


def _width(col: Column) -> int:
    # One leading space separates columns; one more cell for the sort arrow.
    return max(col.width, len(col.title) + 1) + 1


FIXED_WIDTH = sum(_width(c) for c in COLUMNS[1:])


def _cell(col: Column, row: Row) -> Text:
    if col.id == "name":
        return Text(" " + col.text(row), style="" if row.alive else "dim", no_wrap=True)
    return Text(col.text(row), justify="right", no_wrap=True)


class ProcessTable(DataTable[Text]):
    """A DataTable that redraws only the cells that changed between snapshots.

    Left and right move the time cursor (the columns always fit, so they need no scrolling).
    """

    BINDINGS = [
        Binding("left", "app.seek(-5)", "Back 5 s", show=False),
        Binding("right", "app.seek(5)", "Forward 5 s", show=False),
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last row", show=False),
    ]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, cell_padding=0, **kwargs)  # type: ignore[arg-type]
        self._keys: list[str] = []
        self._cells: dict[str, list[str]] = {}
        self._layout: tuple[int, str, bool] | None = None

    def action_first_row(self) -> None:
        """Select the first row."""
        self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        """Select the last row."""
        self.move_cursor(row=max(0, self.row_count - 1), animate=False)

    def name_width(self) -> int:
        """Width of the NAME column for the current size."""
        return max(NAME_MIN, self.size.width - FIXED_WIDTH - 2)

    def _set_columns(self, sort_id: str, descending: bool) -> None:
        layout = (self.name_width(), sort_id, descending)
        if layout == self._layout:
            return
        self._layout = layout
        self.clear(columns=True)
        self._keys, self._cells = [], {}
        arrow = "▼" if descending else "▲"
        for col in COLUMNS:
            title = col.title + (arrow if col.id == sort_id else "")
            width = layout[0] if col.id == "name" else _width(col)
            label = Text(" " + title) if col.id == "name" else Text(title, justify="right")
            self.add_column(label, width=width, key=col.id)

    def show_rows(self, rows: Sequence[Row], sort_id: str, descending: bool, keep: str) -> None:
        """Show ``rows`` in order, keeping the cursor on the row keyed ``keep`` if present."""
        self._set_columns(sort_id, descending)
        keys = [r.key for r in rows]
        if keys == self._keys:
            self._update(rows)
            return
        self.clear()
        self._cells = {}
        for r in rows:
            cells = [_cell(c, r) for c in COLUMNS]
            self._cells[r.key] = [c.plain for c in cells]
            self.add_row(*cells, key=r.key)
        self._keys = keys
        if keep in keys:
            self.move_cursor(row=keys.index(keep), animate=False)

    def _update(self, rows: Sequence[Row]) -> None:
        for r in rows:
            old = self._cells[r.key]
            for i, col in enumerate(COLUMNS):
                cell = _cell(col, r)
                if cell.plain != old[i]:
                    old[i] = cell.plain
                    self.update_cell(r.key, col.id, cell)
