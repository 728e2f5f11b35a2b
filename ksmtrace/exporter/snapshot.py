"""The immutable state the exporter serves: one :class:`Snapshot` per accounted interval.

The source thread builds a Snapshot after each Tick and publishes it whole; scrapes only read
the latest one. Nothing here is ever changed after construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ksmtrace.aggregate import LIFETIME_BUCKETS_S
from ksmtrace.events import EventKind, HostSample, UnmergeKind
from ksmtrace.metrics_names import OTHER

#: Label values (pid, comm, vm, cgroup) of the series that sums processes outside the top N.
OTHER_LABELS: tuple[str, str, str, str] = (OTHER, OTHER, OTHER, OTHER)

#: Unmerge kinds in the order of :attr:`SeriesValues.unmerged`, as ``kind`` label values.
UNMERGE_KINDS: tuple[UnmergeKind, ...] = tuple(UnmergeKind)


def unmerge_label(kind: UnmergeKind) -> str:
    """The ``kind`` label value of an unmerge kind ("madvise", "ksmd_undo"...)."""
    return kind.name.lower()


def lost_label(kind: int) -> str:
    """The ``kind`` label value of a lost-event counter index (an EventKind value)."""
    try:
        return EventKind(kind).name.lower()
    except ValueError:
        return f"kind_{kind}"


@dataclass(frozen=True, slots=True)
class SeriesValues:
    """One per-process series (or the ``other`` series): counters and gauges at one instant.

    Counters count only what happened while the process was exposed under these labels
    (see :mod:`ksmtrace.exporter.state`), so every series is monotonic.

    Attributes:
        labels: pid, comm, vm, cgroup label values.
        merges: pages merged.
        cows: KSM pages copied by write faults.
        unmerged: pages unshared without a write fault, in :data:`UNMERGE_KINDS` order.
        scanned: pages ksmd scanned.
        scan_cpu_ns: ksmd CPU spent scanning them.
        lifetime_counts: COWs per :data:`LIFETIME_BUCKETS_S` bucket (not cumulative).
        lifetime_sum_s: sum of those lifetimes.
        merging_pages: ``ksm_merging_pages`` now (summed for ``other``).
        profit_bytes: ``ksm_process_profit`` now.
        saved_bytes: share of the global saving now.
    """

    labels: tuple[str, str, str, str]
    merges: int = 0
    cows: int = 0
    unmerged: tuple[int, ...] = (0,) * len(UNMERGE_KINDS)
    scanned: int = 0
    scan_cpu_ns: int = 0
    lifetime_counts: tuple[int, ...] = (0,) * len(LIFETIME_BUCKETS_S)
    lifetime_sum_s: float = 0.0
    merging_pages: int = 0
    profit_bytes: int = 0
    saved_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What the exporter says about its event source.

    Attributes:
        source: "live" or "replay".
        cow_check: how COWs are recognised ("page-table", "merged-address", or "recorded").
        headers: where the kernel headers bcc compiled against came from ("" for replay).
        scan_site_ready: whether pages scanned per process are exact (None: not applicable).
        lifetime_map_full: merges whose time could not be remembered (None: unknown).
    """

    source: str
    cow_check: str = ""
    headers: str = ""
    scan_site_ready: bool | None = None
    lifetime_map_full: int | None = None


@dataclass(frozen=True, slots=True)
class FullScans:
    """Full scans traced from ``ksm_start_scan`` to ``ksm_stop_scan`` since the start."""

    count: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    last_wall_s: float | None = None
    last_cpu_s: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one scrape exposes.

    Attributes:
        sample: kernel counters at the end of the last interval.
        series: the top-N process series by savings, then the ``other`` series last.
        full_scans: traced full scans.
        scan_overhead_ns: ksmd CPU traced between pages of its passes (no process).
        lost: lost events by EventKind value, every kind present.
        probe: the source's self-description.
        intervals: intervals accounted so far.
        processes_tracked: processes with totals kept now.
        processes_seen: distinct processes accounted so far.
        top_n: the series bound (processes with their own series).
        published_s: exporter clock (seconds) when the snapshot was built.
        source_up: False once the source ended.
    """

    sample: HostSample
    series: tuple[SeriesValues, ...]
    full_scans: FullScans
    scan_overhead_ns: int
    lost: tuple[tuple[int, int], ...]
    probe: ProbeReport
    intervals: int
    processes_tracked: int
    processes_seen: int
    top_n: int
    published_s: float
    source_up: bool = True
