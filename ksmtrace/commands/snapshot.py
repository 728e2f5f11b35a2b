"""``ksmtrace snapshot``: record page fingerprints of mergeable memory for the merge engine."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ksmtrace.commands.argtypes import positive_float, positive_int
from ksmtrace.errors import UsageError
from ksmtrace.fingerprint.hashing import load_seed
from ksmtrace.fingerprint.reader import ProcessPages
from ksmtrace.fingerprint.selection import Selection
from ksmtrace.hostpaths import HostPaths
from ksmtrace.render.units import fmt_bytes

ORDER = 60
HELP = "record page fingerprints of processes/VMs for what-if analysis (root)"

DESCRIPTION = """\
Fingerprint every present page of the chosen processes' mergeable memory (VMAs with
VmFlags "mg" in /proc/<pid>/smaps), once per --interval: a 64-bit xxh3 hash salted with
this host's secret (/var/lib/ksmtrace/salt, or --salt-file), read through
/proc/<pid>/pagemap and /proc/<pid>/mem, with zero pages, transparent huge pages and
pages that already are KSM pages (/proc/kpageflags) marked. Between frames the KSM
counters of /sys/kernel/mm/ksm are sampled every --counter-interval, so a replay can be
compared with what the kernel did.

Page contents never leave this host: only salted hashes, virtual page numbers and flags are
written (file mode 0600). Snapshots of several hosts can be compared (co-location what-ifs)
when they were taken with the same --salt-file. ksmtrace snapshot changes no KSM knob.
"""

EPILOG = """\
examples:
  ksmtrace snapshot --all-mergeable --count 1 -o now.ksmsnap
  ksmtrace snapshot --vm web1 --vm web2 --interval 2 --duration 60 -o vms.ksmsnap
  ksmtrace snapshot --pid 1234 --interval 0.5 --count 20 -o app.ksmsnap
then:
  ksmtrace whatif vms.ksmsnap --sweep pages_to_scan=100,1000,4000 --cpu-budget 5%
"""


def add_parser(sub: Any) -> None:
    """Register the ``snapshot`` subcommand."""
    p = sub.add_parser(
        "snapshot",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to record (at least one)")
    g.add_argument(
        "--pid",
        type=positive_int("--pid"),
        action="append",
        default=[],
        help="a process (repeatable)",
    )
    g.add_argument("--vm", action="append", default=[], help="a VM by name (repeatable)")
    g.add_argument(
        "--all-mergeable",
        action="store_true",
        help="every process with KSM state or a mergeable region (re-discovered per frame)",
    )
    p.add_argument("-o", "--output", type=Path, help="snapshot file (snapshot-DATE.ksmsnap)")
    p.add_argument(
        "--interval",
        type=positive_float("--interval"),
        default=1.0,
        help="seconds between frames (1)",
    )
    p.add_argument("--count", type=positive_int("--count"), help="frames to record")
    p.add_argument("--duration", type=positive_float("--duration"), help="seconds to record")
    p.add_argument(
        "--counter-interval",
        type=positive_float("--counter-interval"),
        default=0.1,
        help="seconds between reads of /sys/kernel/mm/ksm (0.1)",
    )
    p.add_argument(
        "--salt-file", type=Path, help="shared salt for comparing snapshots of several hosts"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no per-frame lines")
    p.set_defaults(run=run)


def _frame_line(k: int, pages: list[ProcessPages], seconds: float, count: int | None) -> str:
    n = sum(p.pages for p in pages)
    distinct = len(np.unique(np.concatenate([p.hash for p in pages]))) if n else 0
    rate = n * 4096 / max(seconds, 1e-9)
    of = f"/{count}" if count else ""
    return (
        f"frame {k}{of}: {len(pages)} processes, {n:,} pages ({fmt_bytes(n * 4096)}), "
        f"{distinct:,} distinct, read in {seconds:.2f} s ({fmt_bytes(rate)}/s)"
    )


def run(args: argparse.Namespace) -> int:
    """Record frames until --count, --duration or Ctrl-C."""
    if not (args.pid or args.vm or args.all_mergeable):
        raise UsageError("choose processes: --pid PID, --vm NAME or --all-mergeable")
    if args.interval <= 0 or args.counter_interval <= 0:
        raise UsageError("--interval and --counter-interval must be positive")
    if args.count is None and args.duration is None:
        args.count = 1
    out = args.output or Path(f"snapshot-{datetime.now():%Y%m%d-%H%M%S}.ksmsnap")
    # The recorder pulls in the engine's cost profile (numba): load it only when running.
    from ksmtrace.fingerprint.recorder import Recorder, RecordOptions

    selection = Selection(tuple(args.pid), tuple(args.vm), args.all_mergeable)
    options = RecordOptions(
        interval_s=args.interval,
        count=args.count,
        duration_s=args.duration,
        counter_interval_s=args.counter_interval,
        seed=load_seed(args.salt_file),
    )
    progress = None if args.quiet else sys.stderr
    recorder = Recorder(out, selection, options, HostPaths.from_env(), progress)

    def on_frame(k: int, pages: list[ProcessPages], seconds: float) -> None:
        if progress is not None:
            print(_frame_line(k, pages, seconds, args.count), file=progress, flush=True)

    frames = 0
    with recorder:
        try:
            frames = recorder.run(on_frame)
        except KeyboardInterrupt:
            frames = recorder.writer.frames
    if frames and not recorder.pages_total:
        # Frames without a page would make whatif simulate an empty host: keep no file.
        out.unlink(missing_ok=True)
        raise UsageError(
            f"the chosen processes had no mergeable page in memory in {frames} frame"
            f"{'s' if frames > 1 else ''}, so nothing was written: start the workload (it must "
            "mark its memory mergeable) or choose other processes with --pid or --vm"
        )
    size = out.stat().st_size
    print(f"wrote {out} ({frames} frames, {fmt_bytes(size)})")
    return 0
