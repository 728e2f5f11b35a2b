"""Cross-tenant sharing of KSM pages: tenants, boundaries, and the tracker over events."""

from __future__ import annotations

from ksmtrace.aggregate import Accumulator
from ksmtrace.events import (
    Event,
    EventBatch,
    EventKind,
    HostSample,
    ProcessIdentity,
    Tick,
    UnmergeKind,
)
from ksmtrace.render.sharing import format_sharing
from ksmtrace.render.summary import format_summary
from ksmtrace.sharing import SharingTracker, boundary_of, sharing_report, tenant_of

VM_A = ProcessIdentity(10, "qemu-system-x86", vm="vm-a", vm_kind="qemu", uid=0)
VM_B = ProcessIdentity(11, "qemu-system-x86", vm="vm-b", vm_kind="qemu", uid=0)
CONT = ProcessIdentity(12, "nginx", container="0123456789ab", uid=101)
ROOT = ProcessIdentity(13, "redis", uid=0)
USER = ProcessIdentity(14, "python3", uid=1000)
IDS = {i.pid: i for i in (VM_A, VM_B, CONT, ROOT, USER)}


def merge(pid: int, pfn: int, ts: int = 1) -> Event:
    return Event(EventKind.MERGE, ts, pid, value=pfn)


def cow(pid: int, pfn: int, ts: int = 2) -> Event:
    return Event(EventKind.COW, ts, pid, value=123, value2=pfn)


def test_tenants_and_boundaries() -> None:
    assert tenant_of(VM_A) == "vm:vm-a"
    assert tenant_of(ProcessIdentity(5, "qemu", vm_kind="qemu")) == "vm:pid5"
    assert tenant_of(CONT) == "container:0123456789ab"
    assert tenant_of(ProcessIdentity(6, "x", pod="p-1")) == "pod:p-1"
    assert tenant_of(USER) == "user:1000"
    assert tenant_of(ProcessIdentity(7)) == "user:?"
    # A VM inside a container is a VM first.
    assert tenant_of(ProcessIdentity(8, "qemu", vm="v", vm_kind="qemu", container="ab")) == "vm:v"
    assert boundary_of(["vm:a", "vm:b"]) == "VM↔VM"
    assert boundary_of(["user:0", "user:1000"]) == "host process↔host process"
    assert boundary_of(["vm:a", "user:0"]) == "VM↔host process"
    assert boundary_of(["pod:x", "container:y"]) == "container↔container"
    assert boundary_of(["vm:a", "container:c", "user:0"]) == "VM↔container↔host process"


def test_report_counts_cross_tenant_savings_per_boundary() -> None:
    mappings = {
        1: {10: 1, 11: 1},  # vm-a and vm-b: 1 saved, crosses VM↔VM
        2: {10: 3},  # three pages of vm-a: 2 saved within one tenant
        3: {10: 1, 11: 2, 13: 1},  # three tenants: 3 saved, 2 of them cross
        4: {12: 1, 14: 1},  # container (uid 101) and a user (uid 1000)
        5: {13: 1, 14: 1},  # root and uid 1000: across users
        6: {10: 0},  # no mapping left: not a KSM page any more
    }
    r = sharing_report(mappings, IDS)
    assert (r.ksm_pages, r.mappings, r.saved_pages) == (5, 13, 8)
    assert r.cross_tenant_pages == 1 + 2 + 1 + 1
    assert r.same_tenant_pages == 3  # page 2: 2, page 3: vm-b twice
    assert r.by_boundary == {
        "VM↔VM": 1,
        "VM↔host process": 2,
        "container↔host process": 1,
        "host process↔host process": 1,
    }
    assert r.across_users_pages == 2  # pages 4 and 5; page 3 is root-only
    assert r.pairs[("vm:vm-a", "vm:vm-b")] == 2
    assert r.pairs[("user:0", "vm:vm-a")] == 1
    assert r.tenants["vm:vm-b"] == 3


def test_tracker_follows_merges_cows_exits_and_prctl() -> None:
    t = SharingTracker()
    t.add(EventBatch.from_events([merge(10, 100), merge(11, 100), merge(10, 101), merge(11, 101),
                                  merge(13, 102), merge(14, 102)]))  # fmt: skip
    assert sharing_report(t.mappings(), IDS).cross_tenant_pages == 3
    t.add(EventBatch.from_events([cow(11, 101), cow(12, 555)]))  # 555 was never seen merged
    r = t.report(IDS)
    assert (r.ksm_pages, r.cross_tenant_pages) == (3, 2)
    assert len(t) == 3
    t.add(EventBatch.from_events([Event(EventKind.EXIT, 3, 11)]))
    assert t.report(IDS).by_boundary == {"host process↔host process": 1}
    t.add(
        EventBatch.from_events([Event(EventKind.UNMERGE, 4, 14, value=1, flags=UnmergeKind.PRCTL)])
    )
    r = t.report(IDS)
    assert (r.ksm_pages, r.cross_tenant_pages, r.approximate) == (3, 0, False)
    t.add(
        EventBatch.from_events(
            [Event(EventKind.UNMERGE, 5, 10, value=1, flags=UnmergeKind.MADVISE)]
        )
    )
    assert t.report(IDS).approximate


def test_merge_and_cow_of_one_page_in_one_batch_cancel() -> None:
    t = SharingTracker()
    t.add(EventBatch.from_events([merge(10, 7), merge(11, 7), cow(11, 7), merge(11, 7)]))
    assert t.mappings() == {7: {10: 1, 11: 1}}
    t.add(EventBatch.from_events([cow(10, 7), cow(11, 7)]))
    assert t.mappings() == {}


def test_summary_shows_the_sharing_block() -> None:
    sample = HostSample(0, {"pages_shared": 2, "pages_sharing": 2}, {"cow_ksm": 0}, -1, {})
    acc = Accumulator(track_sharing=True)
    batch = EventBatch.from_events([merge(10, 1), merge(11, 1), merge(10, 2), merge(11, 2)])
    acc.add(Tick(0, 1_000_000_000, batch, sample, identities=IDS, previous=sample))
    text = format_summary(acc, 1.0)
    assert "Sharing across tenants" in text
    assert "VM↔VM" in text and "vm:vm-a ↔ vm:vm-b 2 pages" in text
    lines = format_sharing(acc.sharing.report(IDS), 4096) if acc.sharing else []
    assert "2 KSM pages with 4 mappings save 0.0 MiB" in lines[1]
    assert "(100%) exists only because different tenants share pages" in lines[1]
    # Without tracking the summary has no such block.
    plain = Accumulator()
    plain.add(Tick(0, 1_000_000_000, batch, sample, identities=IDS, previous=sample))
    assert "Sharing across tenants" not in format_summary(plain, 1.0)
