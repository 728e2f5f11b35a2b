"""One JSON object per interval (``ksmtrace trace --json``), stable field names for scripts."""

from __future__ import annotations

import json
import time
from typing import Any

from ksmtrace.aggregate import IntervalReport, ProcessInterval


def _process(row: ProcessInterval) -> dict[str, Any]:
    ident = row.identity
    return {
        "pid": row.pid,
        "comm": ident.comm,
        "vm": ident.vm,
        "cgroup": ident.cgroup,
        "container": ident.container,
        "unit": ident.unit,
        "alive": row.alive,
        "saved_bytes": row.saved_bytes,
        "merging_pages": row.merging_pages,
        "zero_pages": row.zero_pages,
        "rmap_items": row.rmap_items,
        "profit_bytes": row.profit_bytes,
        "merges": row.merges,
        "merge_failures": row.failures,
        "zero_merges": row.zero_merges,
        "cows": row.cows,
        "zero_cows": row.zero_cows,
        "unmerged": row.unmerged,
        "churn": row.churn,
        "lifetime_p50_s": row.lifetime_p50_s,
        "pages_scanned": row.scanned,
        "scan_cpu_ns": row.scan_cpu_ns,
        "scan_estimated": row.scan_estimated,
    }


def interval_object(rep: IntervalReport) -> dict[str, Any]:
    """The JSON-ready dict for one interval."""
    s = rep.sample
    led = rep.ledger
    return {
        "time": time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(s.wall_ns / 1e9 if s.wall_ns else None)
        ),
        "start_ns": rep.start_ns,
        "end_ns": rep.end_ns,
        "interval_s": round(rep.seconds, 6),
        "ksm": dict(s.ksm),
        "vmstat": dict(s.vmstat),
        "page_size": s.page_size,
        "saved_bytes": s.saved_bytes,
        "general_profit_bytes": s.counter("general_profit"),
        "ksmd": {
            "cpu_ns": rep.ksmd_cpu_ns,
            "cpu_percent": round(rep.ksmd_cpu_ns / 1e7 / rep.seconds, 3),
            "scan_overhead_ns": rep.scan_overhead_ns,
            "full_scans": rep.full_scans,
            "last_full_scan_s": rep.full_scan_s,
            "last_full_scan_cpu_s": rep.full_scan_cpu_s,
            "last_full_scan_rmap_items": rep.full_scan_rmap_items,
        },
        "ledger": {
            "cow_ksm_delta": led.cow_ksm_delta,
            "write_cows": led.write_cows,
            "explicit": led.explicit,
            "ksmd_undo": led.ksmd_undo,
            "unattributed": led.unattributed,
        },
        "lost_events": rep.lost,
        "processes": [_process(r) for r in rep.processes],
    }


def format_interval_json(rep: IntervalReport) -> str:
    """One line of JSON for one interval."""
    return json.dumps(interval_object(rep), separators=(",", ":"))
