"""The host diagnosis: a short panel above the table, or the whole body when the table is empty."""

from __future__ import annotations

from collections.abc import Sequence

from ksmtrace.top.diagnosis import Finding
from ksmtrace.tui.detail_text import findings_text
from ksmtrace.tui.widgets.text import TextBlock


class FindingsPanel(TextBlock):
    """Titles of the host findings (hidden when there are none)."""

    def show(self, findings: Sequence[Finding]) -> None:
        """Draw the finding titles; hide the panel when KSM works as it should."""
        self.display = bool(findings)
        if findings:
            self.set_text(findings_text(findings, full=False))


class EmptyNotice(TextBlock):
    """Takes the table's place when no row is left, saying why in full."""

    def show(self, findings: Sequence[Finding], filter_text: str) -> None:
        """Explain the empty table: a filter that matches nothing, or the host findings."""
        if filter_text:
            self.set_text(f"No row matches the filter {filter_text!r}. Press Escape to clear it.")
        elif findings:
            self.set_text(findings_text(findings))
        else:
            self.set_text("No process has KSM state or activity yet.")
