"""Custom prometheus_client collectors that build fresh metrics from the latest Snapshot.

Every scrape reads the snapshot the source thread published last and builds new metric
families from it; nothing is instrumented directly and nothing is kept between scrapes. As in
node_exporter, the work is split into named collectors, each timed and reported with
``ksmtrace_scrape_collector_success`` and ``..._duration_seconds``; a collector that fails or
has no data reports 0 and the others still answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ksmtrace import __version__
from ksmtrace import metrics_names as names
from ksmtrace.aggregate import LIFETIME_BUCKETS_S
from ksmtrace.exporter.snapshot import UNMERGE_KINDS, Snapshot, lost_label, unmerge_label

_log = logging.getLogger(__name__)

#: What one collector returns: its metric families and whether it had its data.
Collected = tuple[list[Metric], bool]


def gauge(m: names.Metric) -> GaugeMetricFamily:
    """An empty gauge family for a table entry."""
    assert m.type == "gauge", m
    return GaugeMetricFamily(m.family, m.help, labels=list(m.labels))


def counter(m: names.Metric) -> CounterMetricFamily:
    """An empty counter family for a table entry."""
    assert m.type == "counter", m
    return CounterMetricFamily(m.family, m.help, labels=list(m.labels))


def single(m: names.Metric, value: float) -> Metric:
    """A gauge or counter family with one unlabelled sample."""
    fam = gauge(m) if m.type == "gauge" else counter(m)
    fam.add_metric([], value)
    return fam


def info(m: names.Metric, values: tuple[str, ...]) -> Metric:
    """An info family with one sample whose labels are ``m.labels`` = ``values``."""
    assert m.type == "info", m
    fam = InfoMetricFamily(m.family, m.help)
    fam.add_metric([], dict(zip(m.labels, values, strict=True)))
    return fam


def summary(m: names.Metric, count: int, total: float) -> Metric:
    """A summary family (count and sum, no quantiles) with one unlabelled sample."""
    assert m.type == "summary", m
    fam = SummaryMetricFamily(m.family, m.help, labels=[])
    fam.add_metric([], count_value=count, sum_value=total)
    return fam


#: ``le`` label values of the merge-lifetime histogram.
LIFETIME_LE: tuple[str, ...] = tuple(
    floatToGoString(b)  # type: ignore[no-untyped-call]
    for b in LIFETIME_BUCKETS_S
)


def ksm_metrics(snap: Snapshot) -> Collected:
    """/sys/kernel/mm/ksm: node_exporter's ksmd set and the files it lacks, plus saved bytes.

    Files this kernel does not have are skipped.
    """
    ksm = snap.sample.ksm
    out = []
    for file, m in names.SYSFS_METRICS.items():
        value = ksm.get(file)
        if isinstance(value, int):
            out.append(single(m, value / 1000 if file == "sleep_millisecs" else value))
    out.append(single(names.SAVED_BYTES, snap.sample.saved_bytes))
    return out, "pages_sharing" in ksm


def vmstat_metrics(snap: Snapshot) -> Collected:
    """The KSM lines of /proc/vmstat."""
    vm = snap.sample.vmstat
    out = []
    for key, m in (("cow_ksm", names.COW_KSM), ("ksm_swpin_copy", names.KSM_SWPIN_COPY)):
        if key in vm:
            out.append(single(m, vm[key]))
    return out, "cow_ksm" in vm


def ksmd_metrics(snap: Snapshot) -> Collected:
    """The CPU time of ksmd (taskstats) and the full scans traced."""
    out = []
    cpu_known = snap.sample.ksmd_cpu_ns >= 0
    if cpu_known:
        out.append(single(names.KSMD_CPU, snap.sample.ksmd_cpu_ns / 1e9))
    out.append(single(names.SCAN_OVERHEAD_CPU, snap.scan_overhead_ns / 1e9))
    scans = snap.full_scans
    out.append(summary(names.FULL_SCAN_DURATION, scans.count, scans.wall_s))
    out.append(summary(names.FULL_SCAN_CPU, scans.count, scans.cpu_s))
    if scans.last_wall_s is not None:
        out.append(single(names.LAST_FULL_SCAN_DURATION, scans.last_wall_s))
    if scans.last_cpu_s is not None:
        out.append(single(names.LAST_FULL_SCAN_CPU, scans.last_cpu_s))
    return out, cpu_known


def process_metrics(snap: Snapshot) -> Collected:
    """The top-N process series and the ``other`` series."""
    merges = counter(names.PROCESS_MERGES)
    cows = counter(names.PROCESS_COW_UNMERGES)
    unmerges = counter(names.PROCESS_UNMERGES)
    scanned = counter(names.PROCESS_PAGES_SCANNED)
    scan_cpu = counter(names.PROCESS_SCAN_CPU)
    merging = gauge(names.PROCESS_MERGING_PAGES)
    profit = gauge(names.PROCESS_PROFIT)
    saved = gauge(names.PROCESS_SAVED)
    m = names.PROCESS_MERGE_LIFETIME
    lifetime = HistogramMetricFamily(m.family, m.help, labels=list(m.labels))
    for s in snap.series:
        labels = list(s.labels)
        merges.add_metric(labels, s.merges)
        cows.add_metric(labels, s.cows)
        for kind, n in zip(UNMERGE_KINDS, s.unmerged, strict=True):
            unmerges.add_metric([*labels, unmerge_label(kind)], n)
        scanned.add_metric(labels, s.scanned)
        scan_cpu.add_metric(labels, s.scan_cpu_ns / 1e9)
        merging.add_metric(labels, s.merging_pages)
        profit.add_metric(labels, s.profit_bytes)
        saved.add_metric(labels, s.saved_bytes)
        buckets = list(zip(LIFETIME_LE, map(float, accumulate(s.lifetime_counts)), strict=True))
        lifetime.add_metric(labels, buckets, sum_value=s.lifetime_sum_s)
    return [merges, cows, unmerges, scanned, scan_cpu, merging, profit, saved, lifetime], True


def probe_metrics(snap: Snapshot) -> Collected:
    """Lost events (every kind, 0 included), the probe set in use and its state."""
    lost = counter(names.LOST_EVENTS)
    for kind, n in snap.lost:
        lost.add_metric([lost_label(kind)], n)
    p = snap.probe
    out = [lost, info(names.PROBE_INFO, (p.source, p.cow_check, p.headers))]
    if p.scan_site_ready is not None:
        out.append(single(names.SCAN_SITE_READY, int(p.scan_site_ready)))
    if p.lifetime_map_full is not None:
        out.append(single(names.LIFETIME_MAP_FULL, p.lifetime_map_full))
    return out, True


#: The collectors, by the ``collector`` label value they report under.
COLLECTORS: dict[str, Callable[[Snapshot], Collected]] = {
    "ksm": ksm_metrics,
    "vmstat": vmstat_metrics,
    "ksmd": ksmd_metrics,
    "processes": process_metrics,
    "probes": probe_metrics,
}


class SnapshotBoard:
    """Where the source thread publishes snapshots and scrapes pick up the latest one.

    Publishing replaces one reference; a scrape reads it once, so it always sees one whole,
    never-changing snapshot.
    """

    def __init__(self) -> None:
        self._latest: Snapshot | None = None

    def publish(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on."""
        self._latest = snapshot

    @property
    def latest(self) -> Snapshot | None:
        """The snapshot to serve (None before the first interval ended)."""
        return self._latest


