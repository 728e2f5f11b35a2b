"""``ksmtrace top``: the terminal UI, live (probes attached) or on a recorded trace."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from pathlib import Path
from typing import Any

from ksmtrace.commands.argtypes import nonnegative_float, positive_float
from ksmtrace.commands.trace import add_probe_options, probe_options
from ksmtrace.errors import KsmtraceError, UsageError
from ksmtrace.events import GROUPINGS
from ksmtrace.hostpaths import HostPaths
from ksmtrace.mergeability import VmWatch
from ksmtrace.probes.live import LiveSource, require_root
from ksmtrace.top.columns import COLUMNS
from ksmtrace.top.feeds import Feed, LiveFeed, ReplayFeed
from ksmtrace.top.regions import read_regions
from ksmtrace.top.worker import SPEEDS, RegionsReader, VmVerdicts

#: Signals that end the UI like 'q' does (the exit status is then 128 + the signal).
UI_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

ORDER = 25
HELP = "terminal UI: savings, cost, churn and why memory does not merge (live or a trace)"

DESCRIPTION = """\
A full-screen view to keep open on a hypervisor. The header shows KSM's state and knobs,
the memory it saves (zero pages included) and general_profit, ksmd's CPU, the scan rate,
the last full scan, the copy-on-write rate and lost events. Below, one row per process
(g: per VM, per cgroup) sortable by every column (s, 1-9), filterable by name (/), and
for the selected row: savings and COW rate over time, the merge-lifetime histogram, its
ksm_stat, its mergeable regions (smaps, live) and its cgroup. Where something is wrong
the screen says so in words: KSM off, nothing registered as mergeable (and who stopped
being mergeable when), ksmd scanning but nothing merging, merges broken faster than a
full scan, ksmd CPU high for what it saves, hugetlb or shared memory that cannot merge.

Without FILE, top attaches the live probes (root, like 'ksmtrace trace'); with FILE it
replays a trace from 'ksmtrace record': space pauses, + and - change the speed, left and
right seek 5 s, [ and ] 60 s. Rates are averages over --window seconds. top only observes:
it changes no KSM knob, and quitting (q or Ctrl-C) detaches every probe. Press ? for
every key; everything works without a mouse, from 80x24 up.
"""

EPILOG = """\
examples:
  ksmtrace top                          live, one update per second
  ksmtrace top --group vm --sort cows   live, per VM, the biggest copy-on-write rate first
  ksmtrace top incident.ksmtrace        replay a recorded trace at recorded pace
  ksmtrace top incident.ksmtrace --from 2m --speed 10 --paused
  ksmtrace replay --tui                 the sample trace bundled with ksmtrace
