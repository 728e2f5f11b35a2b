#!/usr/bin/env python3
"""Record the sample trace bundled with ksmtrace (ksmtrace/data/sample.ksmtrace).

A real run on this host, as root: three QEMU guests (ksmtrace.vmlab: TCG, Debian cloud
kernel, memfill) and four workload processes (ksmtrace.workers), with KSM switched on
while recording. Scenario, in seconds from the start of the recording:

   0  guests and workers are running, KSM is off (run=0)
   2  KSM on: run=1 pages_to_scan=1000 sleep_millisecs=10 (knob-change events)
  25  worker web-2 writes 600 of its merged pages (a copy-on-write burst)
  35  pages_to_scan 1000 -> 300 (a knob change mid-trace)
  45  worker cache unmerges 400 pages with madvise(MADV_UNMERGEABLE)
  50  worker unique exits
  60  end

Guests: vm-web-1 and vm-web-2 hold the same content (they merge with each other),
vm-batch rewrites part of its shared pages 300 times a second (copy-on-write by QEMU).
Kernel addresses and frame numbers are salted with a random salt used only for this file.
KSM knobs are restored afterwards; guests and workers end on every exit path.

usage: sudo .venv/bin/python scripts/record-sample.py [-o FILE] [--duration 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ksmtrace.commands.record import probes_of
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import sysfs
from ksmtrace.kernel.session_lock import SessionLock
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.probes.live import LiveSource, require_root
from ksmtrace.recorder import ProcessFilter, Recorder, provenance
from ksmtrace.replay import sample_trace_path
from ksmtrace.tracefile import TraceWriter
from ksmtrace.vmlab import GuestLab, GuestSpec
from ksmtrace.workers import Workers, WorkerSpec

GUESTS = [
    GuestSpec("vm-web-1", memory_mib=128, fill_mib=48, seed=21, shared=0.6, zero=0.1),
    GuestSpec("vm-web-2", memory_mib=128, fill_mib=48, seed=21, shared=0.6, zero=0.1),
    GuestSpec(
        "vm-batch", memory_mib=128, fill_mib=40, seed=21, shared=0.5, zero=0.05,
        churn=0.3, churn_rate=300,
    ),
]  # fmt: skip

WORKERS = [
    WorkerSpec("web-1", 3072, shared=0.7, zero=0.1, distinct=256, seed=1),
    WorkerSpec("web-2", 3072, shared=0.7, zero=0.1, distinct=256, seed=1),
    WorkerSpec("cache", 2048, shared=0.9, distinct=128, seed=2, churn=150.0),
    WorkerSpec("unique", 2048, shared=0.0, seed=3),
]


def say(text: str) -> None:
    """Progress on stderr."""
    print(  # noqa: T201
        f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True
    )


def main() -> int:
    """Record the sample; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=sample_trace_path())
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    require_root()
    paths = HostPaths.from_env()
    with SessionLock("record-sample", wait_s=1800), KnobGuard(paths) as guard:
        guard.set("run", 2)  # start from nothing merged
        guard.set("run", 0)
        with GuestLab(progress=say) as lab, Workers(WORKERS) as workers:
            say("booting the guests")
            lab.boot(*GUESTS)
            say(f"guests ready: {', '.join(f'{g.name} pid {g.pid}' for g in lab.guests)}")
            source = LiveSource(paths)
            with source:
                knobs = sysfs.read_ksm_sysfs(source.paths)
                header = provenance(
                    knobs={k: v for k, v in knobs.items() if k in sysfs.KNOBS},
                    probes=probes_of(source),
                    interval_s=1.0,
                    page_size=os.sysconf("SC_PAGE_SIZE"),
                    filter_=ProcessFilter(),
                    sanitized=True,
                    note="ksmtrace sample: 3 QEMU guests (vm-web-1, vm-web-2 alike, vm-batch "
                    "rewriting) and 4 workload processes, KSM switched on at +3 s",
                )
                writer = TraceWriter(args.output, header, level=9, overwrite=True)
                recorder = Recorder(writer, salt=os.urandom(32))
                steps = {
                    2: lambda: [guard.set("pages_to_scan", 1000), guard.set("sleep_millisecs", 10),
                                guard.set("run", 1)],
                    25: lambda: workers.by_name("web-2").command("write 0 600"),
                    35: lambda: guard.set("pages_to_scan", 300),
                    45: lambda: workers.by_name("cache").command("unmerge 0 400"),
                    50: lambda: workers.by_name("unique").stop(),
                }  # fmt: skip
                started = time.monotonic()
                for tick in source.ticks(1.0, args.duration):
                    recorder.submit(tick)
                    second = round(time.monotonic() - started)
                    if second in steps:
                        say(f"+{second} s: step")
                        steps.pop(second)()
                stats = recorder.close("duration reached")
    size = args.output.stat().st_size
    say(f"wrote {args.output}: {stats.events} events, {stats.ticks} intervals, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
