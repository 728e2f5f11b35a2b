"""Many short-lived mergeable processes: ``python -m tests.live.forkstorm TOTAL BATCH LIFE_S``.

The parent maps a mergeable region of identical pages and forks children in batches. Each
child is registered with KSM by the fork, writes every page of the region (so it holds
private copies that ksmd can merge again), lives LIFE_S seconds and exits. The parent prints
"ready", then "batch N" after each batch has exited, and "done" at the end. Children die
with the parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import time

PAGES = 16
PR_SET_PDEATHSIG = 1


def child(region: mmap.mmap, life_s: float) -> None:
    """Copy every page of the region (same content), then wait and exit."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for page in range(PAGES):
        region[page * mmap.PAGESIZE] = 0x6B
    time.sleep(life_s)
    os._exit(0)


def main(argv: list[str]) -> int:
    """Fork TOTAL children, BATCH at a time."""
    total, batch, life_s = int(argv[0]), int(argv[1]), float(argv[2])
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    region = mmap.mmap(-1, PAGES * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.write(b"\x6b" * (PAGES * mmap.PAGESIZE))
    region.madvise(mmap.MADV_MERGEABLE)
    print("ready", flush=True)
    started = 0
    while started < total:
        kids = []
        for _ in range(min(batch, total - started)):
            pid = os.fork()
            if pid == 0:
                child(region, life_s)
            kids.append(pid)
        for pid in kids:
            os.waitpid(pid, 0)
        started += len(kids)
        print(f"batch {started}", flush=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
