"""``ksmtrace replay``: play a recorded trace into the live views (table, JSON lines, summary)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from ksmtrace.aggregate import Accumulator
from ksmtrace.commands.argtypes import nonnegative_float, positive_int
from ksmtrace.commands.serve import add_replay_serving_options, serve_replay
from ksmtrace.commands.top import add_replay_tui_options, run_replay_tui
from ksmtrace.errors import UsageError
from ksmtrace.events import EventKind
from ksmtrace.exporter import DEFAULT_LISTEN
from ksmtrace.render.jsonl import format_interval_json
from ksmtrace.render.summary import format_summary
from ksmtrace.render.table import format_interval
from ksmtrace.replay import ReplaySource
from ksmtrace.tracefile.schema import TraceHeader

ORDER = 41
HELP = "replay a recorded trace (or the bundled sample) into the trace table, JSON or summary"

DESCRIPTION = """\
Feed a trace written by 'ksmtrace record' into the same views as live tracing: the
per-process table every interval and the summary at the end, or JSON lines (--json).
Without FILE, a small sample trace bundled with ksmtrace is played: real processes and
QEMU guests merging, writing and being scanned; no root or BPF needed.

Replay runs at recorded pace; --speed 10 runs ten times faster, --fast as fast as
possible. --from/--to pick a window, in seconds from the start of the trace (90, 1m30s,
2m, 1h). Events the kernel side dropped while recording are shown as LOST in the table
and counted in the summary. A damaged file is replayed as far as it is readable, with a
warning naming what was skipped.
"""

EPILOG = """\
examples:
  ksmtrace replay                              the bundled sample, at recorded pace
  ksmtrace replay incident.ksmtrace --fast     the whole trace at once, then the summary
  ksmtrace replay incident.ksmtrace --from 2m --to 3m --speed 5
  ksmtrace replay incident.ksmtrace --json --fast | jq .saved_bytes
  ksmtrace replay incident.ksmtrace --interval 10 --fast   one table per 10 s
  ksmtrace replay --tui                        the sample in the terminal UI (ksmtrace top)
  ksmtrace replay incident.ksmtrace --serve    as Prometheus /metrics, like 'ksmtrace serve'
"""

_OFFSET = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s?)?$")


def parse_offset(text: str) -> float:
    """Seconds into a trace: '90', '90s', '1m30s', '2m', '1h', or 'MM:SS' / 'HH:MM:SS'.

    Raises:
        UsageError: not an offset.
    """
    t = text.strip()
    if ":" in t:
        parts = t.split(":")
        if len(parts) <= 3 and all(re.fullmatch(r"\d+(\.\d*)?", p) for p in parts):
            return float(sum(float(p) * 60**i for i, p in enumerate(reversed(parts))))
    else:
        m = _OFFSET.match(t)
        if t and m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s
    raise UsageError(f"{text!r} is not a time in the trace; write e.g. 90, 1m30s or 01:30")


def add_parser(sub: Any) -> None:
    """Register the ``replay`` subcommand."""
    p = sub.add_parser(
        "replay",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, help="trace file (default: the bundled sample)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=nonnegative_float("--speed", 1e6, ""),
        default=1.0,
        help="times the recorded pace (1; 0 = --fast)",
    )
    pace.add_argument("--fast", action="store_true", help="as fast as possible")
    p.add_argument("--from", dest="start", type=parse_offset, help="start this far into the trace")
    p.add_argument("--to", dest="end", type=parse_offset, help="stop this far into the trace")
    p.add_argument(
        "--interval",
        type=nonnegative_float("--interval"),
        default=0.0,
        help="seconds per table: recorded intervals are joined up to this (default: as recorded)",
    )
    p.add_argument(
        "--pid", type=positive_int("--pid"), action="append", help="only this process (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per interval")
    p.add_argument(
        "--top", type=positive_int("--top"), default=20, help="rows per interval in the table (20)"
    )
    add_replay_serving_options(p)
    add_replay_tui_options(p)
    p.set_defaults(run=run)


def describe(header: TraceHeader, path: Path, duration_s: float, ticks: int) -> str:
    """One line saying where and when a trace was recorded."""
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(header.started_wall_ns / 1e9))
    filt = ""
    if header.filter_pids or header.filter_vms:
        filt = (
            " (only "
            + ", ".join(
                [f"pid {p}" for p in header.filter_pids] + [f"VM {v}" for v in header.filter_vms]
            )
            + ")"
        )
    return (
        f"Replaying {path}: recorded on {header.hostname} (Linux {header.kernel_release}) "
        f"at {when}, {duration_s:.0f} s in {ticks} intervals{filt}."
    )


def lost_line(lost: dict[int, int]) -> str:
    """'Lost by the kernel side while recording: COW 12, MERGE 3' (or that none were)."""
    if not any(lost.values()):
        return "Lost by the kernel side while recording: none."
    parts = [
        f"{EventKind(k).name if k in EventKind._value2member_map_ else k} {n}"
        for k, n in sorted(lost.items())
        if n
    ]
    return "Lost by the kernel side while recording: " + ", ".join(parts) + "."


def _check_pids(src: ReplaySource, pids: list[int] | None) -> None:
    """Refuse a --pid the trace never saw (an empty replay would look like no activity)."""
    known = src.recorded_pids()
    for pid in pids or []:
        if pid not in known:
            some = ", ".join(str(p) for p in sorted(known)[:12]) or "none"
            raise UsageError(
                f"pid {pid} does not appear in {src.path}; its pids: {some}"
                f"{' ...' if len(known) > 12 else ''} (names: 'ksmtrace report {src.path}')"
            )


def run(args: argparse.Namespace) -> int:
    """Replay the trace into the table and summary, or JSON lines."""
    if args.listen != DEFAULT_LISTEN and not args.serve:
        raise UsageError("--listen only applies with --serve; add --serve or drop --listen")
    if args.tui:
        return run_replay_tui(args)
    if args.interval < 0:
        raise UsageError("--interval must be 0 (as recorded) or positive")
    speed = 0.0 if args.fast else args.speed

    def warn(line: str) -> None:
        print(f"ksmtrace: warning: {line}", file=sys.stderr, flush=True)

    with ReplaySource(args.file, speed, args.start, args.end, on_warning=warn) as src:
        src.check_window()
        _check_pids(src, args.pid)
        if args.serve:
            return serve_replay(src, args)
        acc = Accumulator(args.pid)
        if not args.json:
            print(describe(src.header, src.path, src.duration_s, src.tick_count), file=sys.stderr)
        first_ns = last_ns = None
        try:
            for tick in src.ticks(args.interval):
                rep = acc.add(tick)
                first_ns = tick.start_ns if first_ns is None else first_ns
                last_ns = tick.end_ns
                out = format_interval_json(rep) if args.json else format_interval(rep, args.top)
                print(out if args.json else out + "\n", flush=True)
        except KeyboardInterrupt:
            pass
        if not args.json:
            seconds = (last_ns - first_ns) / 1e9 if first_ns is not None and last_ns else 0.0
            print(format_summary(acc, seconds))
            print("  " + lost_line(src.lost_total))
            if src.warnings:
                print(f"  The file is damaged: {len(src.warnings)} warnings (see above).")
    return 0
