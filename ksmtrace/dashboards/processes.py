"""The per-VM / per-process drill-down: savings, merges and COW rates, lifetimes, scan cost."""

from __future__ import annotations

from ksmtrace import metrics_names as n
from ksmtrace.dashboards.grafana import (
    JSON,
    Layout,
    Panel,
    Query,
    dashboard,
    query_variable,
    rate,
    sel,
    standard_variables,
)

UID = "ksmtrace-processes"
PAGES_PER_S = "suffix: pages/s"

#: Matchers of the dashboard's vm and comm variables, on every per-process query.
PICK = ('vm=~"$vm"', 'comm=~"$comm"')
IS_VM = 'vm!~"|other"'  # not the sum of the processes outside the top N
WHO = "instance, pid, comm, vm"
WHO_LEGEND = "{{comm}} {{pid}} {{vm}} {{instance}}"
OTHER_NOTE = (
    " Processes outside the exporter's top N (by savings) are summed in the series labelled "
    "'other'."
)


def psel(metric: n.Metric | str, *matchers: str) -> str:
    """A per-process selector: job, instance, vm and comm variables applied."""
    return sel(metric, *matchers, extra=PICK)


def _savings(lay: Layout) -> None:
    lay.row("Savings")
    lay.add(
        Panel(
            "Saved memory by process",
            "Each process's share of the memory KSM saves: its merging pages times "
            "pages_sharing / (pages_shared + pages_sharing), plus its KSM zero pages." + OTHER_NOTE,
            "bytes",
            (Query(f"sum by ({WHO}) ({psel(n.PROCESS_SAVED)})", WHO_LEGEND),),
            stack=True,
        )
    )
    lay.add(
        Panel(
            "Saved memory by VM",
            "The same share summed per virtual machine (QEMU, Firecracker, Cloud Hypervisor).",
            "bytes",
            (Query(f"sum by (instance, vm) ({psel(n.PROCESS_SAVED, IS_VM)})", "{{vm}}"),),
            stack=True,
        )
    )
    lay.add(
        Panel(
            "Saved memory by cgroup",
            "The same share summed per container, pod, systemd unit or cgroup.",
            "bytes",
            (Query(f"sum by (instance, cgroup) ({psel(n.PROCESS_SAVED)})", "{{cgroup}}"),),
            stack=True,
        )
    )
    lay.add(
        Panel(
            "Merging pages",
            "Pages of each process that map a KSM page (ksm_merging_pages in "
            "/proc/<pid>/ksm_stat)." + OTHER_NOTE,
            "suffix: pages",
            (Query(f"sum by ({WHO}) ({psel(n.PROCESS_MERGING_PAGES)})", WHO_LEGEND),),
        )
    )
    lay.add(
        Panel(
            "KSM profit",
            "ksm_process_profit from /proc/<pid>/ksm_stat: the process's saving minus its KSM "
            "metadata (rmap items); negative when much of it is scanned but little merges.",
            "bytes",
            (Query(f"sum by ({WHO}) ({psel(n.PROCESS_PROFIT)})", WHO_LEGEND),),
            min_zero=False,
        )
    )


def _activity(lay: Layout) -> None:
    lay.row("Merges and copy-on-write")
    lay.add(
        Panel(
            "Merges",
            "Pages of each process merged by ksmd per second (traced)." + OTHER_NOTE,
            PAGES_PER_S,
            (Query(f"sum by ({WHO}) ({rate(psel(n.PROCESS_MERGES))})", WHO_LEGEND),),
        )
    )
    lay.add(
        Panel(
            "Copy-on-write unmerges",
            "Merged pages each process copied by writing to them, per second: memory that "
            "KSM saved and the process took back.",
            PAGES_PER_S,
            (Query(f"sum by ({WHO}) ({rate(psel(n.PROCESS_COW_UNMERGES))})", WHO_LEGEND),),
        )
    )
    lay.add(
        Panel(
            "Other unmerges",
            "Pages each process unshared without writing (madvise, prctl, ksmd undo, run=2), "
            "per second and kind.",
            PAGES_PER_S,
            (
                Query(
                    f"sum by ({WHO}, kind) ({rate(psel(n.PROCESS_UNMERGES))})",
                    "{{kind}} " + WHO_LEGEND,
                ),
            ),
        )
    )
    lay.add(
        Panel(
            "Merge lifetime",
            "How long merged pages stayed merged before a write copied them, over the "
            "processes selected: short lifetimes mean ksmd merges pages that are about to "
            "change (wasted work and latency).",
            "s",
            (
                Query(
                    f"sum by (le) ({rate(psel(n.PROCESS_MERGE_LIFETIME.name + '_bucket'))})",
                    "{{le}}",
                    heatmap=True,
                ),
            ),
            kind="heatmap",
        )
    )
    lay.add(
        Panel(
            "Median merge lifetime",
            "Median time from merge to copy-on-write per process, from the lifetime histogram.",
            "s",
            (
                Query(
                    "histogram_quantile(0.5, sum by (le, instance, pid, comm, vm) "
                    f"({rate(psel(n.PROCESS_MERGE_LIFETIME.name + '_bucket'))}))",
                    WHO_LEGEND,
                ),
            ),
        )
    )


def _cost(lay: Layout) -> None:
    lay.row("Scan cost")
    ksmd = f"sum by (job, instance) ({rate(sel(n.KSMD_CPU))})"
    lay.add(
        Panel(
            "Share of ksmd CPU",
            "Part of ksmd's CPU time spent scanning each process. A large share with little "
            "saving marks a process that is expensive to keep mergeable.",
            "percentunit",
            (
                Query(
                    f"sum by (job, {WHO}) ({rate(psel(n.PROCESS_SCAN_CPU))}) "
                    f"/ on (job, instance) group_left () ({ksmd} > 0)",
                    WHO_LEGEND,
                ),
            ),
            stack=True,
        )
    )
    lay.add(
        Panel(
            "Pages scanned",
            "Pages of each process ksmd scanned per second.",
            PAGES_PER_S,
            (Query(f"sum by ({WHO}) ({rate(psel(n.PROCESS_PAGES_SCANNED))})", WHO_LEGEND),),
        )
    )


def processes_dashboard() -> JSON:
    """The per-VM / per-process drill-down dashboard."""
    lay = Layout()
    for part in (_savings, _activity, _cost):
        part(lay)
    base = 'ksmtrace_process_saved_bytes{job=~"$job",instance=~"$instance"}'
    variables = [
        *standard_variables(),
        query_variable("vm", "VM", f"label_values({base}, vm)"),
        query_variable("comm", "Process", f"label_values({base}, comm)"),
    ]
    return dashboard(
        UID,
        "KSM processes and VMs (ksmtrace)",
        "Per process, VM and cgroup: what KSM saves for each, how fast their merged pages "
        "are merged and broken again, how long merges last and what scanning them costs.",
        variables,
        lay,
    )
