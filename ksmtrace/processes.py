"""Ending child processes by pid: SIGTERM, then SIGKILL after a grace period, always reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any


def end_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """End ``proc`` (by its pid, never by name) and reap it; harmless if it already ended."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
