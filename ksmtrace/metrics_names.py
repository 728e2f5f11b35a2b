"""The Prometheus metric names ksmtrace exposes: one table for the exporter, exports and dashboards.

Global KSM metrics keep node_exporter's ``ksmd`` collector naming (``collector/ksmd_linux.go``:
the sysfs file name, ``full_scans`` as a ``_total`` counter, ``sleep_millisecs`` converted to
``sleep_seconds``) under the ``ksmtrace_`` prefix, so a query written for
``node_ksmd_pages_sharing`` works here as ``ksmtrace_pages_sharing``. Everything else follows
the Prometheus naming rules: base units in the name, ``_total`` on counters.

Per-process metrics carry :data:`PROCESS_LABELS`. Only the top N processes by savings get
their own series; the rest are summed into one series whose labels are all :data:`OTHER`.
Standard library only: the trace exporter and the dashboards read this table without
prometheus_client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from ksmtrace.events import ProcessIdentity

MetricType = Literal["gauge", "counter", "summary", "histogram", "info"]

PREFIX: Final = "ksmtrace_"

#: Labels of every per-process series, in this order.
PROCESS_LABELS: Final = ("pid", "comm", "vm", "cgroup")

#: Value of every process label on the series that sums the processes outside the top N.
OTHER: Final = "other"


def process_label_values(identity: ProcessIdentity) -> tuple[str, str, str, str]:
    """The :data:`PROCESS_LABELS` values of a process: pid, comm, vm, cgroup.

    ``vm`` is the VM name, empty for processes that are not virtual machines; ``cgroup`` is
    the container ("container:<id>"), pod, systemd unit or cgroup path
    (:meth:`ProcessIdentity.group_key`), so the processes of one container share a value.
    """
    return (str(identity.pid), identity.comm, identity.vm or "", identity.group_key("cgroup"))


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family.

    Attributes:
        name: The name queries use: counters end in ``_total``; histogram and summary names
            are the base of their ``_bucket``/``_sum``/``_count`` samples; info names end in
            ``_info``.
        type: Prometheus metric type.
        help: HELP text: what it counts, in which unit, and where the value comes from.
        labels: Label names, in order.
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        """Name without the ``_total``/``_info`` suffix (what client libraries call the family)."""
        if self.type == "counter":
            return self.name.removesuffix("_total")
        if self.type == "info":
            return self.name.removesuffix("_info")
        return self.name

    @property
    def samples(self) -> tuple[str, ...]:
        """Names of the samples this family exposes in the text format."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.type == "summary":
            return (f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _m(name: str, type_: MetricType, help_: str, labels: tuple[str, ...] = ()) -> Metric:
    return Metric(PREFIX + name, type_, help_, labels)


_SYSFS = "/sys/kernel/mm/ksm/"

#: sysfs file -> metric, for the files exported as they are (node_exporter names first).
SYSFS_METRICS: Final[dict[str, Metric]] = {
    "pages_shared": _m("pages_shared", "gauge", f"KSM pages in use ({_SYSFS}pages_shared)."),
    "pages_sharing": _m(
        "pages_sharing",
        "gauge",
        f"Page mappings sharing a KSM page beyond the first: pages saved ({_SYSFS}pages_sharing).",
    ),
    "pages_unshared": _m(
        "pages_unshared",
        "gauge",
        f"Unique pages repeatedly checked for merging ({_SYSFS}pages_unshared).",
    ),
    "pages_volatile": _m(
        "pages_volatile",
        "gauge",
        f"Pages changing too fast to be merged ({_SYSFS}pages_volatile).",
    ),
    "full_scans": _m(
        "full_scans_total",
        "counter",
        f"Full passes of ksmd over all mergeable memory ({_SYSFS}full_scans).",
    ),
    "run": _m("run", "gauge", f"ksmd state: 0 stopped, 1 running, 2 unmerge all ({_SYSFS}run)."),
    "pages_to_scan": _m(
        "pages_to_scan", "gauge", f"Pages ksmd scans per batch ({_SYSFS}pages_to_scan)."
    ),
    "sleep_millisecs": _m(
        "sleep_seconds", "gauge", f"Sleep of ksmd between batches ({_SYSFS}sleep_millisecs)."
    ),
    "merge_across_nodes": _m(
        "merge_across_nodes",
        "gauge",
        f"1 if pages of different NUMA nodes may merge ({_SYSFS}merge_across_nodes).",
    ),
    "ksm_zero_pages": _m(
        "ksm_zero_pages",
        "gauge",
        f"Empty pages KSM replaced by the zero page, with use_zero_pages ({_SYSFS}ksm_zero_pages).",
    ),
    "pages_scanned": _m(
        "pages_scanned_total", "counter", f"Pages ksmd has scanned ({_SYSFS}pages_scanned)."
    ),
    "pages_skipped": _m(
        "pages_skipped_total",
        "counter",
        f"Pages smart scan skipped because they did not merge lately ({_SYSFS}pages_skipped).",
    ),
    "general_profit": _m(
        "general_profit_bytes",
        "gauge",
        f"Memory saved minus KSM's own metadata, may be negative ({_SYSFS}general_profit).",
    ),
    "max_page_sharing": _m(
        "max_page_sharing",
        "gauge",
        f"Most mappings one KSM page may have ({_SYSFS}max_page_sharing).",
    ),
    "use_zero_pages": _m(
        "use_zero_pages",
        "gauge",
        f"1 if empty pages merge with the zero page ({_SYSFS}use_zero_pages).",
    ),
    "smart_scan": _m(
        "smart_scan", "gauge", f"1 if ksmd skips pages that did not merge ({_SYSFS}smart_scan)."
    ),
    "stable_node_chains": _m(
        "stable_node_chains",
        "gauge",
        f"KSM pages shared more than max_page_sharing times ({_SYSFS}stable_node_chains).",
    ),
    "stable_node_dups": _m(
        "stable_node_dups",
        "gauge",
        f"Duplicate KSM pages in stable node chains ({_SYSFS}stable_node_dups).",
    ),
}

SAVED_BYTES: Final = _m(
    "saved_bytes",
    "gauge",
    "Memory KSM saves: (pages_sharing + ksm_zero_pages) times the page size.",
)
COW_KSM: Final = _m(
    "cow_ksm_total",
    "counter",
    "KSM pages copied or unshared again, any cause (/proc/vmstat cow_ksm).",
)
KSM_SWPIN_COPY: Final = _m(
    "ksm_swpin_copy_total",
    "counter",
    "KSM pages copied when swapped in (/proc/vmstat ksm_swpin_copy).",
)
KSMD_CPU: Final = _m(
    "ksmd_cpu_seconds_total", "counter", "CPU time of the ksmd kernel thread (taskstats)."
)
SCAN_OVERHEAD_CPU: Final = _m(
    "scan_overhead_cpu_seconds_total",
    "counter",
    "ksmd CPU time traced between the pages of its passes, charged to no process.",
)
FULL_SCAN_DURATION: Final = _m(
    "full_scan_duration_seconds",
    "summary",
    "Wall time of the full scans traced from ksm_start_scan to ksm_stop_scan.",
)
FULL_SCAN_CPU: Final = _m(
    "full_scan_cpu_seconds", "summary", "ksmd CPU time of the full scans traced."
)
LAST_FULL_SCAN_DURATION: Final = _m(
    "last_full_scan_duration_seconds", "gauge", "Wall time of the last full scan traced."
)
LAST_FULL_SCAN_CPU: Final = _m(
    "last_full_scan_cpu_seconds", "gauge", "ksmd CPU time of the last full scan traced."
)

_PL = PROCESS_LABELS
PROCESS_MERGES: Final = _m(
    "process_merges_total", "counter", "Pages of the process merged by ksmd (traced).", _PL
)
PROCESS_COW_UNMERGES: Final = _m(
    "process_cow_unmerges_total",
    "counter",
    "KSM pages the process copied by writing to them (traced write faults).",
    _PL,
)
PROCESS_UNMERGES: Final = _m(
    "process_unmerges_total",
    "counter",
    "KSM pages of the process unshared without a write fault, by kind (traced).",
    (*_PL, "kind"),
)
PROCESS_PAGES_SCANNED: Final = _m(
    "process_pages_scanned_total", "counter", "Pages of the process ksmd scanned (traced).", _PL
)
PROCESS_SCAN_CPU: Final = _m(
    "process_scan_cpu_seconds_total",
    "counter",
    "ksmd CPU time spent scanning the process (traced).",
    _PL,
)
PROCESS_MERGING_PAGES: Final = _m(
    "process_merging_pages",
    "gauge",
    "Pages of the process that map a KSM page (/proc/<pid>/ksm_stat ksm_merging_pages).",
    _PL,
)
PROCESS_PROFIT: Final = _m(
    "process_profit_bytes",
    "gauge",
    "Memory KSM saves for the process minus its metadata, may be negative "
    "(/proc/<pid>/ksm_stat ksm_process_profit).",
    _PL,
)
PROCESS_SAVED: Final = _m(
    "process_saved_bytes",
    "gauge",
    "The process's share of ksmtrace_saved_bytes: merging pages times "
    "pages_sharing/(pages_shared+pages_sharing), plus its KSM zero pages.",
    _PL,
)
PROCESS_MERGE_LIFETIME: Final = _m(
    "process_merge_lifetime_seconds",
    "histogram",
    "Time from a page's merge to the write that copied it again (traced COWs whose merge "
    "was seen).",
    _PL,
)

COLLECTOR_SUCCESS: Final = _m(
    "scrape_collector_success",
    "gauge",
    "1 if the collector had data and produced its metrics in this scrape.",
    ("collector",),
)
COLLECTOR_DURATION: Final = _m(
    "scrape_collector_duration_seconds",
    "gauge",
    "Time the collector took in this scrape.",
    ("collector",),
)
LOST_EVENTS: Final = _m(
    "lost_events_total",
    "counter",
    "Kernel-side events the probes could not deliver, by event kind.",
    ("kind",),
)
PROBE_INFO: Final = _m(
    "probe_info",
    "info",
    "The event source and probe set in use.",
    ("source", "cow_check", "headers"),
)
SCAN_SITE_READY: Final = _m(
    "scan_site_ready",
    "gauge",
    "1 once ksmd's scan site is recognised, so pages scanned per process are exact.",
)
LIFETIME_MAP_FULL: Final = _m(
    "probe_lifetime_map_full_total",
    "counter",
    "Merges whose time could not be remembered (lifetime map full): their COWs have no lifetime.",
)
SOURCE_UP: Final = _m(
    "source_up", "gauge", "1 while the event source delivers data, 0 after it ended or failed."
)
SNAPSHOT_AGE: Final = _m(
    "snapshot_age_seconds",
    "gauge",
    "Age of the data served: every metric is read from the snapshot the source published last.",
)
SNAPSHOTS: Final = _m("snapshots_total", "counter", "Intervals the exporter has accounted.")
PROCESSES_TRACKED: Final = _m(
    "processes_tracked", "gauge", "Processes the exporter currently keeps totals for."
)
PROCESSES_SEEN: Final = _m(
    "processes_seen_total", "counter", "Distinct processes the exporter has accounted."
)
PROCESS_SERIES_LIMIT: Final = _m(
    "process_series_limit",
    "gauge",
    "Most processes exposed with their own series (--top); the rest are summed as 'other'.",
)
BUILD_INFO: Final = _m("build_info", "info", "ksmtrace version.", ("version",))

#: Every metric ksmtrace exposes, in exposition order.
ALL: Final[tuple[Metric, ...]] = (
    *SYSFS_METRICS.values(),
    SAVED_BYTES,
    COW_KSM,
    KSM_SWPIN_COPY,
    KSMD_CPU,
    SCAN_OVERHEAD_CPU,
    FULL_SCAN_DURATION,
    FULL_SCAN_CPU,
    LAST_FULL_SCAN_DURATION,
    LAST_FULL_SCAN_CPU,
    PROCESS_MERGES,
    PROCESS_COW_UNMERGES,
    PROCESS_UNMERGES,
    PROCESS_PAGES_SCANNED,
    PROCESS_SCAN_CPU,
    PROCESS_MERGING_PAGES,
    PROCESS_PROFIT,
    PROCESS_SAVED,
    PROCESS_MERGE_LIFETIME,
    COLLECTOR_SUCCESS,
    COLLECTOR_DURATION,
    LOST_EVENTS,
    PROBE_INFO,
    SCAN_SITE_READY,
    LIFETIME_MAP_FULL,
    SOURCE_UP,
    SNAPSHOT_AGE,
    SNAPSHOTS,
    PROCESSES_TRACKED,
    PROCESSES_SEEN,
    PROCESS_SERIES_LIMIT,
    BUILD_INFO,
)

#: Sample name (``_bucket``, ``_sum``... included) -> its metric family.
BY_SAMPLE: Final[dict[str, Metric]] = {s: m for m in ALL for s in m.samples}
