"""The merge engine against the real kernel: same workload, same knobs, same counters.

Each test records page fingerprints and /sys/kernel/mm/ksm of a real workload while KSM
runs, replays the fingerprints through the engine at the recorded knobs, and requires the
steady-state pages_sharing within 3 % of the kernel's and the time to 90 % of the final
saving within 10 %, and for processes ksmd's CPU within 50 %.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.vmlab import GuestLab, GuestSpec
from ksmtrace.workers import Worker

from .engine_validation import host_cost, record_and_replay

pytestmark = pytest.mark.live

SpawnFn = Callable[..., Worker]


#: How far the predicted ksmd CPU may be from the kernel's for processes: measured 10-39 %
#: low here (the kernel's figure moves with what ran before on the host; the engine does
#: not charge ksmd's wake-ups). Wide enough not to flake, tight enough for a 2x error such
#: as costs measured with the tracer attached. QEMU guests are predicted about 55 % low
#: (printed, not asserted): ksmd spends more on guest RAM than the frames show.
CPU_TOLERANCE = 0.5


def check(result, name: str, cpu: bool = True) -> None:  # type: ignore[no-untyped-def]
    print(f"{name}: {result.describe()}")
    assert result.sharing_error <= 0.03, result.describe()
    assert result.t90_error <= 0.10, result.describe()
    if cpu:
        assert result.cpu_error <= CPU_TOLERANCE, result.describe()


@pytest.mark.parametrize(("smart_scan", "pages_to_scan", "sleep_ms"), [(1, 200, 20), (0, 300, 10)])
def test_workers_replay_matches_the_kernel(
    fresh_ksm: KnobGuard,
    spawn: SpawnFn,
    tmp_path: Path,
    smart_scan: int,
    pages_to_scan: int,
    sleep_ms: int,
) -> None:
    cost = host_cost(fresh_ksm)
    procs = [
        spawn("val-a", 12000, shared=0.6, zero=0.1, distinct=500, seed=5),
        spawn("val-b", 12000, shared=0.6, zero=0.1, distinct=500, seed=5),
        spawn("val-c", 8000, shared=0.2, distinct=100, seed=6),
    ]
    knobs = {"smart_scan": smart_scan, "pages_to_scan": pages_to_scan, "sleep_millisecs": sleep_ms}
    result = record_and_replay(
        fresh_ksm, cost, [p.pid for p in procs], knobs, 14.0, tmp_path / "w.ksmsnap"
    )
    check(result, f"workers smart_scan={smart_scan}")


def test_use_zero_pages_replay_matches_the_kernel(
    fresh_ksm: KnobGuard, spawn: SpawnFn, tmp_path: Path
) -> None:
    cost = host_cost(fresh_ksm)
    procs = [
        spawn("valz-a", 10000, shared=0.3, zero=0.4, distinct=200, seed=8),
        spawn("valz-b", 10000, shared=0.3, zero=0.4, distinct=200, seed=8),
    ]
    knobs = {"use_zero_pages": 1, "pages_to_scan": 200, "sleep_millisecs": 20}
    result = record_and_replay(
        fresh_ksm, cost, [p.pid for p in procs], knobs, 12.0, tmp_path / "z.ksmsnap"
    )
    check(result, "use_zero_pages=1")


def test_steady_writes_replay_matches_the_kernel(
    fresh_ksm: KnobGuard, spawn: SpawnFn, tmp_path: Path
) -> None:
    cost = host_cost(fresh_ksm)
    procs = [
        spawn("valw-a", 12000, shared=0.7, distinct=300, seed=9, churn=150.0),
        spawn("valw-b", 12000, shared=0.7, distinct=300, seed=9),
    ]
    knobs = {"pages_to_scan": 400, "sleep_millisecs": 20}
    result = record_and_replay(
        fresh_ksm, cost, [p.pid for p in procs], knobs, 14.0, tmp_path / "c.ksmsnap"
    )
    check(result, "steady writes")


def test_two_qemu_guests_replay_matches_the_kernel(fresh_ksm: KnobGuard, tmp_path: Path) -> None:
    cost = host_cost(fresh_ksm)
    with GuestLab() as lab:
        guests = lab.boot(GuestSpec("val-vm-a", seed=4), GuestSpec("val-vm-b", seed=4))
        knobs = {"pages_to_scan": 400, "sleep_millisecs": 20}
        result = record_and_replay(
            fresh_ksm, cost, [g.pid for g in guests], knobs, 16.0, tmp_path / "vm.ksmsnap", 0.5
        )
    check(result, "two QEMU guests", cpu=False)
