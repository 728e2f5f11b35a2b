"""A trace as OpenMetrics text with timestamps, for promtool tsdb create-blocks-from openmetrics.

Names, types and help come from :mod:`ksmtrace.metrics_names`, the table the live
exporter serves, so dashboards work on a loaded incident as on live data. Per-process
counters count from the start of the trace. OpenMetrics wants every family's samples
together and each series in time order, so the whole trace is gathered first (a few
values per process and interval) and written family by family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from ksmtrace import __version__
from ksmtrace import metrics_names as names
from ksmtrace.aggregate import Accumulator, share_of_savings
from ksmtrace.events import EventKind, HostSample, ProcessIdentity, UnmergeKind
from ksmtrace.export.timeline import wall_ns
from ksmtrace.replay import ReplaySource

Labels = tuple[tuple[str, str], ...]
#: metric -> labels -> [(timestamp s, value)]
Points = dict[names.Metric, dict[Labels, list[tuple[float, float]]]]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def process_labels(ident: ProcessIdentity) -> Labels:
    """pid, comm, vm, cgroup label pairs of a process."""
    values = names.process_label_values(ident)  # the live exporter's values too
    return tuple(zip(names.PROCESS_LABELS, values, strict=True))


class _Collector:
    def __init__(self) -> None:
        self.points: Points = {}

    def add(self, m: names.Metric, labels: Labels, ts: float, value: float) -> None:
        self.points.setdefault(m, {}).setdefault(labels, []).append((ts, value))


def gather(path: Path | None, on_warning: Callable[[str], None] | None = None) -> Points:
    """Replay a trace and collect every metric's values at every interval's end.

    Parts of a damaged trace that cannot be read are skipped and passed to ``on_warning``.
    """
    out = _Collector()
    acc = Accumulator()
    with ReplaySource(path, speed=0, on_warning=on_warning) as src:
        out.add(names.BUILD_INFO, (("version", __version__),), 0.0, 1)  # stamped below
        first_ts = None
        for tick in src.ticks():
            acc.add(tick)
            s = tick.sample
            ts = round(wall_ns(s, src.header) / 1e9, 3)
            first_ts = ts if first_ts is None else first_ts
            for file, m in names.SYSFS_METRICS.items():
                v = s.ksm.get(file)
                if isinstance(v, int):
                    out.add(m, (), ts, v / 1000 if file == "sleep_millisecs" else v)
            out.add(names.SAVED_BYTES, (), ts, s.saved_bytes)
            for key, m in (("cow_ksm", names.COW_KSM), ("ksm_swpin_copy", names.KSM_SWPIN_COPY)):
                if key in s.vmstat:
                    out.add(m, (), ts, s.vmstat[key])
            if s.ksmd_cpu_ns >= 0:
                out.add(names.KSMD_CPU, (), ts, s.ksmd_cpu_ns / 1e9)
            out.add(names.SCAN_OVERHEAD_CPU, (), ts, acc.scan_overhead_total_ns / 1e9)
            scans = acc.full_scan_times()
            out.add(names.FULL_SCAN_DURATION, (("", "count"),), ts, len(scans))
            out.add(names.FULL_SCAN_DURATION, (("", "sum"),), ts, sum(w for w, _ in scans))
            for kind in EventKind:
                n = src.lost_total.get(int(kind), 0)
                out.add(names.LOST_EVENTS, (("kind", kind.name.lower()),), ts, n)
            _processes(out, acc, tick.sample, ts)
        if first_ts is not None:
            out.points[names.BUILD_INFO] = {(("version", __version__),): [(first_ts, 1)]}
        else:
            out.points.pop(names.BUILD_INFO, None)
    return out.points


def _processes(out: _Collector, acc: Accumulator, sample: HostSample, ts: float) -> None:
    pids = set(acc.totals) | set(sample.processes)
    for pid in sorted(pids):
        ident = acc.identities.get(pid) or ProcessIdentity(pid)
        labels = process_labels(ident)
        t = acc.totals.get(pid)
        if t is not None:
            out.add(names.PROCESS_MERGES, labels, ts, t.merges)
            out.add(names.PROCESS_COW_UNMERGES, labels, ts, t.cows)
            for kind in UnmergeKind:
                n = t.unmerged.get(int(kind), 0)
                out.add(names.PROCESS_UNMERGES, (*labels, ("kind", kind.name.lower())), ts, n)
            out.add(names.PROCESS_PAGES_SCANNED, labels, ts, t.scanned)
            out.add(names.PROCESS_SCAN_CPU, labels, ts, t.scan_cpu_ns / 1e9)
        st = sample.processes.get(pid)
        if st is not None:
            out.add(names.PROCESS_MERGING_PAGES, labels, ts, st.merging_pages)
            out.add(names.PROCESS_PROFIT, labels, ts, st.process_profit)
            saved = share_of_savings(sample, st.merging_pages, st.zero_pages)
            out.add(names.PROCESS_SAVED, labels, ts, saved)


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _samples(m: names.Metric, series: dict[Labels, list[tuple[float, float]]]) -> Iterator[str]:
    for labels, points in series.items():
        suffix = ""
        if m.type == "summary":
            suffix = "_" + labels[0][1]
            labels = labels[1:]
        name = {"counter": m.family + "_total", "info": m.family + "_info"}.get(m.type, m.name)
        text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
        head = f"{name}{suffix}{{{text}}}" if text else f"{name}{suffix}"
        for ts, value in points:
            yield f"{head} {_fmt(value)} {ts:.3f}\n"


def write_points(points: Points, out: TextIO) -> int:
    """Write gathered values as OpenMetrics text; returns the number of samples written."""
    count = 0
    for m in names.ALL:
        series = points.get(m)
        if not series:
            continue
        out.write(f"# TYPE {m.family} {m.type}\n")
        out.write(f"# HELP {m.family} {_escape_help(m.help)}\n")
        for line in _samples(m, series):
            out.write(line)
            count += 1
    out.write("# EOF\n")
    return count
