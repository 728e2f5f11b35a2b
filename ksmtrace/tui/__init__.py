"""The terminal UI of ``ksmtrace top`` (textual): draws the snapshots of ``ksmtrace.top``."""

from __future__ import annotations

from ksmtrace.tui.app import TopApp

__all__ = ["TopApp"]
