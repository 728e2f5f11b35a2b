"""ksmtrace: what KSM does for you, what it costs, and what would happen if you changed it."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
