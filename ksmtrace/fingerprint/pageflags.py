"""Decoding /proc/<pid>/pagemap entries and /proc/kpageflags bits (admin-guide/mm/pagemap.rst)."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]

PM_PRESENT = np.uint64(1 << 63)
PM_SWAPPED = np.uint64(1 << 62)
PM_FILE = np.uint64(1 << 61)  # file page or shared anonymous page
PM_EXCLUSIVE = np.uint64(1 << 56)  # mapped exclusively by this process
PM_PFN_MASK = np.uint64((1 << 55) - 1)

KPF_ANON = 12
KPF_HUGE = 17  # hugetlbfs
KPF_KSM = 21
KPF_THP = 22
KPF_ZERO_PAGE = 24

#: kpageflags entries read in one go at most; PFN gaps wider than this start a new read.
_KPF_GAP = 512


def bit(flags: U64, n: int) -> npt.NDArray[np.bool_]:
    """Whether bit ``n`` is set in each entry."""
    mask: npt.NDArray[np.bool_] = (flags >> np.uint64(n)) & np.uint64(1) != 0
    return mask


def read_pagemap(fd: int, first_page: int, count: int) -> U64:
    """``count`` pagemap entries from virtual page ``first_page`` (zeros past a short read)."""
    raw = os.pread(fd, count * 8, first_page * 8)
    out = np.zeros(count, dtype=np.uint64)
    got = np.frombuffer(raw, dtype=np.uint64)
    out[: len(got)] = got
    return out


def read_kpageflags(fd: int, pfns: U64) -> U64:
    """/proc/kpageflags of each frame in ``pfns``, reading clusters of nearby frames at once.

    Args:
        fd: Open /proc/kpageflags.
        pfns: Frame numbers (any order, repeats allowed).

    Returns:
        One flags word per entry of ``pfns``.
    """
    if not len(pfns):
        return np.zeros(0, dtype=np.uint64)
    uniq, inverse = np.unique(pfns, return_inverse=True)
    flags = np.zeros(len(uniq), dtype=np.uint64)
    breaks = np.flatnonzero(np.diff(uniq) > _KPF_GAP) + 1
    for lo, hi in zip(
        np.concatenate([[0], breaks]), np.concatenate([breaks, [len(uniq)]]), strict=True
    ):
        first, last = int(uniq[lo]), int(uniq[hi - 1])
        raw = os.pread(fd, (last - first + 1) * 8, first * 8)
        span = np.zeros(last - first + 1, dtype=np.uint64)
        got = np.frombuffer(raw, dtype=np.uint64)
        span[: len(got)] = got
        flags[lo:hi] = span[(uniq[lo:hi] - np.uint64(first)).astype(np.int64)]
    out: U64 = flags[inverse]
    return out
