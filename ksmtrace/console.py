"""One line for the user on standard error, flushed at once (progress and notices)."""

from __future__ import annotations

import sys


def say(text: str) -> None:
    """Write ``text`` and a newline to stderr now (not when the buffer fills)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
