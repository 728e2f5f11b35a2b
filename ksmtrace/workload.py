"""A mergeable-memory workload process with known duplicate content, driven by line commands.

Run as ``python -m ksmtrace.workload --name web --pages 4096 ...``. The process maps an
anonymous region, fills it (shared content that other workers with the same ``--seed``
also hold, zero pages and unique pages), marks it mergeable, prints ``ready <pid> <addr>``
and then obeys one command per line on stdin, answering one line each:

  info                      -> "info <pid> <addr> <pages> <shared_pages>"
  write START COUNT         -> write one byte into each page (copy-on-write if merged)
  restore START COUNT       -> put the original content back (the pages can merge again)
  unmerge START COUNT       -> madvise(MADV_UNMERGEABLE) on those pages
  merge_any on|off          -> prctl(PR_SET_MEMORY_MERGE, 1|0)
  fork WRITES               -> fork a child that writes into the first WRITES shared pages
                               and then waits; answers "forked <child pid>"
  churn RATE                -> from now on, rewrite RATE shared pages per second in the
                               background (and restore them a second later)
  exit                      -> exit now

It exits by itself when its parent dies (PR_SET_PDEATHSIG) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import signal
import sys
import threading
import time

import numpy as np

PAGE = mmap.PAGESIZE
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
PR_SET_MEMORY_MERGE = 67

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg2: int | bytes) -> int:
    return int(_libc.prctl(option, arg2, 0, 0, 0))


class Region:
    """The workload's memory: shared pages first, then zero pages, then unique pages."""

    def __init__(self, pages: int, shared: int, zero: int, distinct: int, seed: int) -> None:
        self.pages, self.shared, self.zero = pages, shared, zero
        self.map = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.map.madvise(mmap.MADV_NOHUGEPAGE)
        self.view = np.frombuffer(self.map, dtype=np.uint8).reshape(pages, PAGE)
        rng = np.random.default_rng(seed)
        self.templates = rng.integers(1, 256, size=(max(1, distinct), PAGE), dtype=np.uint8)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        self.fill(0, pages)

    def original(self, start: int, count: int) -> np.ndarray:
        """The content pages [start, start+count) had when the region was filled."""
        idx = np.arange(start, start + count)
        out = np.zeros((count, PAGE), dtype=np.uint8)
        sh = idx < self.shared
        out[sh] = self.templates[idx[sh] % len(self.templates)]
        uniq = idx >= self.shared + self.zero
        if uniq.any():
            out[uniq] = self.templates[0]
            out[uniq, :8] = idx[uniq, None].astype(">u8").view(np.uint8).reshape(-1, 8)
            out[uniq, 8:12] = np.frombuffer(os.getpid().to_bytes(4, "big"), dtype=np.uint8)
        return out

    def fill(self, start: int, count: int) -> None:
        """Write the original content (every page gets touched, zero pages included)."""
        step = 1024
        for s in range(start, start + count, step):
            n = min(step, start + count - s)
            self.view[s : s + n] = self.original(s, n)

    def write(self, start: int, count: int, value: int) -> None:
        """Change one byte of each page (a write fault per page)."""
        self.view[start : start + count, 100] = value & 0xFF or 1

    def madvise(self, start: int, count: int, advice: int) -> None:
        """Apply madvise advice to a page range of the region."""
        self.map.madvise(advice, start * PAGE, count * PAGE)


def _churn(region: Region, rate: float, stop: threading.Event) -> None:
    rng = np.random.default_rng()
    pending: list[tuple[float, np.ndarray]] = []
    while not stop.wait(0.05):
        now = time.monotonic()
        n = rng.poisson(rate * 0.05)
        if n and region.shared:
            pages = rng.integers(0, region.shared, size=n)
            region.view[pages, 200] ^= 0x5A
            pending.append((now + 1.0, pages))
        while pending and pending[0][0] <= now:
            _, pages = pending.pop(0)
            region.view[pages, 200] = region.templates[pages % len(region.templates), 200]


def _serve(region: Region, args: argparse.Namespace) -> None:
    stop = threading.Event()
    children: list[int] = []
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd, rest = parts[0], [int(p) if p.isdigit() else p for p in parts[1:]]
        try:
            reply = _command(region, cmd, rest, stop, children)
        except (ValueError, IndexError, OSError) as exc:
            reply = f"error {exc}"
        print(reply, flush=True)
        if cmd == "exit":
            break
    stop.set()
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
        except OSError:
            pass


def _command(
    region: Region, cmd: str, rest: list[int | str], stop: threading.Event, children: list[int]
) -> str:
    if cmd == "info":
        return f"info {os.getpid()} {region.addr:#x} {region.pages} {region.shared}"
    if cmd == "write":
        start, count = int(rest[0]), int(rest[1])
        region.write(start, count, int(rest[2]) if len(rest) > 2 else 0x77)
        return f"ok write {count}"
    if cmd == "restore":
        start, count = int(rest[0]), int(rest[1])
        region.view[start : start + count] = region.original(start, count)
        return f"ok restore {count}"
    if cmd == "unmerge":
        start, count = int(rest[0]), int(rest[1])
        region.madvise(start, count, mmap.MADV_UNMERGEABLE)
        return f"ok unmerge {count}"
    if cmd == "merge_any":
        on = 1 if rest and rest[0] == "on" else 0
        if _prctl(PR_SET_MEMORY_MERGE, on) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return f"ok merge_any {on}"
    if cmd == "fork":
        writes = int(rest[0]) if rest else 0
        pid = os.fork()
        if pid == 0:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            time.sleep(float(rest[1]) if len(rest) > 1 else 0.0)
            region.write(0, writes, 0x33)
            signal.pause()
            os._exit(0)
        children.append(pid)
        return f"forked {pid}"
    if cmd == "churn":
        threading.Thread(target=_churn, args=(region, float(rest[0]), stop), daemon=True).start()
        return f"ok churn {rest[0]}"
    if cmd == "exit":
        return "bye"
    return f"error unknown command {cmd}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of one workload process."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="ksm-worker", help="process name (comm)")
    p.add_argument("--pages", type=int, default=4096, help="size of the region in pages")
    p.add_argument("--shared", type=float, default=0.5, help="fraction of shared pages")
    p.add_argument("--zero", type=float, default=0.0, help="fraction of zero-filled pages")
    p.add_argument("--distinct", type=int, default=64, help="distinct shared page contents")
    p.add_argument("--seed", type=int, default=1, help="workers with one seed share content")
    p.add_argument("--prctl", action="store_true", help="PR_SET_MEMORY_MERGE, not madvise")
    p.add_argument("--churn", type=float, default=0.0, help="shared-page rewrites per second")
    args = p.parse_args(argv)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_NAME, args.name.encode()[:15])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    shared = int(args.pages * args.shared)
    zero = int(args.pages * args.zero)
    region = Region(args.pages, shared, zero, args.distinct, args.seed)
    if args.prctl:
        if _prctl(PR_SET_MEMORY_MERGE, 1) != 0:
            print(f"error prctl: {os.strerror(ctypes.get_errno())}", flush=True)
            return 1
    else:
        region.madvise(0, args.pages, mmap.MADV_MERGEABLE)
    stop = threading.Event()
    if args.churn:
        threading.Thread(target=_churn, args=(region, args.churn, stop), daemon=True).start()
    print(f"ready {os.getpid()} {region.addr:#x}", flush=True)
    _serve(region, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
