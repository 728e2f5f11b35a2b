"""Widgets of the ``ksmtrace top`` screen."""

from __future__ import annotations

__all__ = ["detail", "findings", "header", "table", "timeline"]
