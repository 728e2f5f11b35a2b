"""``ksmtrace trace``: the live per-process table (or JSON lines) of KSM activity."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ksmtrace.aggregate import Accumulator
from ksmtrace.commands.argtypes import positive_float, positive_int
from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.mergeability import VmWatch
from ksmtrace.probes.live import LiveOptions, LiveSource
from ksmtrace.probes.scan_sampling import SCAN_COST_MODES
from ksmtrace.render.jsonl import format_interval_json
from ksmtrace.render.summary import format_summary
from ksmtrace.render.table import format_interval, format_vm_notes
from ksmtrace.signals import exit_status

ORDER = 20
HELP = "live per-process KSM table: savings, merges, copy-on-write, scan cost"

DESCRIPTION = """\
Attach the probe set and print, every interval, one line per process with KSM activity:

  SAVED    its share of the memory KSM saves (pages_sharing + KSM zero pages, split by
           the process's merging pages)     MERGING  its ksm_merging_pages (ksm_stat)
  MERGE/s  its pages merged by ksmd          COW/s    merged pages it broke by writing
  CHURN    COW/s divided by MERGE/s          LIFE50   median time from merge to first write
  SCAN/s   pages ksmd scanned of it          CPUms/s  ksmd CPU spent scanning it

The header line balances the kernel's cow_ksm counter: every increment is a write COW, an
explicit unmerge (madvise/prctl), a ksmd undo, or "unattributed" (for example KVM guest
writes handled inside the kernel). ksmtrace only observes: it changes no KSM knob.

VMs (QEMU, Firecracker, Cloud Hypervisor) are named by their guest name. A VM whose guest
RAM KSM cannot merge (mem-merge=off, shared or hugetlbfs guest RAM) gets a note line under
the table saying why. The summary at the end says how much of the saving comes from pages
shared between tenants (VM, else container, else user) and which boundaries they cross.
"""

EPILOG = """\
examples:
  ksmtrace trace                         table every second until Ctrl-C, then a summary
  ksmtrace trace --pid 1234 --pid 5678   only these processes
  ksmtrace trace --json --duration 60    one JSON object per second for a minute
"""


def add_parser(sub: Any) -> None:
    """Register the ``trace`` subcommand."""
    p = sub.add_parser(
        "trace",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_probe_options(p)
    p.add_argument(
        "--interval",
        type=positive_float("--interval"),
        default=1.0,
        help="seconds per line block (1)",
    )
    p.add_argument(
        "--duration", type=positive_float("--duration"), help="stop after this many seconds"
    )
    p.add_argument(
        "--pid", type=positive_int("--pid"), action="append", help="only this process (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per interval")
    p.add_argument(
        "--top", type=positive_int("--top"), default=20, help="rows per interval in the table (20)"
    )
    p.set_defaults(run=run)


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that attaches the live probes."""
    g = p.add_argument_group("probe options")
    g.add_argument(
        "--max-tracked-pages",
        type=positive_int("--max-tracked-pages", 1 << 24),
        default=262144,
        help="merged pages remembered for lifetimes (262144, about 20 MiB of kernel memory)",
    )
    g.add_argument(
        "--no-page-walk",
        action="store_true",
        help="count a write to a remembered merged page as COW instead of checking the page "
        "table (less exact; for kernels where calibration fails)",
    )
    g.add_argument(
        "--scan-cost",
        choices=SCAN_COST_MODES,
        default="sampled",
        help="how ksmd's pages and CPU are split by process: 'sampled' (default) traces one "
        "interval in --sample-every and splits the kernel's exact totals by those shares in "
        "between (marked ~); 'exact' traces every mmap_lock acquisition all the time (costs "
        "ksmd and mmap-heavy programs 10-30 %%); 'off' does not split them",
    )
    g.add_argument(
        "--sample-every",
        type=positive_int("--sample-every", 1000),
        default=10,
        metavar="N",
        help="with --scan-cost sampled, trace scan cost one interval in N (10)",
    )
    g.add_argument("--debug-dir", type=Path, help="write the rendered BPF program and bcc log")


def probe_options(args: argparse.Namespace) -> LiveOptions:
    """LiveOptions from the shared probe options."""
    if args.max_tracked_pages < 1024:
        raise UsageError("--max-tracked-pages must be at least 1024")
    if args.debug_dir is not None and not args.debug_dir.parent.is_dir():
        raise UsageError(f"--debug-dir {args.debug_dir}: {args.debug_dir.parent} does not exist")
    return LiveOptions(
        merged_max=args.max_tracked_pages,
        page_walk=not args.no_page_walk,
        debug_dir=args.debug_dir,
        scan_cost=args.scan_cost,
        sample_every=args.sample_every,
    )


def _check_pids(paths: HostPaths, pids: list[int] | None) -> None:
    for pid in pids or []:
        if not paths.pid_dir(pid).exists():
            raise UsageError(f"no process with pid {pid}; check it with 'ps -p {pid}'")


def run(args: argparse.Namespace) -> int:
    """Trace until --duration or Ctrl-C; print the summary unless --json."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive, e.g. --interval 1")
    paths = HostPaths.from_env()
    _check_pids(paths, args.pid)
    acc = Accumulator(args.pid, track_sharing=True)
    vms = VmWatch(paths)
    source = LiveSource(paths, probe_options(args))
    started = time.monotonic()
    status = 0
    with source:
        if not args.json:
            print(
                f"Tracing KSM (ksmd is pid {source.state.ksmd_pid}); "
                f"{source.state.page_walk_note}. Ctrl-C to stop.",
                file=sys.stderr,
            )
        try:
            for tick in source.ticks(args.interval, args.duration):
                rep = acc.add(tick)
                if args.json:
                    out = format_interval_json(rep)
                else:
                    out = format_interval(rep, args.top, format_vm_notes(vms.verdicts()))
                print(out if args.json else out + "\n", flush=True)
        except KeyboardInterrupt:
            pass
        except SystemExit as exc:  # SIGTERM/SIGHUP (see cli): summarise, then exit with it
            status = exit_status(exc)
    if not args.json:
        print(format_summary(acc, time.monotonic() - started))
    return status
