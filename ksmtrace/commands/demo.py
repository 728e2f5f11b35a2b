"""``ksmtrace demo``: trace a built-in workload with KSM switched on, then explain what happened."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from typing import Any

from ksmtrace.aggregate import Accumulator
from ksmtrace.commands.argtypes import positive_float
from ksmtrace.commands.trace import add_probe_options, probe_options
from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.session_lock import SessionLock
from ksmtrace.kernel.sysfs import KnobGuard, validate_knob
from ksmtrace.probes.live import LiveSource, require_root
from ksmtrace.render.summary import format_summary
from ksmtrace.render.table import format_interval
from ksmtrace.signals import exit_status
from ksmtrace.workers import Workers, WorkerSpec

ORDER = 30
HELP = "30 s guided run on a built-in workload (switches KSM on, restores it after)"

DESCRIPTION = """\
Starts five workload processes with known content (16 MiB each):

  web-1, web-2, web-3   70% of their pages are the same across the three, 10% are zero
  cache                 90% duplicate content, but it rewrites 400 of those pages a second
  unique                nothing in common with anyone

saves the KSM knobs, switches KSM on (run=1, pages_to_scan=1000, sleep_millisecs=10 unless
told otherwise), traces everything live and ends with a summary of what merged, what
broke again and why, and what ksmd's scanning cost. The knobs are restored and the
workload ended on every exit path, Ctrl-C and SIGTERM included.
"""

DEMO_WORKERS = [
    WorkerSpec("web-1", 4096, shared=0.7, zero=0.1, distinct=256, seed=1),
    WorkerSpec("web-2", 4096, shared=0.7, zero=0.1, distinct=256, seed=1),
    WorkerSpec("web-3", 4096, shared=0.7, zero=0.1, distinct=256, seed=1),
    WorkerSpec("cache", 4096, shared=0.9, distinct=128, seed=2, churn=400.0),
    WorkerSpec("unique", 4096, shared=0.0, seed=3),
]


EPILOG = """\
examples:
  ksmtrace demo                          30 s, KSM at 1000 pages every 10 ms
  ksmtrace demo --duration 60 --interval 5
  ksmtrace demo --pages-to-scan 100 --sleep-millisecs 20   KSM's defaults: slower merging
  ksmtrace demo --quiet                  only the summary
  ksmtrace demo --workload-only          the workload with KSM on, traced by nothing, until
                                         Ctrl-C: try 'ksmtrace top', 'trace', 'record' or
                                         'serve' on it from another terminal
"""


def add_parser(sub: Any) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_probe_options(p)
    p.add_argument(
        "--duration",
        type=positive_float("--duration"),
        help="seconds to trace (30; with --workload-only: until Ctrl-C)",
    )
    p.add_argument(
        "--interval", type=positive_float("--interval"), default=3.0, help="seconds per table (3)"
    )
    p.add_argument("--pages-to-scan", default="1000", help="KSM pages_to_scan during the demo")
    p.add_argument("--sleep-millisecs", default="10", help="KSM sleep_millisecs during the demo")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.add_argument(
        "--workload-only",
        action="store_true",
        help="start the workload and switch KSM on, but trace nothing (for the other "
        "commands; the probe options do not apply)",
    )
    p.set_defaults(run=run)


def _run_workload_only(args: argparse.Namespace, pages_to_scan: str, sleep_ms: str) -> int:
    """Keep the demo's workload merging, without probes, until --duration or a signal."""
    status = 0
    try:
        _keep_workload(args, HostPaths.from_env(), pages_to_scan, sleep_ms)
    except SystemExit as exc:  # SIGTERM/SIGHUP (see cli): the with-blocks restored everything
        status = exit_status(exc)
    print("KSM knobs restored; the workload processes have ended.")
    return status


def _keep_workload(
    args: argparse.Namespace, paths: HostPaths, pages_to_scan: str, sleep_ms: str
) -> None:
    with SessionLock("ksmtrace demo --workload-only"), KnobGuard(paths) as guard:
        if guard.recovered:
            print(f"Restored the KSM knobs a killed ksmtrace session left: {guard.recovered}")
        with Workers(DEMO_WORKERS) as workers:
            guard.set("pages_to_scan", pages_to_scan)
            guard.set("sleep_millisecs", sleep_ms)
            guard.set("run", "1")
            running = ", ".join(
                f"{spec.name} {pid}" for spec, pid in zip(DEMO_WORKERS, workers.pids, strict=True)
            )
            until = f"for {args.duration:.0f} s" if args.duration else "until Ctrl-C"
            print(
                f"Workload running ({running}); KSM on: run=1 pages_to_scan={pages_to_scan} "
                f"sleep_millisecs={sleep_ms}, {until}.\n"
                "From another terminal try: ksmtrace top | ksmtrace trace | "
                "ksmtrace record -o demo.ksmtrace | ksmtrace serve",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it is meant to end
                threading.Event().wait(args.duration)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary."""
    if (args.duration is not None and args.duration <= 0) or args.interval <= 0:
        raise UsageError("--duration and --interval must be positive")
    pages_to_scan = validate_knob("pages_to_scan", args.pages_to_scan)
    sleep_ms = validate_knob("sleep_millisecs", args.sleep_millisecs)
    require_root()
    if args.workload_only:
        return _run_workload_only(args, pages_to_scan, sleep_ms)
    duration = args.duration or 30.0
    paths = HostPaths.from_env()
    say = (lambda *_a, **_k: None) if args.quiet else print
    source = LiveSource(paths, probe_options(args))
    acc: Accumulator | None = None
    started = time.monotonic()
    # Ctrl-C at any moment after KSM is on ends the demo with a summary of what was traced;
    # the with-blocks restore the knobs and end the workload first, whatever happens.
    try:
        with SessionLock("ksmtrace demo"), KnobGuard(paths) as guard, source:
            if guard.recovered:
                say(f"Restored the KSM knobs a killed ksmtrace session left: {guard.recovered}")
            say("Starting the workload: web-1..3 (shared content), cache (rewrites), unique.")
            with Workers(DEMO_WORKERS) as workers:
                acc = Accumulator(workers.pids)
                guard.set("pages_to_scan", pages_to_scan)
                guard.set("sleep_millisecs", sleep_ms)
                guard.set("run", "1")
                say(
                    f"KSM on: run=1 pages_to_scan={pages_to_scan} sleep_millisecs={sleep_ms} "
                    f"(was {', '.join(f'{k}={v}' for k, v in guard.changed.items())}); "
                    f"tracing for {duration:.0f} s, Ctrl-C ends early.\n",
                    flush=True,
                )
                started = time.monotonic()
                for tick in source.ticks(args.interval, duration):
                    rep = acc.add(tick)
                    say(format_interval(rep) + "\n", flush=True)
    except KeyboardInterrupt:
        if acc is None:
            raise
        say("\nInterrupted: summarising what was traced so far.", file=sys.stderr)
    elapsed = time.monotonic() - started
    if acc is None:
        return 130
    print(format_summary(acc, elapsed))
    print("\nKSM knobs restored; the workload processes have ended.")
    return 0
