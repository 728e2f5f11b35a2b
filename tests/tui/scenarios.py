"""Synthetic hosts for the terminal UI tests: one per diagnosis state, and a busy normal one."""

from __future__ import annotations

from ksmtrace.top.feeds import RecordedFeed, tick_list_feed
from ksmtrace.top.synthetic import FakeHost, FakeProcess, synthetic_ticks

VM_CGROUP = "/machine.slice/machine-qemu.scope"


def busy_procs() -> list[FakeProcess]:
    """Web servers sharing content, a churning cache, a unique process and two QEMU guests."""
    return [
        FakeProcess(101, "web-1", merges_per_s=300, cows_per_s=5, scan_per_s=20000, merging=2000),
        FakeProcess(102, "web-2", merges_per_s=280, cows_per_s=4, scan_per_s=20000, merging=1800),
        FakeProcess(103, "cache", merges_per_s=400, cows_per_s=380, scan_per_s=20000,
                    lifetime_s=0.3, merging=500),
        FakeProcess(104, "unique", scan_per_s=30000),
        FakeProcess(201, "qemu-system-x86", merges_per_s=500, scan_per_s=50000, vm="guest-a",
                    cgroup=VM_CGROUP, unit="machine-qemu.scope"),
        FakeProcess(202, "qemu-system-x86", merges_per_s=450, scan_per_s=50000, vm="guest-b",
                    cgroup=VM_CGROUP, unit="machine-qemu.scope"),
    ]  # fmt: skip


def busy(seconds: float = 60) -> RecordedFeed:
    return tick_list_feed(synthetic_ticks(busy_procs(), seconds))


def ksm_off() -> RecordedFeed:
    procs = [FakeProcess(101, "web-1", merging=1000), FakeProcess(102, "web-2", merging=1000)]
    return tick_list_feed(synthetic_ticks(procs, 20, FakeHost(run=0)))


def nothing_registered() -> RecordedFeed:
    """A process turns PR_SET_MEMORY_MERGE off at 3 s; nobody else is mergeable."""
    procs = [
        FakeProcess(101, "web-1", merges_per_s=100, scan_per_s=5000, merging=300, unmerge_at_s=3),
        FakeProcess(102, "batch", mergeable=False),
    ]
    return tick_list_feed(synthetic_ticks(procs, 20))


def nothing_merges() -> RecordedFeed:
    """ksmd scans 40k pages/s of volatile memory and merges nothing."""
    procs = [FakeProcess(101, "db", scan_per_s=40000), FakeProcess(102, "jvm", scan_per_s=20000)]
    return tick_list_feed(synthetic_ticks(procs, 20, FakeHost(volatile=50000, unshared=100)))


def churn() -> RecordedFeed:
    """A cache that rewrites its merged pages within 0.3 s, while a full scan takes 4 s."""
    procs = [
        FakeProcess(101, "cache", merges_per_s=500, cows_per_s=480, scan_per_s=20000,
                    lifetime_s=0.3, merging=2000),
        FakeProcess(102, "web", merging=3000),
    ]  # fmt: skip
    return tick_list_feed(synthetic_ticks(procs, 20))


def cpu_costly() -> RecordedFeed:
    """ksmd spends 30% of a CPU on unique pages to keep 2 MiB merged."""
    procs = [
        FakeProcess(101, "unique", scan_per_s=100000, cpu_ns_per_page=3000),
        FakeProcess(102, "small", merging=512, scan_per_s=1000),
    ]
    return tick_list_feed(synthetic_ticks(procs, 20))
