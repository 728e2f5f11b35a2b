"""Events estimated from counter samples where no probe can see the kernel act (run=2)."""

from __future__ import annotations

from ksmtrace.events import Event, EventKind, HostSample, UnmergeKind

#: ``err`` of an UNMERGE event whose page count is an estimate, not a count.
ESTIMATED = -1


def run2_happened(prev: HostSample, cur: HostSample) -> bool:
    """Whether someone wrote 2 to /sys/kernel/mm/ksm/run between the two samples.

    run=2 unshares every KSM page from the writer's context and resets full_scans to 0; the
    writer may already have set run back to 0 or 1 by the time ``cur`` was read.
    """
    ran2 = cur.ksm.get("run") == 2 and prev.ksm.get("run") != 2
    reset = cur.counter("full_scans") < prev.counter("full_scans")
    return ran2 or reset


def run2_unmerges(prev: HostSample, cur: HostSample) -> list[Event]:
    """One estimated RUN2 UNMERGE per process: its ksm_merging_pages before the unmerge.

    ``ksm_merging_pages`` lags (pages written since ksmd last passed still count), so this
    can overestimate; the cow_ksm ledger shows the difference as a negative remainder.
    """
    if not run2_happened(prev, cur):
        return []
    return [
        Event(
            kind=EventKind.UNMERGE,
            ts_ns=cur.ts_ns,
            pid=pid,
            value=st.merging_pages,
            value2=st.zero_pages,
            err=ESTIMATED,
            flags=int(UnmergeKind.RUN2),
        )
        for pid, st in prev.processes.items()
        if st.merging_pages or st.zero_pages
    ]
