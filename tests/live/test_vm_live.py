"""Real QEMU guests (TCG): their KSM activity is charged to the VM by name, checked with ksm_stat.

Guests are booted inside each test, under the KSM session lock, so no other test's ksmd
run scans them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ksmtrace.aggregate import Accumulator
from ksmtrace.commands.doctor import check_vms
from ksmtrace.events import EventKind, UnmergeKind
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.mergeability import VmWatch, read_mergeability
from ksmtrace.probes.live import LiveSource
from ksmtrace.render.summary import format_summary
from ksmtrace.render.table import format_interval, format_vm_notes
from ksmtrace.vmlab import GuestLab, GuestSpec
from ksmtrace.workers import wait_until

from .conftest import full_scans, merging_pages

pytestmark = pytest.mark.live

PATHS = HostPaths()
#: Unique per run, so guests other sessions boot on this host are never confused with ours.
TAG = f"t{os.getpid()}"


@pytest.fixture
def lab() -> Iterator[GuestLab]:
    with GuestLab() as lab:
        yield lab
    left = [g for g in lab.guests if os.path.exists(f"/proc/{g.pid}")]
    assert not left, f"guests still running after the lab closed: {left}"


def wait_full_scans(n: int, timeout_s: float = 60) -> None:
    target = full_scans() + n
    assert wait_until(lambda: full_scans() >= target, timeout_s), "ksmd made no progress"


def test_guest_merges_cows_and_scan_cost_are_charged_to_the_vm_by_name(
    fresh_ksm: KnobGuard, live: LiveSource, lab: GuestLab
) -> None:
    # vm-a and vm-b hold the same 28.8 MiB of shared content (seed 7) and keep storing
    # into 10 % of it; vm-off has the same content but QEMU never marks it mergeable.
    churn = dict(seed=7, churn=0.1, churn_rate=100)
    a, b, off = lab.boot(
        GuestSpec(f"{TAG}-a", **churn),  # type: ignore[arg-type]
        GuestSpec(f"{TAG}-b", **churn),  # type: ignore[arg-type]
        GuestSpec(f"{TAG}-off", seed=7, mem_merge=False),
    )
    assert a.ready is not None and a.ready.churn > 0
    expected = a.ready.shared + a.ready.zero
    acc = Accumulator(track_sharing=True)
    cows: list[np.ndarray] = []
    fresh_ksm.set("pages_to_scan", 1000)
    fresh_ksm.set("sleep_millisecs", 10)
    fresh_ksm.set("run", 1)
    merged_at = None
    last_report = None
    for tick in live.ticks(1.0, 90.0):
        last_report = acc.add(tick)
        cows.append(tick.events.of_kind(EventKind.COW))
        if merged_at is None and all(merging_pages(g.pid) >= 0.9 * expected for g in (a, b)):
            merged_at = full_scans()
        if merged_at is not None and full_scans() >= merged_at + 2:
            break
    assert merged_at is not None, (
        f"guests merged only {merging_pages(a.pid)} and {merging_pages(b.pid)} of "
        f"{expected} pages within 90 s"
    )

    # Named by -name guest=..., and every event of the VM carries QEMU's pid (the tgid).
    for g in (a, b):
        ident = acc.identities[g.pid]
        assert (ident.vm, ident.vm_kind, ident.group_key("vm")) == (g.name, "qemu", g.name)
        totals = acc.totals[g.pid]
        assert totals.merges >= 0.9 * expected
        assert totals.cows > 0, "the churning guest's stores broke merges"
        assert totals.scanned >= 128 * 256, "ksmd scanned all of guest RAM at least once"
        assert totals.scan_cpu_ns > 0
    assert off.pid not in acc.totals, "a mem-merge=off guest is neither scanned nor merged"
    assert off.pid not in last_report.sample.processes  # type: ignore[union-attr]

    # vCPU threads are folded into the VM: the COWs come from "CPU 0/TCG", pid = QEMU's.
    cow = np.concatenate(cows)
    for g in (a, b):
        threads = g.threads()
        tids = set(cow["tid"][cow["pid"] == g.pid].tolist())
        assert tids and all(threads.get(t, "").startswith("CPU ") for t in tids), (tids, threads)
        assert g.pid not in tids, "guest stores run on a vCPU thread, not QEMU's main thread"

    # The table names the VMs and notes why vm-off does not merge.
    notes = format_vm_notes(VmWatch(PATHS).verdicts())
    table = format_interval(last_report, notes=notes)  # type: ignore[arg-type]
    assert a.name in table and b.name in table
    note = f"note: VM {off.name} [{off.pid}]: guest RAM cannot merge: QEMU was started with"
    assert f"{note} mem-merge=off" in " ".join(table.split())

    # Agreement with ksm_stat: freeze the guests (no more stores), let ksmd pass over every
    # page twice more, stop it; then merges - COWs - unmerges equals ksm_merging_pages.
    for g in (a, b):
        os.kill(g.pid, signal.SIGSTOP)
    try:
        wait_full_scans(3)
        fresh_ksm.set("run", 0)
        time.sleep(0.05)
        acc.add_events(live.drain())
        for g in (a, b):
            t = acc.totals[g.pid]
            # A ksmd undo unshares the first half of a failed pair, which was never
            # reported as a merge (nor counted in ksm_merging_pages): not subtracted here.
            unmerged = t.unmerged_total - t.unmerged.get(UnmergeKind.KSMD_UNDO, 0)
            assert t.merges - t.cows - unmerged == merging_pages(g.pid), (
                f"{g.name}: merges {t.merges} - cows {t.cows} - unmerged {unmerged} "
                f"!= ksm_merging_pages {merging_pages(g.pid)}"
            )
        # The sharing tracker's per-page bookkeeping (frame numbers of merges and COWs)
        # gives each VM exactly its ksm_merging_pages too.
        assert acc.sharing is not None
        pages = acc.sharing.mappings()
        for g in (a, b):
            mapped = sum(per_pid.get(g.pid, 0) for per_pid in pages.values())
            assert mapped == merging_pages(g.pid), (g.name, mapped, merging_pages(g.pid))
        # Cross-VM sharing: the shared content of vm-a and vm-b is one KSM page per pair.
        report = acc.sharing.report(acc.identities)
        pair = tuple(sorted((f"vm:{a.name}", f"vm:{b.name}")))
        assert report.pairs[pair] >= 0.9 * a.ready.shared  # type: ignore[index]
        assert report.by_boundary["VM↔VM"] >= 0.9 * a.ready.shared
        summary = format_summary(acc, 10.0)
        assert "Sharing across tenants" in summary and "VM↔VM" in summary
    finally:
        for g in (a, b):
            os.kill(g.pid, signal.SIGCONT)

    m = read_mergeability(PATHS, off.pid)
    assert m is not None and m.mergeable is False
    assert m.reasons == (
        "QEMU was started with mem-merge=off, so it never marked guest RAM mergeable "
        "(madvise MADV_MERGEABLE)",
    )


def test_guest_with_shared_memfd_ram_is_reported_not_mergeable(lab: GuestLab) -> None:
    shared, plain = lab.boot(
        GuestSpec(f"{TAG}-memfd", shared_ram=True, fill_mib=8),
        GuestSpec(f"{TAG}-plain", fill_mib=8),
    )
    lines = {c.text.partition(" ")[0]: c for c in check_vms(PATHS)}
    assert lines[shared.name].status == "warn"
    assert "NOT mergeable: guest RAM is a shared mapping (memory-backend-memfd" in (
        lines[shared.name].text
    )
    assert lines[plain.name].status == "ok" and ": mergeable" in lines[plain.name].text
    st = shared.ksm_stat()
    assert st is not None and st.mergeable, "ksm_stat alone says mergeable (QEMU's ROM blocks)"


CHILD = """
import sys, time
from pathlib import Path
from ksmtrace.vmlab import Guest, GuestLab, GuestSpec
mode, workdir = sys.argv[1], Path(sys.argv[2])
spec = GuestSpec(f"{TAG}-{mode}", fill_mib=8)
if mode == "atexit":  # a guest nobody stops: the atexit handler must
    with GuestLab(workdir=workdir) as lab:
        image = lab.image
    guest = Guest(spec, image, workdir)
    guest.wait_ready()
    print(guest.pid, flush=True)
    sys.exit(0)