"""


def add_view_options(p: argparse.ArgumentParser) -> None:
    """Options of the terminal UI shared by ``top`` and ``replay --tui``."""
    g = p.add_argument_group("view options")
    g.add_argument(
        "--window",
        type=positive_float("--window"),
        default=5.0,
        help="seconds rates average over (5)",
    )
    g.add_argument("--group", choices=GROUPINGS, default="process", help="initial grouping")
    g.add_argument(
        "--sort",
        choices=[c.id for c in COLUMNS],
        default="saved",
        help="initial sort column (saved)",
    )
    g.add_argument("--paused", action="store_true", help="start paused (replay)")


def add_replay_tui_options(p: argparse.ArgumentParser) -> None:
    """``replay``'s --tui and the view options (--speed, --from and --to keep replay's meaning)."""
    g = p.add_argument_group("terminal UI options")
    g.add_argument(
        "--tui",
        action="store_true",
        help="show the replay in the terminal UI of 'ksmtrace top' (space pauses, +/- speed, "
        "left/right seek, ? lists every key) instead of printing tables",
    )
    add_view_options(p)


def run_replay_tui(args: argparse.Namespace) -> int:
    """``ksmtrace replay [FILE] --tui``: the trace (default: the bundled sample) in the UI.

    Raises:
        UsageError: --json, --serve or --pid asked for together with --tui.
    """
    for flag in ("json", "serve", "pid"):
        if getattr(args, flag, None):
            raise UsageError(f"--{flag} and --tui do not go together: the UI shows every process")
    speed = SPEEDS[-1] if getattr(args, "fast", False) or args.speed == 0 else args.speed
    _check(argparse.Namespace(window=args.window, speed=speed))
    return run_tui(ReplayFeed(args.file, args.start, args.end), args, speed=speed)


def add_parser(sub: Any) -> None:
    """Register the ``top`` subcommand."""
    from ksmtrace.commands.replay import parse_offset  # replay imports this module

    p = sub.add_parser(
        "top",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, help="a trace to replay (default: live)")
    p.add_argument(
        "--interval",
        type=positive_float("--interval"),
        default=1.0,
        help="live: seconds per update (1)",
    )
    p.add_argument(
        "--speed",
        type=nonnegative_float("--speed", 1e6, ""),
        default=1.0,
        help="replay: times the recorded pace (1)",
    )
    p.add_argument(
        "--from",
        dest="start",
        type=parse_offset,
        help="replay: start this far in (seeking back stays possible)",
    )
    p.add_argument("--to", dest="end", type=parse_offset, help="replay: stop this far in")
    add_view_options(p)
    add_probe_options(p)
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if args.window <= 0 or getattr(args, "interval", 1.0) <= 0:
        raise UsageError("--window and --interval must be positive")
    if getattr(args, "speed", 1.0) <= 0:
        raise UsageError("--speed must be positive, e.g. --speed 10 for ten times faster")


def run_tui(
    feed: Feed,
    args: argparse.Namespace,
    regions: RegionsReader | None = None,
    speed: float = 1.0,
    vms: VmVerdicts | None = None,
) -> int:
    """Run the terminal UI on ``feed`` until the user quits; the feed is always closed.

    Args:
        feed: a live or recorded feed (the UI's worker thread owns it from here on).
        args: parsed view options (see :func:`add_view_options`).
        regions: smaps reader for the detail pane (live only).
        speed: initial replay speed.
        vms: the verdicts of the host's VMs (live only).

    Returns:
        The exit status.

    Raises:
        KsmtraceError: the source failed while the UI ran (shown as one line).
    """
    try:
        require_terminal()
    except UsageError:
        feed.close()
        raise
    from ksmtrace.tui import TopApp  # textual only for the commands that draw with it

    app = TopApp(
        feed, window_s=args.window, speed=speed, paused=args.paused, regions=regions,
        vms=vms, grouping=args.group, sort=args.sort, seek_s=getattr(args, "start", None),
        exit_on_signals=UI_SIGNALS,
    )  # fmt: skip
    # The app's event loop handles these while it runs, and resets them when it closes.
    previous = {signum: signal.getsignal(signum) for signum in UI_SIGNALS}
    try:
        app.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not app.worker.stop() or not app.worker.closed.is_set():
            feed.close()  # the worker never ran or is stuck: detach the probes here
    if isinstance(app.failure, KsmtraceError):
        raise app.failure
    if app.failure is not None:
        raise KsmtraceError(f"the event source failed: {app.failure}") from app.failure
    return app.return_code or 0  # 128 + N when signal N ended it


def require_terminal() -> None:
    """Refuse to draw the full-screen UI into a pipe or file, or to read keys from one.

    Raises:
        UsageError: standard input or output is not a terminal.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "the terminal UI needs a terminal for input and output; to print tables instead "
            "use 'ksmtrace trace' (live) or 'ksmtrace replay FILE'"
        )


def run(args: argparse.Namespace) -> int:
    """Replay FILE, or attach the live probes, in the terminal UI."""
    _check(args)
    if args.file is not None:
        if not args.file.exists():
            raise UsageError(f"{args.file}: no such file; record one with 'ksmtrace record'")
        return run_tui(ReplayFeed(args.file, args.start, args.end), args, speed=args.speed)
    if args.start is not None or args.end is not None or args.speed != 1.0:
        raise UsageError(
            "--from, --to and --speed apply to a recorded trace: ksmtrace top FILE --from 1m"
        )
    require_terminal()
    require_root()
    paths = HostPaths.from_env()
    source = LiveSource(paths, probe_options(args))
    source.start()
    try:
        feed = LiveFeed(source, args.interval)
        regions = functools.partial(read_regions, paths)
        return run_tui(feed, args, regions=regions, vms=VmWatch(paths).verdicts)
    finally:
        source.close()
