"""Reports on a recorded trace: the summary model, its text form, plots (PNG) and HTML."""

from __future__ import annotations

from ksmtrace.report.model import TraceSummary, summarize

__all__ = ["TraceSummary", "summarize"]
