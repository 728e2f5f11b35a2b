# mypy: disable-error-code="no-untyped-def"
"""Compiled model of the scan-time advisor (``scan_time_advisor`` in mm/ksm.c, 6.8+)."""

from __future__ import annotations

from ksmtrace.engine.evbuf import K_ADVISOR, emit
from ksmtrace.engine.jit import compiled
from ksmtrace.engine.layout import (
    ADV_CHANGE,
    ADV_CPU,
    ADV_MAX_CPU,
    ADV_MAX_PAGES,
    ADV_SCAN_TIME,
    ADV_START,
    ADV_TARGET_S,
    CPU_NS,
    NOW,
    PAGES_TO_SCAN,
    SPENT,
)

#: KSM_ADVISOR_MIN_CPU: the advisor never plans for less than 10 % of a CPU.
ADVISOR_MIN_CPU = 10
#: EWMA_WEIGHT of the change factor, in percent.
EWMA_WEIGHT = 30


@compiled
def scan_time_advisor(g, ev):
    """Set pages_to_scan for the next pass from this pass's wall time and ksmd CPU.

    Integer arithmetic as in the kernel: scan time in whole seconds (at least 1), CPU in
    whole percent (at least 1), the change factor smoothed by an EWMA starting at 0.
    """
    now = g[NOW] + g[SPENT]
    scan_time = (now - g[ADV_START]) // 1_000_000_000
    if scan_time == 0:
        scan_time = 1
    cpu = g[CPU_NS] + g[SPENT]
    cpu_ms = (cpu - g[ADV_CPU]) // 1_000_000
    cpu_percent = cpu_ms * 100 // (scan_time * 1000)
    if cpu_percent == 0:
        cpu_percent = 1
    last = g[ADV_SCAN_TIME] if g[ADV_SCAN_TIME] else scan_time
    factor = g[ADV_TARGET_S] * 100 // scan_time
    if factor == 0:
        factor = 1
    change = scan_time * 100 // last
    if change == 0:
        change = 1
    change = ((100 - EWMA_WEIGHT) * g[ADV_CHANGE] + EWMA_WEIGHT * change) // 100
    pages = g[PAGES_TO_SCAN] * 100 // factor
    pages = pages * change // 100
    per_page_cost = g[PAGES_TO_SCAN] // cpu_percent
    if per_page_cost == 0:
        per_page_cost = 1
    pages = min(pages, per_page_cost * g[ADV_MAX_CPU])
    pages = max(pages, per_page_cost * ADVISOR_MIN_CPU)
    pages = min(pages, g[ADV_MAX_PAGES])
    g[ADV_CHANGE] = change
    g[ADV_SCAN_TIME] = scan_time
    g[ADV_CPU] = cpu
    g[PAGES_TO_SCAN] = pages
    emit(g, ev, K_ADVISOR, 0, 0, scan_time, pages, 0, cpu_percent)
