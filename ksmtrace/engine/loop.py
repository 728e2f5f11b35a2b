# mypy: disable-error-code="no-untyped-def"
"""Compiled ksmd main loop (``ksm_scan_thread``): batches, jiffy-rounded sleeps, idling."""

from __future__ import annotations

import numpy as np

from ksmtrace.engine.inputs import apply_due
from ksmtrace.engine.jit import compiled
from ksmtrace.engine.layout import (
    C_BATCH,
    C_WAKE,
    CPU_NS,
    EV_COUNT,
    JIFFY_NS,
    MM_NEXT,
    N_NODES_LIVE,
    NOW,
    OP_POS,
    PAGES_TO_SCAN,
    RECORD,
    RNG,
    RUN,
    SLEEP_MS,
    SPENT,
)
from ksmtrace.engine.scan import do_batch

#: run_until stopped because it reached ``t_end``.
REACHED = 0
#: run_until stopped because the event buffer is nearly full (drain it and call again).
EVENTS_FULL = 1
#: run_until stopped because the node pool is nearly exhausted (grow it and call again).
NODES_FULL = 2


@compiled
def latency(g, cost):
    """A wake-up latency draw: exponential with mean ``cost[C_WAKE]`` (xorshift64*)."""
    mean = cost[C_WAKE]
    if mean <= 0.0:
        return 0
    x = np.uint64(g[RNG])
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    g[RNG] = np.int64(x)
    u = (float(x * np.uint64(2685821657736338717) >> np.uint64(11)) + 0.5) / 9007199254740992.0
    return int(-mean * np.log(u))


@compiled
def wake_time(g, cost, now):
    """When ksmd runs again after sleeping ``sleep_millisecs`` from ``now``.

    ``msecs_to_jiffies`` rounds up to N jiffies, and the timer wheel rounds the expiry up
    by one more jiffy so that a timer never fires early (``calc_index`` in
    kernel/time/timer.c): the timer fires at the jiffy boundary (floor(now / J) + N + 1) * J,
    and ksmd (nice 5) gets the CPU a scheduling latency later.
    """
    ms = g[SLEEP_MS]
    if ms <= 0:
        return now
    jiffy = g[JIFFY_NS]
    n = (ms * 1_000_000 + jiffy - 1) // jiffy
    return (now // jiffy + n + 1) * jiffy + latency(g, cost)


@compiled
def run_until(P, N, T, g, mmst, ev, S, cost, t_end, ev_margin):
    """Run ksmd (and apply the workload) until simulated time ``t_end``.

    Returns REACHED, EVENTS_FULL or NODES_FULL; in the latter two cases nothing is lost
    and the call can be repeated after the caller made room.
    """
    n_mm = mmst.shape[0] - 1
    n_op = S.op_t.shape[0]
    node_cap = N.content.shape[0]
    while True:
        now = g[NOW]
        if now >= t_end:
            apply_due(P, N, T, g, mmst, ev, S, t_end)
            return REACHED
        apply_due(P, N, T, g, mmst, ev, S, now)
        if g[RUN] == 1 and mmst[n_mm, MM_NEXT] != n_mm:
            if node_cap - g[N_NODES_LIVE] < 2 * g[PAGES_TO_SCAN] + 16:
                return NODES_FULL
            if g[RECORD] and g[EV_COUNT] + ev_margin > ev.shape[0]:
                return EVENTS_FULL
            g[SPENT] = int(cost[C_BATCH])
            do_batch(P, N, T, g, mmst, ev, n_mm, cost)
            spent = g[SPENT]
            g[SPENT] = 0
            g[CPU_NS] += spent
            g[NOW] = wake_time(g, cost, now + spent)
        else:
            oi = g[OP_POS]
            nxt = S.op_t[oi] if oi < n_op else t_end
            g[NOW] = max(now + 1, min(nxt, t_end))
