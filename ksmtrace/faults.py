"""Failure injection for tests of the error paths that a healthy host cannot produce on demand.

``KSMTRACE_INJECT`` holds a comma-separated list of fault names: ``not-root`` (behave as a
non-root user) and ``bpf-refused`` (the kernel rejects the BPF program).
"""

from __future__ import annotations

import os

ENV = "KSMTRACE_INJECT"


def injected(name: str) -> bool:
    """Whether the fault ``name`` is injected in this process."""
    return name in {f.strip() for f in os.environ.get(ENV, "").split(",") if f.strip()}


def effective_uid() -> int:
    """``os.geteuid()``, or 1000 when the ``not-root`` fault is injected."""
    return 1000 if injected("not-root") else os.geteuid()
