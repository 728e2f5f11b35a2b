"""A Static that redraws only when its text changes (snapshots repeat most of what they show)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TextBlock(Static):
    """Static text whose :meth:`set_text` skips the refresh and re-layout of unchanged text."""

    def set_text(self, content: Text | str) -> None:
        """Show ``content`` unless it is what is already shown."""
        if content != self.content:
            self.update(content)
