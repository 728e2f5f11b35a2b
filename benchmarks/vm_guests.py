"""Test guests (ksmtrace.vmlab): boot time, host memory, and what KSM merges per guest.

Figures (printed by ``python -m benchmarks vm_guests``, as root):

* boot: seconds from starting QEMU (TCG, 128 MiB) to memfill's readiness line, for one
  guest alone and for two booted together on this 2-core host; memfill's own fill time.
* merge: two guests with the same seed (48 MiB filled: 60 % shared, 10 % zero) under
  KSM at pages_to_scan=1000, sleep_millisecs=10: seconds until each has merged 90 % of
  its shared and zero pages, and its ksm_merging_pages after 30 s, with guest RAM
  without transparent huge pages (the lab's default) and with them (QEMU's default).
* host: resident memory of a QEMU process before KSM, and its CPU while the guest idles.
"""

from __future__ import annotations

import os
import time

from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import procfs
from ksmtrace.kernel.session_lock import SessionLock
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.vmlab import Guest, GuestLab, GuestSpec

PATHS = HostPaths()
MERGE_WINDOW_S = 30.0


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):  # noqa: SIM115 (a short read)
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _merging(pid: int) -> int:
    st = procfs.read_ksm_stat(PATHS, pid)
    return st.merging_pages if st else 0


def _boot_figures(lab: GuestLab) -> list[str]:
    (alone,) = lab.boot(GuestSpec("bench-alone"))
    pair = lab.boot(GuestSpec("bench-p1"), GuestSpec("bench-p2"))
    assert alone.ready is not None and alone.boot_s is not None
    idle0 = _cpu_s(alone.pid)
    time.sleep(5.0)
    idle = (_cpu_s(alone.pid) - idle0) / 5.0
    lines = [
        f"boot, one guest alone       {alone.boot_s:.2f} s to ready "
        f"(memfill filled 48 MiB in {alone.ready.fill_s:.2f} s of guest time)",
        "boot, two guests together   "
        + ", ".join(f"{g.boot_s:.2f} s" for g in pair if g.boot_s is not None),
        f"host RSS of one QEMU        {_rss_mib(alone.pid):.0f} MiB before KSM "
        f"(128 MiB guest RAM, 64 MiB TCG code buffer)",
        f"host CPU of an idle guest   {idle:.1%} of one core",
    ]
    for g in (alone, *pair):
        g.stop()
    return lines


def _merge_figures(lab: GuestLab, guard: KnobGuard, thp: bool) -> list[str]:
    guard.set("run", 2)
    guard.set("run", 0)
    specs = [GuestSpec(f"bench-{n}-{'thp' if thp else 'nothp'}", seed=7, thp=thp) for n in "ab"]
    guests: list[Guest] = lab.boot(*specs)
    assert guests[0].ready is not None
    target = 0.9 * (guests[0].ready.shared + guests[0].ready.zero)
    guard.set("pages_to_scan", 1000)
    guard.set("sleep_millisecs", 10)
    started = time.monotonic()
    guard.set("run", 1)
    reached: dict[str, float] = {}
    while time.monotonic() - started < MERGE_WINDOW_S:
        for g in guests:
            if g.name not in reached and _merging(g.pid) >= target:
                reached[g.name] = time.monotonic() - started
        time.sleep(0.1)
    label = "with THP   " if thp else "without THP"
    lines = []
    for g in guests:
        merged = _merging(g.pid)
        when = f"{reached[g.name]:.1f} s" if g.name in reached else f"not in {MERGE_WINDOW_S:.0f} s"
        lines.append(
            f"merge {label}  {g.name}: 90% of shared+zero pages after {when}; "
            f"{merged} pages ({merged * 4096 / 2**20:.1f} MiB) merging after "
            f"{MERGE_WINDOW_S:.0f} s"
        )
    guard.set("run", 2)
    guard.set("run", 0)
    for g in guests:
        g.stop()
    return lines


def run() -> list[str]:
    """Boot and merge figures of the test guests."""
    started = time.monotonic()
    with GuestLab() as lab:
        prepared = time.monotonic() - started
        lines = [f"prepare (cached kernel and initramfs) {prepared:.2f} s"]
        with SessionLock("benchmark vm_guests", wait_s=1800), KnobGuard(PATHS) as guard:
            lines += _boot_figures(lab)
            lines += _merge_figures(lab, guard, thp=False)
            lines += _merge_figures(lab, guard, thp=True)
    return lines
