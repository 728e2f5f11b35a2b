"""The event model every source produces and every sink consumes (standard library and numpy only).

Kernel-side events arrive as fixed-size records (``struct ksmtrace_event`` in
``bpf/ksmtrace.bpf.c``) and are kept columnar in an :class:`EventBatch`. Low-rate state
(sysfs counters, ``/proc/vmstat``, per-process ``ksm_stat``, ksmd CPU) travels as a
:class:`HostSample`. One polling interval of both is a :class:`Tick`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ksmtrace.errors import UsageError

#: Lifetime value meaning "merge time unknown" (merged before tracing began, or untracked).
LIFETIME_UNKNOWN = np.uint64(0xFFFFFFFFFFFFFFFF)


class EventKind(IntEnum):
    """Kind of a kernel-side event; rendered into the BPF program as ``KIND_*`` defines."""

    MERGE = 1
    """A page of ``pid`` now maps a KSM page (``ksm_merge_with_ksm_page`` with err 0).

    ``value`` is the KSM page's frame number: host-internal, salted by
    :func:`ksmtrace.privacy.sanitize` before anything leaves the host.
    """
    MERGE_FAILED = 2
    """A merge attempt failed; ``err`` holds the kernel error (-EFAULT, -EBUSY...)."""
    ZERO_MERGE = 3
    """A zero-filled page was replaced by the zero page (``ksm_merge_one_page``, use_zero_pages)."""
    COW = 4
    """A user write fault copied a KSM page (counted in ``cow_ksm``).

    ``value`` is the merge lifetime in ns (LIFETIME_UNKNOWN if the merge was not seen),
    ``value2`` the KSM page's frame number (host-internal, like MERGE's ``value``).
    """
    ZERO_COW = 5
    """A user write fault replaced a KSM-placed zero page (decrements ``ksm_zero_pages``)."""
    UNMERGE = 6
    """Explicit unsharing: ``flags`` is an :class:`UnmergeKind`, ``value`` KSM pages,
    ``value2`` KSM zero pages."""
    SCAN = 7
    """ksmd scanned ``value`` pages of this mm with ``value2`` ns of CPU (consecutive pages).

    ``mm`` 0 and ``pid`` 0: CPU ksmd spent between passes (pass overhead).
    """
    SCAN_START = 8
    """ksmd started full scan ``value`` (``ksm_start_scan``).

    ``value2`` is the rmap_item count, ``addr`` ksmd's cumulative CPU ns.
    """
    SCAN_STOP = 9
    """ksmd finished full scan ``value`` (``ksm_stop_scan``); fields as SCAN_START."""
    ENTER = 10
    """An mm was registered with KSM (``ksm_enter``); ``value`` is the registering pid.

    ``flags`` has FORK when a parent registered its child during fork.
    """
    EXIT = 11
    """An mm left KSM (``ksm_exit``)."""
    REMOVE_KSM_PAGE = 12
    """A stable node was torn down (``ksm_remove_ksm_page``); ``flags`` has FOREIGN outside ksmd."""
    REMOVE_RMAP_ITEM = 13
    """An rmap_item was unlinked during a stable node teardown (``ksm_remove_rmap_item``)."""
    ADVISOR = 14
    """The scan-time advisor set pages_to_scan to ``value2``.

    ``value`` is the scan time in seconds, ``err`` the CPU percentage.
    """
    KNOB = 15
    """A KSM knob changed between two samples (seen by the recorder in sysfs, not by BPF).

    ``addr`` is the knob's index in :data:`KNOB_NAMES`, ``value`` the new and ``value2``
    the old value (for advisor_mode: indices in :data:`ADVISOR_MODES`); ``pid`` is 0.
    """


#: Knob names of KNOB events by their ``addr`` index (append only: trace files store indices).
KNOB_NAMES: tuple[str, ...] = (
    "run",
    "pages_to_scan",
    "sleep_millisecs",
    "max_page_sharing",
    "merge_across_nodes",
    "use_zero_pages",
    "smart_scan",
    "stable_node_chains_prune_millisecs",
    "advisor_mode",
    "advisor_max_cpu",
    "advisor_min_pages_to_scan",
    "advisor_max_pages_to_scan",
    "advisor_target_scan_time",
)

#: Values of /sys/kernel/mm/ksm/advisor_mode, as KNOB events encode them (append only).
ADVISOR_MODES: tuple[str, ...] = ("none", "scan-time")


class UnmergeKind(IntEnum):
    """Why pages were unshared without a user write fault (``flags`` of an UNMERGE event)."""

    MADVISE = 1
    """madvise(MADV_UNMERGEABLE)."""
    PROCESS_MADVISE = 2
    """process_madvise(MADV_UNMERGEABLE) on the caller itself."""
    PRCTL = 3
    """prctl(PR_SET_MEMORY_MERGE, 0)."""
    KSMD_UNDO = 4
    """ksmd undid half of a pair merge whose second step failed (``break_cow``)."""
    RUN2 = 5
    """Writing 2 to /sys/kernel/mm/ksm/run unshared everything (estimated from ksm_stat)."""
    OTHER = 6
    """Unshared inside another system call holding the mmap lock (``err`` = its number)."""


class EventFlag(IntFlag):
    """Bits of the ``flags`` column for MERGE, COW, ENTER and REMOVE_KSM_PAGE events."""

    NONE = 0
    PAIR_FIRST = 0x1
    """MERGE: this page became the new KSM page of a pair (``ksm_page`` was NULL)."""
    PAIR_SECOND = 0x2
    """MERGE: this page was replaced by the freshly made KSM page of a pair."""
    STABLE = 0x4
    """MERGE: joined an existing KSM page found in the stable tree."""
    ADOPT = 0x8
    """MERGE: the page already was that KSM page (inherited through fork)."""
    INHERITED = 0x10
    """COW: the KSM mapping came from the parent through fork."""
    FORK = 0x20
    """ENTER: registered by the parent during fork (the mm is the child's)."""
    FOREIGN = 0x40
    """REMOVE_*: fired outside ksmd (run=2, knob change, memory hot-remove)."""
    ESTIMATED = 0x80
    """SCAN: estimated from the shares of the last sampled interval (sampled scan cost)."""


#: Field layout of ``struct ksmtrace_event``; keep in sync with bpf/ksmtrace.bpf.c.
EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("mm", "<u8"),
        ("addr", "<u8"),
        ("value", "<u8"),
        ("value2", "<u8"),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("err", "<i4"),
        ("kind", "<u2"),
        ("flags", "<u2"),
    ]
)
assert EVENT_DTYPE.itemsize == 56