class KsmtraceCollector(Collector):
    """Runs every collector on the latest snapshot and reports their success and duration."""

    def __init__(self, board: SnapshotBoard, clock: Callable[[], float] = time.monotonic):
        """Collect from ``board``; ``clock`` (seconds) times the collectors and snapshot age."""
        self.board = board
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Build every family from one snapshot (called by the registry on each scrape)."""
        snap = self.board.latest
        success = gauge(names.COLLECTOR_SUCCESS)
        duration = gauge(names.COLLECTOR_DURATION)
        for name, collector in COLLECTORS.items():
            start = self.clock()
            ok = False
            if snap is not None:
                try:
                    fams, ok = collector(snap)
                    yield from fams
                except Exception:  # one broken collector must not take the scrape down
                    _log.exception("collector %s failed", name)
                    ok = False
            duration.add_metric([name], self.clock() - start)
            success.add_metric([name], int(ok))
        yield success
        yield duration
        yield from self._self_metrics(snap)

    def _self_metrics(self, snap: Snapshot | None) -> Iterator[Metric]:
        yield info(names.BUILD_INFO, (__version__,))
        yield single(names.SOURCE_UP, int(snap is not None and snap.source_up))
        if snap is None:
            return
        yield single(names.SNAPSHOT_AGE, max(0.0, self.clock() - snap.published_s))
        yield single(names.SNAPSHOTS, snap.intervals)
        yield single(names.PROCESSES_TRACKED, snap.processes_tracked)
        yield single(names.PROCESSES_SEEN, snap.processes_seen)
        yield single(names.PROCESS_SERIES_LIMIT, snap.top_n)
