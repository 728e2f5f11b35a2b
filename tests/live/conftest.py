"""Fixtures for live tests: root, one KSM session at a time, knobs restored, workers ended."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs
from ksmtrace.kernel.session_lock import SessionLock
from ksmtrace.kernel.sysfs import KNOBS, KnobGuard, read_ksm_sysfs
from ksmtrace.probes.live import LiveSource
from ksmtrace.workers import Worker, WorkerSpec

PATHS = HostPaths()


def knob_values() -> dict[str, int | str]:
    values = read_ksm_sysfs(PATHS)
    return {k: values[k] for k in KNOBS if k in values}


@pytest.fixture(autouse=True)
def _root_and_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every live test: must be root (never skipped), holds the KSM session lock, and must
    leave every knob as it found it, also when the test fails."""
    assert os.geteuid() == 0, "live tests need root (BPF, tracefs, KSM knobs): run as root"
    with SessionLock(f"pytest {request.node.nodeid}", wait_s=1800):
        with KnobGuard(PATHS):
            pass  # first put back knobs that a killed earlier session left changed
        before = knob_values()
        merged_before = merged_pages()
        yield
        after = knob_values()
        merged_after = merged_pages()
    assert after == before, f"KSM knobs not restored: before {before}, after {after}"
    if merged_before == 0:
        assert merged_after == 0, (
            f"{merged_after} pages still count as merged: KSM was switched off while pages "
            "of exited processes were still counted"
        )


def merged_pages() -> int:
    """pages_shared + pages_sharing now."""
    values = read_ksm_sysfs(PATHS)
    return int(values["pages_shared"]) + int(values["pages_sharing"])


@pytest.fixture
def ksm() -> Iterator[KnobGuard]:
    """A KnobGuard: the test changes knobs through it; they are restored afterwards, after
    unmerging what the test merged (with KSM off, pages of its exited processes would
    otherwise stay counted as merged)."""
    with KnobGuard(PATHS) as guard:
        yield guard
        guard.set("run", 2)


@pytest.fixture
def fresh_ksm(ksm: KnobGuard) -> KnobGuard:
    """KSM unmerged and stopped (run=2 then run=0): no leftovers from earlier tests."""
    ksm.set("run", 2)
    ksm.set("run", 0)
    return ksm


@pytest.fixture
def live() -> Iterator[LiveSource]:
    src = LiveSource(PATHS)
    src.start()
    try:
        yield src
    finally:
        src.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Worker]]:
    """Start workload processes; every one is stopped at teardown."""
    started: list[Worker] = []

    def _spawn(name: str, pages: int, **kw: object) -> Worker:
        w = Worker(WorkerSpec(name, pages, **kw))  # type: ignore[arg-type]
        started.append(w)
        return w

    yield _spawn
    for w in started:
        w.stop()


def merging_pages(pid: int) -> int:
    st = procfs.read_ksm_stat(PATHS, pid)
    return st.merging_pages if st else -1


def cow_ksm() -> int:
    return procfs.read_vmstat_ksm(PATHS)["cow_ksm"]


def full_scans() -> int:
    return int(read_ksm_sysfs(PATHS)["full_scans"])
