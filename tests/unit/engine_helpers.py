"""Shared helpers of the engine tests: a fixed cost profile and pass-by-pass stepping."""

from __future__ import annotations

from ksmtrace.engine import CostProfile, Engine, Knobs, Workload
from ksmtrace.events import EventBatch, EventKind

#: Costs for tests (the real ones come from calibrate-cost); small next to the sleeps.
COST = CostProfile(
    ksm_page_ns=100, page_ns=400, merge_ns=1000, skip_ns=50, pass_ns=10_000, batch_ns=1000,
    extra={"tracer_factor": 0.5},
)  # fmt: skip
MS = 1_000_000
#: With pages_to_scan large and sleep_millisecs=20 (5 jiffies at HZ=250, plus the timer
#: wheel's extra jiffy), pass k (from 1) runs at (k-1)*24 ms.
PASS = 24 * MS


def make(w: Workload, **knobs: int | str) -> Engine:
    settings: dict[str, int | str] = {"pages_to_scan": 100_000, "sleep_millisecs": 20}
    settings.update(knobs)
    return Engine(w, Knobs(**settings), COST)  # type: ignore[arg-type]


def run_passes(e: Engine, n: int) -> None:
    """Advance until ``n`` more full scans have completed."""
    target = int(e.counters()["full_scans"]) + n
    while int(e.counters()["full_scans"]) < target:
        e.run_to(e.now_ns + MS)


def state(e: Engine) -> tuple[int, int, int, int, int]:
    """(rmap_items, shared, sharing, unshared, volatile), as the rows of KSM-INTERNALS §4.7."""
    c = e.counters()
    return (
        e.rmap_items,
        int(c["pages_shared"]),
        int(c["pages_sharing"]),
        int(c["pages_unshared"]),
        int(c["pages_volatile"]),
    )


def kinds(batch: EventBatch, kind: EventKind) -> int:
    return len(batch.of_kind(kind))
