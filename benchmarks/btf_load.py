"""Start-up cost of resolving kernel struct offsets from /sys/kernel/btf/vmlinux."""

from __future__ import annotations

import time
from pathlib import Path

from ksmtrace.kernel.btf import Btf
from ksmtrace.kernel.offsets import resolve_layout

VMLINUX = Path("/sys/kernel/btf/vmlinux")


def run() -> list[str]:
    """Median of five loads plus every offset ksmtrace resolves."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        resolve_layout(Btf.load(VMLINUX))
        times.append(time.perf_counter() - started)
    times.sort()
    return [f"BTF load + offset resolution: {times[2] * 1000:.0f} ms (median of 5)"]
