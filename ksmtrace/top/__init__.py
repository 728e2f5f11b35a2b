"""The data side of ``ksmtrace top``: snapshots, the worker thread, columns and diagnosis.

Nothing here imports textual; ``ksmtrace.tui`` draws what these modules compute.
"""

from __future__ import annotations

__all__ = ["builder", "columns", "departures", "diagnosis", "feeds", "model", "worker"]
