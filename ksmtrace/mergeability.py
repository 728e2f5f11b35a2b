"""Why a process or VM does (not) merge: smaps VmFlags, ksm_stat and the VM's command line.

KSM merges a page only inside a VMA marked VM_MERGEABLE (``mg`` in the ``VmFlags:`` line of
``/proc/<pid>/smaps``: set by madvise(MADV_MERGEABLE), or for every compatible VMA by
prctl(PR_SET_MEMORY_MERGE), which ``ksm_merge_any`` in ``/proc/<pid>/ksm_stat`` shows), and
never in shared (``sh``) or hugetlb (``ht``) mappings (mm/ksm.c ``vma_ksm_compatible``).
For a VM the mapping that matters is guest RAM: QEMU marks it mergeable unless started with
``mem-merge=off``, and a shared (memfd, ``share=on``) or hugetlbfs backend cannot merge even
then. ``ksm_mergeable`` alone misleads for VMs: QEMU's small ROM blocks may be mergeable
while guest RAM is not, so the verdict comes from the guest RAM mapping itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ksmtrace.events import ProcessIdentity
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import parse_vm, resolve_identity
from ksmtrace.kernel import procfs
from ksmtrace.qemu_memory import VmMemory, parse_cloud_hypervisor_memory, parse_qemu_memory
from ksmtrace.render.units import fmt_bytes

__all__ = [
    "Mapping",
    "Mergeability",
    "VmWatch",
    "assess",
    "describe",
    "find_vms",
    "parse_smaps_flags",
    "read_mergeability",
]


@dataclass(frozen=True, slots=True)
class Mapping:
    """One VMA of ``/proc/<pid>/smaps``: its size, name and ``VmFlags`` codes.

    Codes used here: ``mg`` VM_MERGEABLE, ``sh`` VM_SHARED, ``ms`` VM_MAYSHARE, ``ht``
    VM_HUGETLB, ``hg`` VM_HUGEPAGE (madvised for transparent huge pages), ``nh``
    VM_NOHUGEPAGE, ``wr`` writable, ``ex`` executable.
    """

    size: int
    name: str
    flags: frozenset[str]
    rss_bytes: int = 0

    def has(self, code: str) -> bool:
        """Tell whether ``VmFlags`` holds ``code``."""
        return code in self.flags


def parse_smaps_flags(text: str) -> list[Mapping]:
    """Parse ``/proc/<pid>/smaps`` into mappings with their VmFlags (malformed ones skipped)."""
    out: list[Mapping] = []
    size, name, rss = -1, "", 0
    for line in text.splitlines():
        first = line.split(maxsplit=5)
        if first and "-" in first[0] and not first[0].endswith(":"):
            lo, _, hi = first[0].partition("-")
            try:
                size, rss = int(hi, 16) - int(lo, 16), 0
            except ValueError:
                size = -1
            name = first[5].strip() if len(first) > 5 else ""
        elif line.startswith("Rss:") and len(first) > 1 and first[1].isdigit():
            rss = int(first[1]) * 1024
        elif line.startswith("VmFlags:") and size >= 0:
            out.append(Mapping(size, name, frozenset(line.split()[1:]), rss))
            size = -1
    return out


@dataclass(frozen=True, slots=True)
class Mergeability:
    """Whether KSM may merge a process's memory, and why not.

    Attributes:
        pid: The process.
        name: VM name, else comm.
        vm_kind: "qemu", "firecracker", "cloud-hypervisor" or None.
        mergeable: True if memory that matters (guest RAM for a VM) is marked mergeable;
            None when neither smaps nor ksm_stat could be read.
        reasons: Plain sentences saying why it does not merge (empty when mergeable).
        notes: Caveats that do not stop merging (THP, not scanned yet, preallocation).
        mergeable_bytes: Size of the VMAs marked VM_MERGEABLE.
        guest_ram_bytes: Size of the guest RAM mappings found (VMs only).
    """

    pid: int
    name: str
    vm_kind: str | None
    mergeable: bool | None
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    mergeable_bytes: int = 0
    guest_ram_bytes: int | None = None

    @property
    def verdict(self) -> str:
        """One phrase: mergeable, NOT mergeable with the reasons, or unknown with why."""
        if self.mergeable is None:
            return "unknown: " + ("; ".join(self.reasons) or "smaps and ksm_stat unreadable")
        if self.mergeable:
            return "mergeable"
        return "NOT mergeable: " + "; ".join(self.reasons)


def _vm_memory(identity: ProcessIdentity, argv: Sequence[str]) -> VmMemory | None:
    if identity.vm_kind == "qemu":
        return parse_qemu_memory(argv)
    if identity.vm_kind == "cloud-hypervisor":
        return parse_cloud_hypervisor_memory(argv)
    return None


def _guest_ram(maps: Sequence[Mapping], memory: VmMemory | None) -> list[Mapping]:
    """The mappings that hold guest RAM: large, writable, not executable (not the JIT)."""
    data = [m for m in maps if m.has("wr") and not m.has("ex")]
    if not data:
        return []
    largest = max(m.size for m in data)
    want = largest
    if memory is not None and memory.ram_bytes:
        want = min(largest, int(0.9 * memory.ram_bytes / max(1, memory.numa_nodes)))
    return [m for m in data if m.size >= want]


def _ram_reasons(ram: Sequence[Mapping], memory: VmMemory | None, kind: str) -> list[str]:
    """Why guest RAM mappings that lack ``mg`` are not mergeable, most specific first."""
    reasons = []
    backend = f" ({memory.backend})" if memory and memory.backend else ""
    if any(m.has("sh") or m.has("ms") for m in ram) or (memory and memory.shared):
        reasons.append(
            f"guest RAM is a shared mapping{backend}: KSM merges only private anonymous memory"
            + (" (memory-backend-memfd is share=on by default)" if "memfd" in backend else "")
        )
    if any(m.has("ht") for m in ram) or (memory and memory.hugepages):
        reasons.append(f"guest RAM is on hugetlbfs huge pages{backend}: KSM cannot merge them")
    if memory is not None and not memory.mem_merge:
        reasons.append(
            "QEMU was started with mem-merge=off, so it never marked guest RAM mergeable "
            "(madvise MADV_MERGEABLE)"
            if kind == "qemu"
            else "Cloud Hypervisor merges guest RAM only with --memory mergeable=on"
        )
    if kind == "firecracker":
        reasons.append("Firecracker does not mark guest memory mergeable (it has no KSM option)")
    if not reasons:
        reasons.append(
            "guest RAM is not marked mergeable (no MADV_MERGEABLE): the VM never registered "
            "it with KSM"
        )
    return reasons


def _notes(
    ram: Sequence[Mapping], memory: VmMemory | None, stat: procfs.KsmStat | None, thp: bool
) -> list[str]:
    notes = []
    if thp and any(m.has("hg") for m in ram):
        notes.append(
            "guest RAM uses transparent huge pages (MADV_HUGEPAGE): ksmd splits a huge page "
            "to merge in it, and khugepaged collapsing it again unmerges pages without a "
            "copy-on-write (not traced)"
        )
    if memory is not None and memory.prealloc:
        notes.append("guest RAM is preallocated: all of it is resident, zero pages included")
    if stat is not None and stat.rmap_items == 0 and stat.merging_pages == 0:
        notes.append("ksmd has not scanned it yet (KSM stopped, or it started just now)")
    return notes


def assess(
    identity: ProcessIdentity,
    argv: Sequence[str],
    maps: Sequence[Mapping] | None,
    stat: procfs.KsmStat | None,
    thp_enabled: bool = True,
) -> Mergeability:
    """Decide whether KSM may merge a process's memory (guest RAM for a VM), and why not.

    Args:
        identity: Who the process is (``vm_kind`` says whether it is a VM).
        argv: Its command line.
        maps: Its smaps mappings, or None if smaps could not be read.
        stat: Its ksm_stat, or None if unreadable.
        thp_enabled: False when transparent huge pages are off for the process
            (``THP_enabled: 0`` in its status, PR_SET_THP_DISABLE) or the host ("never").

    Returns:
        The verdict with plain-language reasons and notes.
    """
    name = identity.vm or identity.comm
    kind = identity.vm_kind
    merge_any = bool(stat and stat.merge_any)
    memory = _vm_memory(identity, argv)
    if maps is None:
        return _assess_without_smaps(identity, memory, stat)
    mergeable_bytes = sum(m.size for m in maps if m.has("mg"))
    if kind is None:
        ok = mergeable_bytes > 0 or merge_any
        why = () if ok else (
            "no memory is marked mergeable: the program never called "
            "madvise(MADV_MERGEABLE) or prctl(PR_SET_MEMORY_MERGE)",
        )  # fmt: skip
        return Mergeability(identity.pid, name, None, ok, why, (), mergeable_bytes)
    ram = _guest_ram(maps, memory)
    ram_bytes = sum(m.size for m in ram)
    blocked = [m for m in ram if m.has("sh") or m.has("ms") or m.has("ht")]
    unmarked = [m for m in ram if not m.has("mg") and not merge_any]
    ok = bool(ram) and not blocked and not unmarked
    reasons = () if ok else tuple(_ram_reasons(blocked or unmarked or ram, memory, kind))
    notes = tuple(_notes(ram, memory, stat, thp_enabled)) if ok else ()
    return Mergeability(
        identity.pid, name, kind, ok, reasons, notes, mergeable_bytes, ram_bytes or None
    )


def _assess_without_smaps(
    identity: ProcessIdentity, memory: VmMemory | None, stat: procfs.KsmStat | None
) -> Mergeability:
    """A weaker verdict from ksm_stat flags and the command line alone."""
    name = identity.vm or identity.comm
    kind = identity.vm_kind
    if memory is not None and (memory.shared or memory.hugepages or not memory.mem_merge):
        reasons = tuple(_ram_reasons([], memory, kind or "qemu"))
        return Mergeability(identity.pid, name, kind, False, reasons)
    if stat is None or stat.mergeable is None:
        unreadable = f"cannot read /proc/{identity.pid}/smaps or its ksm_stat (run as root)"
        return Mergeability(identity.pid, name, kind, None, (unreadable,))
    ok = bool(stat.mergeable or stat.merge_any)
    why = () if ok else ("ksm_stat says no memory is marked mergeable",)
    return Mergeability(identity.pid, name, kind, ok, why)


def read_mergeability(
    paths: HostPaths, pid: int, identity: ProcessIdentity | None = None
) -> Mergeability | None:
    """Read ``/proc/<pid>/{smaps,ksm_stat,cmdline}`` and assess the process.

    Args:
        paths: Where the host's /proc is.
        pid: The process.
        identity: Who it is, if already known.

    Returns:
        The verdict, or None if the process is gone.
    """
    identity = identity or resolve_identity(paths, pid)
    if identity is None:
        return None
    try:
        text = (paths.pid_dir(pid) / "smaps").read_text(errors="replace")
        maps: list[Mapping] | None = parse_smaps_flags(text)
    except OSError:
        maps = None
    argv = procfs.read_cmdline(paths, pid) or []
    stat = procfs.read_ksm_stat(paths, pid)
    return assess(identity, argv, maps, stat, _thp_enabled(paths, pid))


def _thp_enabled(paths: HostPaths, pid: int) -> bool:
    """Tell whether transparent huge pages may back the process's memory.

    False when ``/sys/kernel/mm/transparent_hugepage/enabled`` is "[never]" or the
    process's status says ``THP_enabled: 0`` (PR_SET_THP_DISABLE).
    """
    try:
        host = (paths.root / "sys/kernel/mm/transparent_hugepage/enabled").read_text()
        status = (paths.pid_dir(pid) / "status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return "[never]" not in host and fields.get("THP_enabled", "1").strip() != "0"


def find_vms(paths: HostPaths) -> list[ProcessIdentity]:
    """Every QEMU, Firecracker and Cloud Hypervisor process on the host, by pid.

    Raises:
        HostError: ``/proc`` cannot be listed.
    """
    out = []
    for pid in procfs.list_pids(paths):
        argv = procfs.read_cmdline(paths, pid)
        if not argv or parse_vm(argv, procfs.read_comm(paths, pid) or "")[1] is None:
            continue  # not a VM, a kernel thread or a zombie
        ident = resolve_identity(paths, pid)
        if ident is not None and ident.vm_kind is not None:
            out.append(ident)
    return out


def describe(m: Mergeability) -> str:
    """One line for doctor: name, kind, pid, verdict and what is mergeable."""
    size = f", {fmt_bytes(m.guest_ram_bytes)} guest RAM" if m.guest_ram_bytes else ""
    text = f"{m.name} ({m.vm_kind or 'process'}, pid {m.pid}{size}): {m.verdict}"
    if m.notes:
        text += "; note: " + "; ".join(m.notes)
    return text


class VmWatch:
    """The host's VMs and their verdicts, re-read at most every ``every_s`` seconds."""

    def __init__(self, paths: HostPaths, every_s: float = 10.0) -> None:
        self._paths = paths
        self._every_s = every_s
        self._next = 0.0
        self._verdicts: list[Mergeability] = []

    def verdicts(self, now: float | None = None) -> list[Mergeability]:
        """Every VM's verdict, refreshed when ``every_s`` passed since the last read.

        Args:
            now: ``time.monotonic()`` value; the current one if None.

        Returns:
            The verdicts, by pid (VMs that exited meanwhile are left out).
        """
        now = time.monotonic() if now is None else now
        if now >= self._next:
            self._next = now + self._every_s
            found = (read_mergeability(self._paths, v.pid, v) for v in find_vms(self._paths))
            self._verdicts = [m for m in found if m is not None]
        return self._verdicts
