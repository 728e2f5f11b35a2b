"""The host overview dashboard: saved memory, ksmd's cost, efficiency, churn, scanning, knobs."""

from __future__ import annotations

from ksmtrace import metrics_names as n
from ksmtrace.dashboards.grafana import (
    JSON,
    Layout,
    Panel,
    Query,
    dashboard,
    rate,
    sel,
    standard_variables,
)

UID = "ksmtrace-host"
PAGES_PER_S = "suffix: pages/s"
MIB = 1024 * 1024

_KNOB = n.SYSFS_METRICS


def _savings(lay: Layout) -> None:
    lay.row("Savings")
    lay.add(
        Panel(
            "Memory saved by KSM",
            "ksmtrace_saved_bytes: (pages_sharing + ksm_zero_pages) x page size, what KSM "
            "saves now. General profit subtracts KSM's own metadata (rmap items) and can be "
            "negative when much memory is scanned but little merges.",
            "bytes",
            (
                Query(sel(n.SAVED_BYTES), "saved {{instance}}"),
                Query(sel(_KNOB["general_profit"]), "profit after metadata {{instance}}"),
            ),
            min_zero=False,
        )
    )
    lay.add(
        Panel(
            "KSM pages",
            "The kernel's page counters: pages_shared KSM pages are mapped pages_sharing more "
            "times (the saving); pages_unshared are unique pages checked again and again, "
            "pages_volatile change too fast to merge.",
            "suffix: pages",
            tuple(
                Query(sel(_KNOB[f]), f"{f} {{{{instance}}}}")
                for f in ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")
            )
            + (Query(sel(_KNOB["ksm_zero_pages"]), "ksm_zero_pages {{instance}}"),),
        )
    )


def _cost(lay: Layout) -> None:
    lay.row("Cost")
    cpu = rate(sel(n.KSMD_CPU))
    lay.add(
        Panel(
            "ksmd CPU",
            "CPU time of the ksmd kernel thread per second (1 = one core busy), from taskstats.",
            "percentunit",
            (Query(cpu, "ksmd {{instance}}"),),
        )
    )
    lay.add(
        Panel(
            "Efficiency: saved MiB per ksmd CPU-second",
            "Memory KSM keeps saved divided by the CPU ksmd burns to keep it: MiB saved per "
            "CPU-second of ksmd per second. Higher is better; empty while ksmd is idle.",
            "suffix: MiB/CPU-s",
            (Query(f"{sel(n.SAVED_BYTES)} / {MIB} / ({cpu} > 0)", "{{instance}}"),),
        )
    )
    lay.add(
        Panel(
            "Scan rate",
            "Pages ksmd scans per second (pages_scanned) and pages smart scan skips.",
            PAGES_PER_S,
            (
                Query(rate(sel(_KNOB["pages_scanned"])), "scanned {{instance}}"),
                Query(rate(sel(_KNOB["pages_skipped"])), "skipped {{instance}}"),
            ),
        )
    )
    lay.add(
        Panel(
            "Full-scan time",
            "How long ksmd takes to pass over all mergeable memory once (wall time and ksmd "
            "CPU of the last traced scan, and the average over the rate window). A page "
            "waits up to one full scan before it merges.",
            "s",
            (
                Query(sel(n.LAST_FULL_SCAN_DURATION), "last, wall {{instance}}"),
                Query(sel(n.LAST_FULL_SCAN_CPU), "last, CPU {{instance}}"),
                Query(
                    f"{rate(sel(n.FULL_SCAN_DURATION.name + '_sum'))} / "
                    f"{rate(sel(n.FULL_SCAN_DURATION.name + '_count'))}",
                    "average, wall {{instance}}",
                ),
            ),
        )
    )


