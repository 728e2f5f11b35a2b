"""Readers of the /proc files that describe KSM per process and ksmd itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ksmtrace.errors import HostError
from ksmtrace.hostpaths import HostPaths

__all__ = [
    "PF_KTHREAD",
    "KsmStat",
    "find_ksmd",
    "is_kernel_thread",
    "list_ksm_processes",
    "list_pids",
    "page_size",
    "read_cgroup",
    "read_cmdline",
    "read_comm",
    "read_ksm_stat",
    "read_schedstat_ns",
    "read_start_time",
    "read_vmstat_ksm",
]

#: ``task_struct.flags`` bit of kernel threads (include/linux/sched.h).
PF_KTHREAD: Final = 0x00200000

#: Errors that mean "this process is gone, or was never ours to read": skip it.
_GONE: Final = (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError)

# Field numbers of /proc/<pid>/stat as in proc(5), counted from 1; fields after the comm
# start at 3 (state).
_STAT_FLAGS: Final = 9
_STAT_STARTTIME: Final = 22

#: Preference among cgroup v1 hierarchies when the v2 line says nothing useful.
_V1_PREFERENCE: Final = ("memory", "cpu", "name=systemd")


@dataclass(frozen=True, slots=True)
class KsmStat:
    """One process's ``/proc/<pid>/ksm_stat`` (fs/proc/base.c ``proc_pid_ksm_stat``).

    Fields missing on older kernels read 0 (counts) or None (flags).

    Attributes:
        rmap_items: ``ksm_rmap_items``: ``mm->ksm_rmap_items``, pages KSM tracks in this mm.
        zero_pages: ``ksm_zero_pages``: KSM-placed zero-page PTEs in this mm (6.6+).
        merging_pages: ``ksm_merging_pages``: this mm's mappings of KSM pages (6.4+).
        process_profit: ``ksm_process_profit`` in bytes; may be negative (6.4+).
        merge_any: ``ksm_merge_any``: PR_SET_MEMORY_MERGE is on (6.14+).
        mergeable: ``ksm_mergeable``: some VMA has VM_MERGEABLE (6.14+).
    """

    rmap_items: int = 0
    zero_pages: int = 0
    merging_pages: int = 0
    process_profit: int = 0
    merge_any: bool | None = None
    mergeable: bool | None = None

    @property
    def uses_ksm(self) -> bool:
        """True if KSM tracks, merged or may merge any page of this process."""
        counts = (self.rmap_items, self.merging_pages, self.zero_pages)
        return any(counts) or bool(self.merge_any) or bool(self.mergeable)


def page_size() -> int:
    """Return the base page size in bytes (``sysconf(_SC_PAGE_SIZE)``)."""
    return os.sysconf("SC_PAGE_SIZE")


def _read_bytes(path: Path) -> bytes | None:
    """Read a file below /proc, or None if its process is gone or it is not readable."""
    try:
        return path.read_bytes()
    except _GONE:
        return None


def _read_text(path: Path) -> str | None:
    raw = _read_bytes(path)
    return None if raw is None else os.fsdecode(raw)


def read_vmstat_ksm(paths: HostPaths) -> dict[str, int]:
    """Read the KSM event counters of ``/proc/vmstat`` (``cow_ksm``, ``ksm_swpin_copy``).

    Any line whose name starts with "ksm" or contains "_ksm" is included, so counters added
    by newer kernels appear without a code change.

    Args:
        paths: Host paths to read below.

    Returns:
        Counter name to value; empty on kernels without KSM vm events.

    Raises:
        HostError: ``/proc/vmstat`` cannot be read.
    """
    try:
        text = paths.vmstat.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise HostError(
            f"cannot read {paths.vmstat} ({exc.strerror}): mount procfs on /proc"
        ) from exc
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if (name.startswith("ksm") or "_ksm" in name) and value.strip().lstrip("-").isdigit():
            counters[name] = int(value)
    return counters


def _parse_ksm_stat(text: str) -> KsmStat:
    counts: dict[str, int] = {}
    flags: dict[str, bool] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        key, value = key.rstrip(":"), value.strip()
        if key.startswith("ksm_") and value.lstrip("-").isdigit():
            counts[key] = int(value)
        elif value in ("yes", "no"):
            flags[key] = value == "yes"
    return KsmStat(
        rmap_items=counts.get("ksm_rmap_items", 0),
        zero_pages=counts.get("ksm_zero_pages", 0),
        merging_pages=counts.get("ksm_merging_pages", 0),
        process_profit=counts.get("ksm_process_profit", 0),
        merge_any=flags.get("ksm_merge_any"),
        mergeable=flags.get("ksm_mergeable"),
    )


def read_ksm_stat(paths: HostPaths, pid: int) -> KsmStat | None:
    """Read ``/proc/<pid>/ksm_stat``.

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        The parsed counters, or None for a process that is gone, unreadable, a kernel
        thread or a zombie (the kernel prints nothing when the task has no mm).
    """
    text = _read_text(paths.pid_dir(pid) / "ksm_stat")
    if not text or not text.strip():
        return None
    return _parse_ksm_stat(text)


def read_comm(paths: HostPaths, pid: int) -> str | None:
    """Read ``/proc/<pid>/comm`` (``task_struct.comm``, at most 15 characters).

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        The command name without its newline, or None if the process is gone.
    """
    text = _read_text(paths.pid_dir(pid) / "comm")
    return None if text is None else text.removesuffix("\n")


def read_cmdline(paths: HostPaths, pid: int) -> list[str] | None:
    """Read ``/proc/<pid>/cmdline`` (the process's argv).

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        The arguments (empty for kernel threads and zombies), or None if the process is gone.
    """
    raw = _read_bytes(paths.pid_dir(pid) / "cmdline")
    if raw is None:
        return None
    args = [os.fsdecode(arg) for arg in raw.split(b"\0")]
    if args and args[-1] == "":
        args.pop()
    return args


def _pick_cgroup(lines: list[str]) -> str | None:
    """Choose one path from ``/proc/<pid>/cgroup`` lines "hierarchy:controllers:path"."""
    unified: str | None = None
    v1: dict[str, str] = {}
    first_v1: str | None = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if hierarchy == "0" and not controllers:
            unified = path
            continue
        first_v1 = path if first_v1 is None else first_v1
        for controller in controllers.split(","):
            v1.setdefault(controller, path)
    # On hybrid hosts the v2 hierarchy holds no controllers and everything sits in "/":
    # the v1 hierarchies then say where the process really is.
    if unified is not None and (unified != "/" or first_v1 is None):
        return unified
    for controller in _V1_PREFERENCE:
        if controller in v1:
            return v1[controller]
    return first_v1 if first_v1 is not None else unified


def read_cgroup(paths: HostPaths, pid: int) -> str | None:
    """Read the cgroup path of a process from ``/proc/<pid>/cgroup``.

    The cgroup v2 line ("0::/path") is preferred. Without it, or on hybrid hosts where it
    only says "/", the v1 hierarchy of the "memory" controller is used, else "cpu", else
    "name=systemd", else the first line.

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        The cgroup path, or None if the process is gone or the file is empty.
    """
    text = _read_text(paths.pid_dir(pid) / "cgroup")
    return None if text is None else _pick_cgroup(text.splitlines())


def _stat_fields(paths: HostPaths, pid: int) -> tuple[str, list[str]] | None:
    """Split ``/proc/<pid>/stat`` into comm and the fields after it (field 3 onwards).

    The comm is taken between the first "(" and the last ")", since it may itself contain
    spaces and parentheses.
    """
    text = _read_text(paths.pid_dir(pid) / "stat")
    if text is None:
        return None
    head, paren, tail = text.rpartition(")")
    if not paren:
        return None
    return head.partition("(")[2], tail.split()


def _stat_field(fields: list[str], number: int) -> int | None:
    index = number - 3
    if index >= len(fields):
        return None
    try:
        return int(fields[index])
    except ValueError:
        return None


def read_start_time(paths: HostPaths, pid: int) -> int | None:
    """Read a process's start time, field 22 (``starttime``) of ``/proc/<pid>/stat``.

    Together with the pid it identifies a process across pid reuse.

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        Clock ticks (``SC_CLK_TCK``) after boot, or None if the process is gone.
    """
    parsed = _stat_fields(paths, pid)
    return None if parsed is None else _stat_field(parsed[1], _STAT_STARTTIME)


def _is_kthread(fields: list[str]) -> bool:
    flags = _stat_field(fields, _STAT_FLAGS)
    return flags is not None and bool(flags & PF_KTHREAD)


def is_kernel_thread(paths: HostPaths, pid: int) -> bool:
    """Tell whether ``task_struct.flags`` (field 9 of ``/proc/<pid>/stat``) has PF_KTHREAD.

    Args:
        paths: Host paths to read below.
        pid: Process id.

    Returns:
        True for a kernel thread; False for a user process or a process that is gone.
    """
    parsed = _stat_fields(paths, pid)
    return parsed is not None and _is_kthread(parsed[1])


def list_pids(paths: HostPaths) -> list[int]:
    """List the process ids (the numeric directories of ``/proc``), ascending.

    Args:
        paths: Host paths to read below.

    Returns:
        Every pid present at the time of the listing.

    Raises:
        HostError: ``/proc`` cannot be listed.
    """
    try:
        names = os.listdir(paths.proc)
    except OSError as exc:
        raise HostError(
            f"cannot list {paths.proc} ({exc.strerror}): mount procfs on /proc"
        ) from exc
    return sorted(int(name) for name in names if name.isdigit())


def find_ksmd(paths: HostPaths) -> int | None:
    """Find the pid of the ``ksmd`` kernel thread (its pid is not fixed).

    Args:
        paths: Host paths to read below.

    Returns:
        The pid of the kernel thread whose comm is exactly "ksmd", or None if there is none.

    Raises:
        HostError: ``/proc`` cannot be listed.
    """
    for pid in list_pids(paths):
        parsed = _stat_fields(paths, pid)
        if parsed is not None and parsed[0] == "ksmd" and _is_kthread(parsed[1]):
            return pid
    return None


def read_schedstat_ns(paths: HostPaths, pid: int, tid: int | None = None) -> int | None:
    """Read the on-CPU time from ``/proc/<pid>/schedstat`` (``se.sum_exec_runtime``).

    Args:
        paths: Host paths to read below.
        pid: Process id.
        tid: Thread id; reads ``/proc/<pid>/task/<tid>/schedstat`` instead when given.

    Returns:
        Nanoseconds spent on a CPU, or None if the task is gone or schedstat is unavailable.
    """
    directory = paths.pid_dir(pid)
    if tid is not None:
        directory = directory / "task" / str(tid)
    text = _read_text(directory / "schedstat")
    fields = text.split() if text else []
    return int(fields[0]) if fields and fields[0].isdigit() else None


def list_ksm_processes(paths: HostPaths) -> dict[int, KsmStat]:
    """Find the processes KSM knows about, from every ``/proc/<pid>/ksm_stat``.

    A process is included when its ksm_stat shows rmap items, merging pages or zero pages,
    or says it is mergeable or merge-any. Kernel threads cost one empty read each: their
    ksm_stat is empty because they have no mm, which is cheaper than reading their stat.

    Args:
        paths: Host paths to read below.

    Returns:
        Pid to its ksm_stat, ascending by pid; processes that exit meanwhile are left out.

    Raises:
        HostError: ``/proc`` cannot be listed.
    """
    found: dict[int, KsmStat] = {}
    for pid in list_pids(paths):
        stat = read_ksm_stat(paths, pid)
        if stat is not None and stat.uses_ksm:
            found[pid] = stat
    return found
