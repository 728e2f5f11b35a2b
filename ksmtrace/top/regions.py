"""The mergeable regions of a process for the detail pane, read from its smaps (live only)."""

from __future__ import annotations

from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.smaps import read_smaps
from ksmtrace.mergeability import read_mergeability
from ksmtrace.top.model import Regions

#: Names of shared mappings that hold what would otherwise be anonymous memory (guest RAM
#: on memfd or /dev/shm, SysV shared memory, shared anonymous mmap).
_SHARED_ANON_PREFIXES = ("/memfd:", "/dev/shm/", "/SYSV", "[anon", "/anon_hugepage")


def shared_anon(name: str) -> bool:
    """Whether a shared mapping's name says it is anonymous-like memory KSM could have merged."""
    return name.startswith(_SHARED_ANON_PREFIXES)


def read_regions(paths: HostPaths, pid: int) -> Regions | None:
    """The mappings of ``pid`` that matter to KSM: mergeable, hugetlb, shared anonymous-like.

    Shared file mappings (a database file, say) are left out: KSM merges no file pages. The
    verdict of :func:`ksmtrace.mergeability.read_mergeability` (guest RAM of a VM, QEMU's
    mem-merge and memory backends) comes along.

    Args:
        paths: where the host's /proc is.
        pid: the process.

    Returns:
        Its regions, or None when the process is gone or its smaps is unreadable.
    """
    vmas = read_smaps(paths, pid)
    if vmas is None:
        return None
    kept = tuple(v for v in vmas if v.mergeable or v.hugetlb or (v.shared and shared_anon(v.name)))
    return Regions(pid, kept, verdict=read_mergeability(paths, pid))
