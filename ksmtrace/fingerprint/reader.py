"""Fingerprinting one process: pagemap, kpageflags and /proc/<pid>/mem, read and hashed in turn.

Only present anonymous pages of VM_MERGEABLE regions are read (what ksmd would scan);
pages that map the shared zero page are listed unread (flag F_ZERO_PFN), page-cache and
swapped-out pages are only counted, so reading never faults anything in. A reader thread
fills buffers from /proc/<pid>/mem while the caller's thread hashes the previous one.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ksmtrace.errors import HostError
from ksmtrace.fingerprint.hashing import PAGE, hash_pages, zero_page_hash
from ksmtrace.fingerprint.maps import PAGE_SHIFT, Region, read_mergeable_regions
from ksmtrace.fingerprint.pageflags import (
    KPF_KSM,
    KPF_THP,
    KPF_ZERO_PAGE,
    PM_EXCLUSIVE,
    PM_FILE,
    PM_PFN_MASK,
    PM_PRESENT,
    PM_SWAPPED,
    bit,
    read_kpageflags,
    read_pagemap,
)

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

# Per-page flags stored in snapshots.
F_ZERO = 1  # content is all zeros
F_THP = 2  # part of a transparent huge page
F_KSM = 4  # already a KSM page (KPF_KSM)
F_EXCLUSIVE = 8  # mapped by this process only (pagemap bit 56)
F_ZERO_PFN = 16  # maps the shared zero page: never written, or a KSM zero page (not read)

#: Pages read from /proc/<pid>/mem per buffer.
CHUNK_PAGES = 2048
#: Pagemap entries read per call.
PAGEMAP_CHUNK = 1 << 18

Progress = Callable[[int], None]


@dataclass(slots=True)
class ProcessPages:
    """Fingerprints of one process at one moment.

    Pages mapping the shared zero page are listed with the zero page's fingerprint and
    F_ZERO_PFN, without being read.

    Attributes:
        pid: The process.
        vpn: Virtual page numbers of the fingerprinted pages, ascending.
        hash: Salted xxh3_64 of each page.
        flags: F_* bits of each page.
        zero_pfn_pages: Present pages mapping the shared zero page (not scanned by ksmd).
        swapped_pages: Pages of mergeable regions that are swapped out.
        file_pages: Page-cache pages in mergeable private file mappings (not scanned).
        mergeable_pages: Pages spanned by the mergeable regions.
        t_start_ns, t_end_ns: CLOCK_MONOTONIC at the start and end of the read.
    """

    pid: int
    vpn: U64
    hash: U64
    flags: U8
    zero_pfn_pages: int = 0
    swapped_pages: int = 0
    file_pages: int = 0
    mergeable_pages: int = 0
    t_start_ns: int = 0
    t_end_ns: int = 0

    @property
    def pages(self) -> int:
        """Pages fingerprinted."""
        return int(len(self.vpn))


@dataclass(slots=True)
class _Scan:
    vpn: U64
    flags: U8
    zero_pfn: int
    swapped: int
    file: int


def _runs(vpn: U64, limit: int) -> Iterator[tuple[int, int]]:
    """(index, length) of runs of consecutive page numbers, at most ``limit`` long."""
    if not len(vpn):
        return
    breaks = np.flatnonzero(np.diff(vpn) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(vpn)]])
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        for o in range(s, e, limit):
            yield o, min(limit, e - o)


class Fingerprinter:
    """Reads and hashes the mergeable memory of processes (needs root for frame flags)."""

    def __init__(self, seed: int, proc: Path = Path("/proc")) -> None:
        """Open /proc/kpageflags.

        Args:
            seed: xxh3 seed (see :mod:`ksmtrace.fingerprint.hashing`).
            proc: Where procfs is mounted.

        Raises:
            HostError: /proc/kpageflags cannot be read (not root).
        """
        self.seed = seed
        self.proc = proc
        self.zero_hash = np.uint64(zero_page_hash(seed))
        try:
            self._kpf = os.open(proc / "kpageflags", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise HostError(
                f"cannot read {proc}/kpageflags ({exc.strerror}): page fingerprints need root "
                "(frame flags tell KSM, huge and zero pages apart); run with sudo"
            ) from None
        self._buffers = [bytearray(CHUNK_PAGES * PAGE) for _ in range(3)]

    def close(self) -> None:
        """Close /proc/kpageflags."""
        os.close(self._kpf)

    def _scan(self, fd: int, regions: list[Region]) -> _Scan:
        vpns, flag_parts = [], []
        zero = swapped = file = 0
        for r in regions:
            first = r.start >> PAGE_SHIFT
            for off in range(0, r.pages, PAGEMAP_CHUNK):
                n = min(PAGEMAP_CHUNK, r.pages - off)
                pm = read_pagemap(fd, first + off, n)
                present = (pm & PM_PRESENT) != 0
                swapped += int(np.count_nonzero(~present & ((pm & PM_SWAPPED) != 0)))
                is_file = present & ((pm & PM_FILE) != 0)
                file += int(np.count_nonzero(is_file))
                idx = np.flatnonzero(present & ~is_file)
                kpf = read_kpageflags(self._kpf, pm[idx] & PM_PFN_MASK)
                is_zero = bit(kpf, KPF_ZERO_PAGE)
                zero += int(np.count_nonzero(is_zero))
                f = np.where(bit(kpf, KPF_THP), F_THP, 0) | np.where(bit(kpf, KPF_KSM), F_KSM, 0)
                f |= np.where((pm[idx] & PM_EXCLUSIVE) != 0, F_EXCLUSIVE, 0)
                f |= np.where(is_zero, F_ZERO_PFN | F_ZERO, 0)
                vpns.append(np.uint64(first + off) + idx.astype(np.uint64))
                flag_parts.append(f.astype(np.uint8))
        vpn = np.concatenate(vpns) if vpns else np.zeros(0, np.uint64)
        flags = np.concatenate(flag_parts) if flag_parts else np.zeros(0, np.uint8)
        return _Scan(vpn, flags, zero, swapped, file)

    def _hash(
        self, mem: int, vpn: U64, progress: Progress | None
    ) -> tuple[U64, npt.NDArray[np.bool_]]:
        hashes = np.zeros(len(vpn), dtype=np.uint64)
        ok = np.ones(len(vpn), dtype=bool)
        free: queue.Queue[int] = queue.Queue()
        for i in range(len(self._buffers)):
            free.put(i)
        filled: queue.Queue[tuple[int, int, int, int] | None] = queue.Queue()

        def produce() -> None:
            for start, count in _runs(vpn, CHUNK_PAGES):
                b = free.get()
                view = memoryview(self._buffers[b])[: count * PAGE]
                try:
                    got = os.preadv(mem, [view], int(vpn[start]) << PAGE_SHIFT)
                except OSError:
                    got = 0
                filled.put((b, start, count, got // PAGE))
            filled.put(None)

        reader = threading.Thread(target=produce, name="ksmtrace-mem-reader", daemon=True)
        reader.start()
        done = 0
        while (item := filled.get()) is not None:
            b, start, count, got = item
            hashes[start : start + got] = hash_pages(memoryview(self._buffers[b]), got, self.seed)
            ok[start + got : start + count] = False
            free.put(b)
            done += count
            if progress is not None:
                progress(count)
        reader.join()
        return hashes, ok

    def process(self, pid: int, progress: Progress | None = None) -> ProcessPages | None:
        """Fingerprint every present anonymous page of ``pid``'s mergeable regions.

        Args:
            pid: The process.
            progress: Called with the number of pages hashed after each buffer.

        Returns:
            The fingerprints, or None if the process is gone.
        """
        t0 = time.monotonic_ns()
        regions = read_mergeable_regions(self.proc, pid)
        if regions is None:
            return None
        base = self.proc / str(pid)
        try:
            pm = os.open(base / "pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            mem = os.open(base / "mem", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            os.close(pm)
            return None
        try:
            scan = self._scan(pm, regions)
            read = (scan.flags & F_ZERO_PFN) == 0
            hashes = np.full(len(scan.vpn), self.zero_hash, dtype=np.uint64)
            ok = np.ones(len(scan.vpn), dtype=bool)
            hashes[read], ok[read] = self._hash(mem, scan.vpn[read], progress)
        finally:
            os.close(pm)
            os.close(mem)
        flags = scan.flags[ok] | np.where(hashes[ok] == self.zero_hash, F_ZERO, 0).astype(np.uint8)
        return ProcessPages(
            pid=pid,
            vpn=scan.vpn[ok],
            hash=hashes[ok],
            flags=flags,
            zero_pfn_pages=scan.zero_pfn,
            swapped_pages=scan.swapped,
            file_pages=scan.file,
            mergeable_pages=sum(r.pages for r in regions),
            t_start_ns=t0,
            t_end_ns=time.monotonic_ns(),
        )

    def __enter__(self) -> Fingerprinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