with GuestLab(workdir=workdir) as lab:
    (guest,) = lab.boot(spec)
    print(guest.pid, flush=True)
    time.sleep(120)
"""


def test_every_guest_ends_on_every_exit_path(tmp_path: Path) -> None:
    """SIGKILL and SIGTERM of the Python process (PR_SET_PDEATHSIG), Ctrl-C (the lab's
    context exit) and a guest left running at interpreter exit (atexit) all end QEMU."""
    signals = {"kill": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}
    children = {}
    for mode in (*signals, "atexit"):
        (tmp_path / mode).mkdir()
        children[mode] = subprocess.Popen(
            [sys.executable, "-c", CHILD.replace("{TAG}", TAG), mode, str(tmp_path / mode)],
            stdout=subprocess.PIPE,
            text=True,
            # Python ignores SIGINT in children of a shell's background job; restore it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        qemu = {}
        for mode, child in children.items():
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line.strip().isdigit(), f"{mode}: child printed {line!r}"
            qemu[mode] = int(line)
            if mode in signals:
                assert os.path.exists(f"/proc/{qemu[mode]}"), f"{mode}: guest not running"
                child.send_signal(signals[mode])
        for child in children.values():
            child.wait(30)
        gone = wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in qemu.values()), 10)
        assert gone, {m: p for m, p in qemu.items() if os.path.exists(f"/proc/{p}")}
        assert children["int"].returncode == -signal.SIGINT, "KeyboardInterrupt ends the child"
        assert children["atexit"].returncode == 0

        def qemu_log(mode: str) -> str:
            return (tmp_path / mode / f"{TAG}-{mode}.qemu.log").read_text()

        # The lab's exit and the atexit handler stop QEMU with SIGTERM; a dead parent's
        # guests get SIGKILL from the kernel (PR_SET_PDEATHSIG) and print nothing.
        assert "terminating on signal 15" in qemu_log("int")
        assert "terminating on signal 15" in qemu_log("atexit")
        assert "terminating" not in qemu_log("kill") + qemu_log("term")
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
