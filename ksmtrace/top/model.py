"""Immutable snapshots the ``top`` worker posts to the terminal UI (no textual, no threads).

A :class:`TopSnapshot` is everything one screen shows at one trace time: the host figures of
the header, one :class:`Row` per process, a short history for the plots, the processes that
stopped being mergeable and, live, the mergeable regions of the selected processes. The UI
groups, sorts and filters rows itself (``ksmtrace.top.columns``); it never reads the kernel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ksmtrace.events import ProcessIdentity
from ksmtrace.kernel.smaps import Vma
from ksmtrace.mergeability import Mergeability


@dataclass(frozen=True, slots=True)
class KsmStatView:
    """``/proc/<pid>/ksm_stat`` of a process, or the sum over a group of processes.

    Attributes:
        rmap_items: ``ksm_rmap_items``: pages KSM tracks.
        zero_pages: ``ksm_zero_pages``: KSM-placed zero pages mapped.
        merging_pages: ``ksm_merging_pages``: mappings of KSM pages.
        process_profit: ``ksm_process_profit`` in bytes.
        mergeable: ``ksm_mergeable`` (any VMA has VM_MERGEABLE); None when unknown.
        merge_any: ``ksm_merge_any`` (PR_SET_MEMORY_MERGE); None when unknown.
    """

    rmap_items: int = 0
    zero_pages: int = 0
    merging_pages: int = 0
    process_profit: int = 0
    mergeable: bool | None = None
    merge_any: bool | None = None


@dataclass(frozen=True, slots=True)
class RowTotals:
    """What was counted for a row since the worker started (or since the last far seek)."""

    merges: int = 0
    cows: int = 0
    unmerged: int = 0
    failures: int = 0
    scanned: int = 0
    scan_cpu_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Row:
    """One process (or, after grouping, one VM or cgroup) of the table.

    Rates are averages over the snapshot's window. ``scan_cpu_share`` is the row's part of
    ksmd's CPU in that window; ``efficiency`` is saved MiB per ksmd CPU-second spent on the
    row each second (saved MiB divided by its scan CPU share of one core), None when ksmd
    spent nothing on it.
    """

    key: str
    label: str
    pids: tuple[int, ...]
    alive: bool
    saved_bytes: int
    merging_pages: int
    merges_per_s: float
    cows_per_s: float
    unmerged_per_s: float
    scanned_per_s: float
    scan_cpu_per_s: float
    churn: float | None
    lifetime_p50_s: float | None
    scan_cpu_share: float | None
    efficiency: float | None
    ksm_stat: KsmStatView
    lifetimes: tuple[int, ...]
    lifetimes_unknown: int
    totals: RowTotals
    identities: tuple[ProcessIdentity, ...]


@dataclass(frozen=True, slots=True)
class HostFigures:
    """The header: KSM state and knobs, what it saves, what it costs, what was lost.

    Rates are averages over the snapshot's window; ``ksmd_cpu_pct`` is percent of one CPU;
    ``wall_ns`` is when the counters were read (CLOCK_REALTIME ns, 0 when unknown).
    """

    knobs: Mapping[str, int | str]
    saved_bytes: int
    zero_page_bytes: int
    general_profit: int
    pages_shared: int
    pages_sharing: int
    pages_unshared: int
    pages_volatile: int
    ksmd_cpu_pct: float | None
    scan_pages_per_s: float
    merges_per_s: float
    cow_per_s: float
    full_scans: int
    last_scan_s: float | None
    last_scan_cpu_s: float | None
    lost_window: int
    lost_total: int
    page_size: int = 4096
    wall_ns: int = 0

    @property
    def run(self) -> int:
        """The ``run`` knob: 0 stopped, 1 merging, 2 unmerging everything (-1 unknown)."""
        value = self.knobs.get("run", -1)
        return value if isinstance(value, int) else -1


@dataclass(frozen=True, slots=True)
class Frame:
    """One point of the plots: per-pid saved bytes and copy-on-write rate at one time."""

    t_s: float
    saved_bytes: int
    cow_per_s: float
    per_pid: Mapping[int, tuple[int, float]]


@dataclass(frozen=True, slots=True)
class Departure:
    """A process that stopped being mergeable: when (trace seconds) and how."""

    pid: int
    label: str
    t_s: float
    how: str


@dataclass(frozen=True, slots=True)
class Regions:
    """The mappings of one process as KSM sees them (live only).

    Read from smaps, with the verdict of :mod:`ksmtrace.mergeability` (which also reads
    ksm_stat and, for a VM, the command line).
    """

    pid: int
    regions: tuple[Vma, ...]
    note: str = ""
    verdict: Mergeability | None = None

    def total(self, attr: str, *, mergeable: bool | None = None) -> int:
        """Sum of a byte attribute over regions, optionally only (non-)mergeable ones."""
        return sum(
            int(getattr(r, attr))
            for r in self.regions
            if mergeable is None or r.mergeable == mergeable
        )


@dataclass(frozen=True, slots=True)
class TopSnapshot:
    """Everything the UI shows for one trace time; built by the worker, never mutated.

    Attributes:
        seq: increasing number of the snapshot.
        t_s: trace time in seconds since the source's origin.
        window_s: seconds the rates are averaged over.
        live: whether the source is the live probe set.
        duration_s: length of a recorded trace, when known.
        paused: playback is paused (replay) or the display frozen (live).
        speed: playback speed (1.0 live).
        at_end: a replay reached its end.
        host: the header figures.
        rows: one row per process with KSM state or activity.
        history: recent frames, oldest first, for the plots.
        departures: processes that stopped being mergeable, newest last.
        regions: smaps of the processes the UI selected (live only).
        note: a line for the status bar (a source error, a seek that restarted totals).
        vm_verdicts: whether each VM on the host can merge, and why not (live only).
    """

    seq: int
    t_s: float
    window_s: float
    live: bool
    duration_s: float | None
    paused: bool
    speed: float
    at_end: bool
    host: HostFigures
    rows: tuple[Row, ...]
    history: tuple[Frame, ...] = ()
    departures: tuple[Departure, ...] = ()
    regions: Mapping[int, Regions] = field(default_factory=dict)
    note: str = ""
    vm_verdicts: tuple[Mergeability, ...] = ()