def _churn(lay: Layout) -> None:
    lay.row("Churn")
    merges = f"sum by (instance) ({rate(sel(n.PROCESS_MERGES))})"
    lay.add(
        Panel(
            "Merges and unshares",
            "Pages merged per second (traced, all processes) against cow_ksm: KSM pages "
            "copied or unshared again for any reason; write COWs are the part caused by "
            "processes writing to merged pages.",
            PAGES_PER_S,
            (
                Query(merges, "merges {{instance}}"),
                Query(rate(sel(n.COW_KSM)), "cow_ksm {{instance}}"),
                Query(
                    f"sum by (instance) ({rate(sel(n.PROCESS_COW_UNMERGES))})",
                    "write COWs {{instance}}",
                ),
            ),
        )
    )
    lay.add(
        Panel(
            "Churn: unshares per merge",
            "cow_ksm per merge. Near 0: merged pages stay merged. Near or above 100%: pages "
            "are merged and broken again, and ksmd's work is mostly wasted.",
            "percentunit",
            (
                Query(
                    f"sum by (instance) ({rate(sel(n.COW_KSM))}) / ({merges} > 0)", "{{instance}}"
                ),
            ),
        )
    )
    lay.add(
        Panel(
            "Unshared without a write, by kind",
            "KSM pages unshared by madvise(MADV_UNMERGEABLE), prctl(PR_SET_MEMORY_MERGE, 0), "
            "ksmd undoing half a pair merge, or run=2, per second.",
            PAGES_PER_S,
            (
                Query(
                    f"sum by (instance, kind) ({rate(sel(n.PROCESS_UNMERGES))})",
                    "{{kind}} {{instance}}",
                ),
            ),
            stack=True,
        )
    )


def _knobs(lay: Layout) -> None:
    lay.row("Knobs")
    lay.add(
        Panel(
            "Switches",
            "run (0 stopped, 1 running, 2 unmerge all), merge_across_nodes, use_zero_pages, "
            "smart_scan: a step shows when someone changed a knob.",
            "none",
            tuple(
                Query(sel(_KNOB[f]), f"{f} {{{{instance}}}}")
                for f in ("run", "merge_across_nodes", "use_zero_pages", "smart_scan")
            ),
        )
    )
    lay.add(
        Panel(
            "Scan speed knobs",
            "pages_to_scan: pages per batch; max_page_sharing: most mappings per KSM page.",
            "suffix: pages",
            (
                Query(sel(_KNOB["pages_to_scan"]), "pages_to_scan {{instance}}"),
                Query(sel(_KNOB["max_page_sharing"]), "max_page_sharing {{instance}}"),
            ),
        )
    )
    lay.add(
        Panel(
            "Sleep between batches",
            "sleep_millisecs as seconds: with pages_to_scan it sets how fast ksmd scans.",
            "s",
            (Query(sel(_KNOB["sleep_millisecs"]), "sleep {{instance}}"),),
        )
    )


def _health(lay: Layout) -> None:
    lay.row("Exporter health")
    lay.add(
        Panel(
            "Collectors",
            "1 when a collector of the exporter had its data in the last scrape, 0 when not "
            "(for example ksmd's CPU time cannot be read).",
            "none",
            (
                Query(
                    f"min by (instance, collector) ({sel(n.COLLECTOR_SUCCESS)})",
                    "{{collector}} {{instance}}",
                ),
            ),
        )
    )
    lay.add(
        Panel(
            "Lost events",
            "Kernel-side events the probes could not deliver, per second and kind: when not "
            "0, per-process counts are too low.",
            "suffix: events/s",
            (
                Query(
                    f"sum by (instance, kind) ({rate(sel(n.LOST_EVENTS))})",
                    "{{kind}} {{instance}}",
                ),
            ),
        )
    )
    lay.add(
        Panel(
            "Data age",
            "Age of the snapshot the exporter serves; it grows if the event source stalls.",
            "s",
            (Query(sel(n.SNAPSHOT_AGE), "{{instance}}"),),
        )
    )
    lay.add(
        Panel(
            "Processes",
            "Processes the exporter keeps totals for, against the series bound (--top): "
            "processes beyond it are summed as 'other'.",
            "short",
            (
                Query(sel(n.PROCESSES_TRACKED), "tracked {{instance}}"),
                Query(sel(n.PROCESS_SERIES_LIMIT), "own series {{instance}}"),
            ),
        )
    )


def host_dashboard() -> JSON:
    """The host overview dashboard."""
    lay = Layout()
    for part in (_savings, _cost, _churn, _knobs, _health):
        part(lay)
    return dashboard(
        UID,
        "KSM host overview (ksmtrace)",
        "What KSM saves on each host, what ksmd costs, how much merged memory is broken "
        "again, and the knobs that drive it. Per VM and per process: 'KSM processes and VMs'.",
        standard_variables(),
        lay,
    )