EventArray = npt.NDArray[np.void]


@dataclass(frozen=True, slots=True)
class Event:
    """One event, for code that prefers objects to columns (tests, rare-event handling)."""

    kind: EventKind
    ts_ns: int
    pid: int
    mm: int = 0
    addr: int = 0
    value: int = 0
    value2: int = 0
    tid: int = 0
    err: int = 0
    flags: int = 0


class EventBatch:
    """A columnar run of events in time order, backed by a numpy structured array."""

    __slots__ = ("records",)

    def __init__(self, records: EventArray | None = None) -> None:
        self.records: EventArray = (
            records if records is not None else np.zeros(0, dtype=EVENT_DTYPE)
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> EventBatch:
        """Decode raw ``struct ksmtrace_event`` records (a whole number of them)."""
        usable = len(data) - len(data) % EVENT_DTYPE.itemsize
        return cls(np.frombuffer(data[:usable], dtype=EVENT_DTYPE).copy())

    @classmethod
    def from_events(cls, events: list[Event]) -> EventBatch:
        """Build a batch from event objects (tests, synthetic sources)."""
        arr = np.zeros(len(events), dtype=EVENT_DTYPE)
        for i, ev in enumerate(events):
            arr[i] = (
                ev.ts_ns,
                ev.mm,
                ev.addr,
                ev.value,
                ev.value2,
                ev.pid,
                ev.tid,
                ev.err,
                int(ev.kind),
                ev.flags,
            )
        return cls(arr)

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        """Join batches in the given order."""
        parts = [b.records for b in batches if len(b.records)]
        if not parts:
            return cls()
        return cls(np.concatenate(parts))

    def __len__(self) -> int:
        return int(self.records.shape[0])

    def of_kind(self, kind: EventKind) -> EventArray:
        """Records of one kind (a copy)."""
        out: EventArray = self.records[self.records["kind"] == int(kind)]
        return out

    def __iter__(self) -> Iterator[Event]:
        for r in self.records:
            yield Event(
                kind=EventKind(int(r["kind"])),
                ts_ns=int(r["ts_ns"]),
                pid=int(r["pid"]),
                mm=int(r["mm"]),
                addr=int(r["addr"]),
                value=int(r["value"]),
                value2=int(r["value2"]),
                tid=int(r["tid"]),
                err=int(r["err"]),
                flags=int(r["flags"]),
            )


@dataclass(frozen=True, slots=True)
class ProcessKsm:
    """One process's ``/proc/<pid>/ksm_stat`` at a sample time."""

    pid: int
    rmap_items: int
    zero_pages: int
    merging_pages: int
    process_profit: int
    mergeable: bool | None = None
    merge_any: bool | None = None


#: The values ``ProcessIdentity.group_key`` accepts.
GROUPINGS = ("process", "vm", "cgroup")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who a process is, as far as /proc tells.

    Attributes:
        pid: Process id.
        comm: ``/proc/<pid>/comm``, "?" if unknown.
        start_time: Field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), 0 if unknown.
            Together with ``pid`` it identifies a process across pid reuse.
        vm: VM name for QEMU, Firecracker and Cloud Hypervisor processes, else None.
        vm_kind: "qemu", "firecracker", "cloud-hypervisor", or None.
        vm_uuid: QEMU ``-uuid`` value (libvirt passes the domain uuid there), if known.
        cgroup: Cgroup path, e.g. "/system.slice/nginx.service".
        container: Short (12 hex digit) container id.
        pod: Kubernetes pod uid, with dashes.
        unit: Innermost systemd unit that is not a container scope.
        uid: Real user id (``Uid:`` of ``/proc/<pid>/status``), None if unknown.
    """

    pid: int
    comm: str = "?"
    start_time: int = 0
    vm: str | None = None
    vm_kind: str | None = None
    vm_uuid: str | None = None
    cgroup: str | None = None
    container: str | None = None
    pod: str | None = None
    unit: str | None = None
    uid: int | None = None

    @property
    def label(self) -> str:
        """Best short human name: VM name, else "container:<id>", else unit, else comm."""
        if self.vm:
            return self.vm
        if self.container:
            return f"container:{self.container}"
        return self.unit or self.comm

    def group_key(self, grouping: str) -> str:
        """Return the name of the group this process falls into.

        Args:
            grouping: "process" (``comm[pid]``), "vm" (VM name or "(no vm)") or "cgroup"
                ("container:<id>", else "pod:<uid>", else unit, else cgroup path; "(root)"
                for the root cgroup and "(unknown)" when the cgroup could not be read).

        Returns:
            The group's name.

        Raises:
            UsageError: ``grouping`` is not one of ``GROUPINGS``.
        """
        if grouping == "process":
            return f"{self.comm}[{self.pid}]"
        if grouping == "vm":
            return self.vm or "(no vm)"
        if grouping == "cgroup":
            if self.container:
                return f"container:{self.container}"
            if self.pod:
                return f"pod:{self.pod}"
            if self.unit:
                return self.unit
            if self.cgroup is None:
                return "(unknown)"
            return "(root)" if self.cgroup == "/" else self.cgroup
        raise UsageError(f"unknown grouping {grouping!r}; use one of {', '.join(GROUPINGS)}")


@dataclass(frozen=True, slots=True)
class HostSample:
    """Kernel counters read at one instant.

    Attributes:
        ts_ns: CLOCK_MONOTONIC time of the read (same clock as BPF ``ts_ns``).
        ksm: every readable file of /sys/kernel/mm/ksm (ints, or str for advisor_mode).
        vmstat: the KSM lines of /proc/vmstat (``cow_ksm``, ``ksm_swpin_copy``).
        ksmd_cpu_ns: ksmd's cumulative on-CPU time, or -1 when unknown.
        processes: ``ksm_stat`` of every process with KSM state, by pid.
        page_size: the real page size in bytes.
        wall_ns: CLOCK_REALTIME time of the read (ns since the epoch), 0 when unknown; views
            show it, so a replayed trace shows when its data was read.
    """

    ts_ns: int
    ksm: Mapping[str, int | str]
    vmstat: Mapping[str, int]
    ksmd_cpu_ns: int
    processes: Mapping[int, ProcessKsm]
    page_size: int = 4096
    wall_ns: int = 0

    def counter(self, name: str) -> int:
        """An integer sysfs counter, 0 when this kernel does not have it."""
        value = self.ksm.get(name, 0)
        return value if isinstance(value, int) else 0

    @property
    def saved_bytes(self) -> int:
        """Memory saved as the kernel counts it: (pages_sharing + ksm_zero_pages) x page size."""
        return (self.counter("pages_sharing") + self.counter("ksm_zero_pages")) * self.page_size


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything one source produced for one interval [start_ns, end_ns).

    Attributes:
        start_ns: interval start (CLOCK_MONOTONIC).
        end_ns: interval end.
        events: kernel-side events with ``start_ns <= ts_ns < end_ns`` (approximately: records
            are drained when the interval ends).
        sample: counters read at ``end_ns``.
        lost: events the kernel side could not deliver in this interval, by EventKind value.
        identities: who each pid seen in this tick is.
        previous: counters read at ``start_ns`` (the previous tick's sample), if known.
    """

    start_ns: int
    end_ns: int
    events: EventBatch
    sample: HostSample
    lost: Mapping[int, int] = field(default_factory=dict)
    identities: Mapping[int, ProcessIdentity] = field(default_factory=dict)
    previous: HostSample | None = None


class TickSource(Protocol):
    """What every source (live probes, trace replay, merge engine) offers its sinks."""

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        """Yield one Tick per interval until ``duration_s`` (or the source's end)."""
        ...

    def close(self) -> None:
        """Release the source (detach probes, close files)."""
        ...
