"""``ksmtrace record``: trace live KSM activity into a file for later replay and reports."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from ksmtrace.commands.argtypes import positive_float, positive_int
from ksmtrace.commands.trace import add_probe_options, probe_options
from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel import sysfs
from ksmtrace.privacy import host_salt
from ksmtrace.probes.live import LiveSource
from ksmtrace.probes.program import read_source
from ksmtrace.recorder import ProcessFilter, Recorder, provenance
from ksmtrace.render.units import fmt_bytes
from ksmtrace.signals import exit_status
from ksmtrace.tracefile.writer import TraceFullError, TraceWriter, check_trace_output

ORDER = 40
HELP = "record live KSM activity to a trace file (replay, report and export it later)"

DESCRIPTION = """\
Attach the probe set and write everything it sees to one file: every merge, copy-on-write
and unmerge with its process, ksmd's scan cost, registrations and exits, KSM knob changes,
and once per interval the kernel's counters (/sys/kernel/mm/ksm, /proc/vmstat, ksmd's CPU,
every process's ksm_stat) and who each process is (name, VM, cgroup).

The file is an SQLite database (format: docs/trace-format.md), created with mode 0600. It
is committed once per interval: if the recorder is killed, everything older than about one
interval is in the file and it replays. Events the kernel side had to drop are counted per
kind and stored; replay and report show them. Kernel addresses and page frame numbers are
replaced by salted ids unless --raw is given.

Stop with Ctrl-C, --duration, or --max-size; a full disk also stops recording cleanly.
"""

EPILOG = """\
examples:
  ksmtrace record -o incident.ksmtrace                    until Ctrl-C
  ksmtrace record -o bench.ksmtrace --duration 600 --max-size 500M
  ksmtrace record -o vms.ksmtrace --vm guest1 --vm guest2   only these QEMU guests
  ksmtrace replay incident.ksmtrace --fast                 look at it again
  ksmtrace report incident.ksmtrace --html report.html
"""

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")


MIN_SIZE = 256 * 1024


def parse_size(text: str) -> int:
    """A byte count such as 500M, 2G, 1.5GiB or 1048576 (binary units).

    Raises:
        UsageError: not a size.
    """
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--max-size {text!r} is not a size; write e.g. 500M or 2G")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2).lower()]
    size = int(float(m.group(1)) * scale)
    if size < MIN_SIZE:
        # The schema alone takes about 60 KiB: below this hardly an interval would fit.
        raise UsageError(f"--max-size must be at least {MIN_SIZE // 1024}K (got {text})")
    return size


def add_parser(sub: Any) -> None:
    """Register the ``record`` subcommand."""
    p = sub.add_parser(
        "record",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="trace file to create")
    p.add_argument(
        "--duration", type=positive_float("--duration"), help="stop after this many seconds"
    )
    p.add_argument(
        "--interval",
        type=positive_float("--interval"),
        default=1.0,
        help="seconds per counter sample (1)",
    )
    p.add_argument(
        "--pid", type=positive_int("--pid"), action="append", help="only this process (repeatable)"
    )
    p.add_argument(
        "--vm", action="append", metavar="NAME", help="only this VM's process (repeatable)"
    )
    p.add_argument(
        "--max-size", type=parse_size, help="stop before the file passes this size (at least 256K)"
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="store kernel mm addresses and page frame numbers as they are (host-internal)",
    )
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--note", default="", help="free text stored in the header")
    p.add_argument(
        "--compress", type=int, default=1, choices=range(10), metavar="0-9",
        help="zlib level of event chunks (1; 0 stores them uncompressed)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line")
    add_probe_options(p)
    p.set_defaults(run=run)


def attach_points() -> list[str]:
    """Tracepoints the probe set attaches, from its source."""
    text = read_source("ksmtrace.bpf.c")
    found = re.findall(r"^(?:RAW_)?TRACEPOINT_PROBE\(([^)]*)\)", text, re.MULTILINE)
    return [re.sub(r"\s*,\s*", ":", f) for f in found]


def probes_of(source: LiveSource) -> dict[str, Any]:
    """The header's description of the probe set in use."""
    st = source.state
    return {
        "attach_points": attach_points(),
        "page_walk": st.page_tables is not None,
        "page_walk_note": st.page_walk_note,
        "header_origin": st.header_origin,
        "ksmd_pid": st.ksmd_pid,
        "merged_max": source.options.merged_max,
        "ringbuf_pages": source.options.ringbuf_pages,
    }


