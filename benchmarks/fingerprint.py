"""Page fingerprinting speed: seconds to fingerprint 1 GiB of one process (ksmtrace snapshot).

A child process maps 1 GiB of anonymous memory (no THP), fills it with 4 KiB pages of
distinct content plus some zero pages, and marks it mergeable; the Fingerprinter then
reads pagemap, kpageflags and /proc/<pid>/mem and hashes every page (xxh3_64, salted).
Needs root (kpageflags). The best of three runs is reported, with the median.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from ksmtrace.fingerprint.hashing import load_seed
from ksmtrace.fingerprint.reader import Fingerprinter

CHILD = """
import mmap, sys, numpy as np
m = mmap.mmap(-1, 1 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
a = np.frombuffer(m, dtype=np.uint64)
a[:] = np.arange(a.size, dtype=np.uint64) // 512
a[: 512 * 4096] = 0
m.madvise(mmap.MADV_MERGEABLE)
print("ready", flush=True)
sys.stdin.read()
"""


def run() -> list[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        child.stdout.readline()  # type: ignore[union-attr]
        times = []
        with Fingerprinter(load_seed(None)) as fp:
            for _ in range(3):
                t = time.perf_counter()
                pages = fp.process(child.pid)
                times.append(time.perf_counter() - t)
        assert pages is not None
    finally:
        child.kill()
        child.wait()
    gib = pages.pages * 4096 / 2**30
    best, median = min(times), statistics.median(times)
    return [
        f"{pages.pages:,} pages ({gib:.2f} GiB) fingerprinted in {best:.3f} s best, "
        f"{median:.3f} s median ({gib / best:.2f} GiB/s best)",
        f"zero pages flagged: {int((pages.flags & 1).sum()):,} (expected 4,096)",
    ]
