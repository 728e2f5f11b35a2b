"""``ksmtrace calibrate-cost``: measure ksmd's CPU per page on this host for the merge engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ksmtrace.commands.argtypes import nonnegative_float, positive_float, positive_int
from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.session_lock import SessionLock
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.probes.live import require_root

ORDER = 61
HELP = "measure ksmd's CPU cost per page on this host (root; changes and restores KSM knobs)"

DESCRIPTION = """\
Start two workload processes (few distinct contents / all unique pages), run KSM on them
with smart_scan off and then on, and fit ksmd's CPU per KSM-page visit, per other visit,
per merge and per smart-scan skip to the live tracer's per-process scan events; the CPU
between passes gives the cost of a full scan. The result goes to
/var/lib/ksmtrace/cost-profile.json (mode 0600): 'ksmtrace snapshot' embeds it in each
snapshot and 'ksmtrace whatif' uses it to predict ksmd's CPU. About 15 s; KSM knobs are
restored afterwards.
"""


EPILOG = """\
examples:
  ksmtrace calibrate-cost                once per host, before 'ksmtrace snapshot'
  ksmtrace calibrate-cost -o /tmp/cost.json --phase 10
"""


def add_parser(sub: Any) -> None:
    """Register the ``calibrate-cost`` subcommand."""
    p = sub.add_parser(
        "calibrate-cost",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write (default /var/lib/ksmtrace/cost-profile.json)",
    )
    p.add_argument(
        "--phase", type=positive_float("--phase"), default=6.0, help="seconds per phase (6)"
    )
    p.add_argument(
        "--pages", type=positive_int("--pages"), default=16384, help="pages per workload process"
    )
    p.add_argument(
        "--wait",
        type=nonnegative_float("--wait"),
        default=600.0,
        help="seconds to wait for another KSM session (600)",
    )
    p.set_defaults(run=run)


def _say(text: str) -> None:
    print(f"calibrate-cost: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Measure, save and print the profile."""
    # The engine (numba) loads only when this command runs, not for --help.
    from ksmtrace.engine.calibrate import measure_cost
    from ksmtrace.engine.cost import PROFILE_PATH

    output = args.output or PROFILE_PATH
    if args.output is not None and not args.output.parent.is_dir():
        raise UsageError(f"cannot write {args.output}: folder {args.output.parent} does not exist")
    require_root()
    paths = HostPaths.from_env()
    with SessionLock("ksmtrace calibrate-cost", wait_s=args.wait), KnobGuard(paths) as guard:
        profile = measure_cost(guard, paths, args.pages, args.phase, progress=_say)
    profile.save(output)
    print(profile.describe())
    print(f"wrote {output} ({profile.samples} samples)")
    return 0