class _Progress:
    """A status line on stderr every few seconds (rewritten in place on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()

    def show(self, rec: Recorder, elapsed: float, final: bool = False) -> None:
        if self.quiet or (not final and time.monotonic() - self.last < (1 if self.tty else 10)):
            return
        self.last = time.monotonic()
        st = rec.stats
        lost = sum(st.lost.values())
        line = (
            f"recording {elapsed:.0f} s: {st.events} events in {st.ticks} intervals, "
            f"{fmt_bytes(st.bytes)}" + (f", {lost} LOST by the kernel side" if lost else "")
        )
        end = "\n" if final or not self.tty else ""
        print(("\r\033[K" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Record until --duration, --max-size, a full disk, or Ctrl-C."""
    if args.interval <= 0:
        raise UsageError("--interval must be positive, e.g. --interval 1")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    check_trace_output(args.output, args.force)  # before the slow probe start-up
    if not args.output.parent.is_dir():
        raise UsageError(f"cannot create {args.output}: folder {args.output.parent} does not exist")
    paths = HostPaths.from_env()
    for pid in args.pid or []:
        if not paths.pid_dir(pid).exists():
            raise UsageError(f"no process with pid {pid}; check it with 'ps -p {pid}'")
    filter_ = ProcessFilter(set(args.pid or []), set(args.vm or []))
    source = LiveSource(paths, probe_options(args))
    progress = _Progress(args.quiet)
    with source:
        knobs = sysfs.read_ksm_sysfs(paths)
        header = provenance(
            knobs={k: v for k, v in knobs.items() if k in sysfs.KNOBS},
            probes=probes_of(source),
            interval_s=args.interval,
            page_size=source.sample().page_size,
            filter_=filter_,
            sanitized=not args.raw,
            note=args.note,
        )
        writer = TraceWriter(
            args.output, header, max_size=args.max_size, level=args.compress, overwrite=args.force
        )
        recorder = Recorder(writer, None if args.raw else host_salt(), filter_)
        if not args.quiet:
            print(
                f"Recording KSM activity to {args.output} (ksmd is pid {source.state.ksmd_pid}; "
                f"{source.state.page_walk_note}). Ctrl-C to stop.",
                file=sys.stderr,
            )
        started = time.monotonic()
        reason = "duration reached"
        signalled: SystemExit | None = None
        warned_vms = False
        try:
            for tick in source.ticks(args.interval, args.duration):
                probe_stats = dict(source.state.stats)
                probe_stats["lost_total"] = sum(source.state.lost_total.values())
                recorder.submit(tick, {"probe_stats": probe_stats})
                if not warned_vms and (missing := filter_.vms - filter_.vms_seen):
                    warned_vms = True  # once, after the first interval named the VMs it saw
                    print(
                        f"ksmtrace: warning: no mergeable VM named {', '.join(sorted(missing))} "
                        "is running yet; recording goes on and includes it once it appears",
                        file=sys.stderr,
                    )
                progress.show(recorder, time.monotonic() - started)
        except KeyboardInterrupt:
            reason = "interrupted"
        except TraceFullError:
            reason = "full"
        except SystemExit as exc:  # SIGTERM/SIGHUP (see cli): close the file, then exit
            reason, signalled = "terminated by a signal", exc
        try:
            stats = recorder.close(reason)
        except TraceFullError as exc:
            progress.show(recorder, time.monotonic() - started, final=True)
            print(f"ksmtrace: {exc}", file=sys.stderr)
            return 0 if exc.cap_reached else 1
    progress.show(recorder, time.monotonic() - started, final=True)
    for vm in sorted(filter_.vms - filter_.vms_seen):
        print(
            f"ksmtrace: warning: no VM named {vm!r} was seen; 'ksmtrace trace' shows VM names",
            file=sys.stderr,
        )
    if not args.quiet:
        lost = sum(stats.lost.values())
        print(
            f"Recorded {stats.events} events in {stats.ticks} intervals to {args.output} "
            f"({reason}); lost by the kernel side: {lost}.",
            file=sys.stderr,
        )
    if signalled is not None:
        return exit_status(signalled)
    return 0
