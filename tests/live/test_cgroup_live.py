"""Processes placed in two cgroups this test creates are grouped by container and by unit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.probes.live import LiveSource
from ksmtrace.sharing import tenant_of
from ksmtrace.workers import Worker, wait_until

from .cgroups import TestCgroup, v1_mount, v2_mount
from .conftest import merging_pages

pytestmark = pytest.mark.live

SpawnFn = Callable[..., Worker]
CONTAINER_ID = "c0ffee" + "5" * 58
UNIT = f"ksmtrace-cgtest-{os.getpid()}.service"


def test_processes_in_two_cgroups_are_grouped_by_container_and_unit(
    fresh_ksm: KnobGuard, live: LiveSource, spawn: SpawnFn
) -> None:
    # One cgroup per hierarchy this host has (both on a hybrid v1 + v2 host), so the
    # identity code's choice between them is exercised too.
    v2, v1 = v2_mount(), v1_mount()
    first, second = v2 or v1, v1 or v2
    assert first is not None and second is not None, "no cgroup hierarchy mounted"
    # 1500 distinct pages, equal in all three workers (same seed): each KSM page is mapped
    # by every worker, so it is shared between the container and the host service.
    workers = [spawn(f"cg{i}", 1500, shared=1.0, distinct=1500, seed=21) for i in range(3)]
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(TestCgroup(first, f"docker-{CONTAINER_ID}.scope"))
        service = stack.enter_context(TestCgroup(second, UNIT))
        container.add(workers[0].pid)
        container.add(workers[1].pid)
        service.add(workers[2].pid)
        acc = Accumulator(track_sharing=True)
        fresh_ksm.set("pages_to_scan", 1000)
        fresh_ksm.set("sleep_millisecs", 10)
        fresh_ksm.set("run", 1)
        for tick in live.ticks(1.0, 30.0):
            acc.add(tick)
            if all(merging_pages(w.pid) >= 1500 for w in workers):
                break
        assert wait_until(lambda: all(merging_pages(w.pid) >= 1500 for w in workers), 1)
        fresh_ksm.set("run", 0)
        acc.add_events(live.drain())

        ids = {w.pid: acc.identities[w.pid] for w in workers}
        for w in workers[:2]:
            assert ids[w.pid].cgroup == f"{container.relative}"
            assert ids[w.pid].container == CONTAINER_ID[:12]
            assert ids[w.pid].group_key("cgroup") == f"container:{CONTAINER_ID[:12]}"
            assert tenant_of(ids[w.pid]) == f"container:{CONTAINER_ID[:12]}"
        svc = ids[workers[2].pid]
        assert (svc.cgroup, svc.unit, svc.container) == (service.relative, UNIT, None)
        assert svc.group_key("cgroup") == UNIT
        assert tenant_of(svc) == "user:0"

        groups: dict[str, int] = {}
        for pid, totals in acc.totals.items():
            if pid in ids:
                key = ids[pid].group_key("cgroup")
                groups[key] = groups.get(key, 0) + totals.merges
        assert groups[f"container:{CONTAINER_ID[:12]}"] >= 2 * 1500
        assert groups[UNIT] >= 1500

        # Every KSM page is mapped by both containers' workers and the service: one
        # copy per page exists only because the container and the host share it.
        report = acc.sharing.report(acc.identities) if acc.sharing else None
        assert report is not None
        assert report.by_boundary["container↔host process"] >= 1500
        assert report.pairs[(f"container:{CONTAINER_ID[:12]}", "user:0")] >= 1500
        assert report.same_tenant_pages >= 1500, "the two container workers share within it"
        for w in workers:
            w.stop()
    assert not container.path.exists() and not service.path.exists()
    assert not container.parent.exists() and not service.parent.exists()
