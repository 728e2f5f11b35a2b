"""``ksmtrace report``: what a recorded trace shows, as text, an HTML page or a PNG image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ksmtrace.commands.argtypes import positive_int
from ksmtrace.commands.replay import parse_offset
from ksmtrace.errors import UsageError
from ksmtrace.private_files import open_private
from ksmtrace.report.model import summarize
from ksmtrace.report.text import format_report

ORDER = 42
HELP = "summarise a trace: who saved what, at what CPU cost, churn, lifetimes, lost events"

DESCRIPTION = """\
Replays a trace as fast as possible and reports:

  provenance   host, kernel, when, the KSM knobs at the start and every change of them
  savings      memory saved at the start, the end and its peak
  cost         ksmd's CPU time, pages scanned, full scans, MiB saved per core of ksmd CPU
  churn        merges, pages broken again by writes or unmerges, the cow_ksm ledger
  lost events  what the kernel side dropped while recording, per event kind
  per process  saved memory, merges, copy-on-writes, merge lifetimes, scan CPU share

as text (default), or with plots of savings and cost over time as a self-contained HTML
page (--html) or a PNG image (--png). Without FILE, the bundled sample trace is used.
"""

EPILOG = """\
examples:
  ksmtrace report incident.ksmtrace
  ksmtrace report incident.ksmtrace --html incident.html
  ksmtrace report incident.ksmtrace --png incident.png --from 5m --to 10m
"""


def add_parser(sub: Any) -> None:
    """Register the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, help="trace file (default: the bundled sample)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--html", type=Path, metavar="OUT", help="write an HTML report with plots")
    out.add_argument(
        "--png",
        type=Path,
        metavar="OUT",
        help="write the plots as an image: PNG, or SVG/PDF when OUT ends in .svg/.pdf",
    )
    p.add_argument("--from", dest="start", type=parse_offset, help="start this far into the trace")
    p.add_argument("--to", dest="end", type=parse_offset, help="stop this far into the trace")
    p.add_argument("--top", type=positive_int("--top"), default=20, help="processes listed (20)")
    p.set_defaults(run=run)


def _write(path: Path, data: bytes) -> None:
    try:
        with open_private(path) as f:
            f.write(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def run(args: argparse.Namespace) -> int:
    """Print the text report, or write the HTML page or PNG image."""
    if args.png and args.png.suffix.lower() not in ("", ".png", ".svg", ".pdf"):
        raise UsageError(f"--png {args.png}: name the image .png, .svg or .pdf")
    summary = summarize(args.file, args.start, args.end)
    for line in summary.warnings:
        print(f"ksmtrace: warning: {line}", file=sys.stderr)
    if args.html:
        from ksmtrace.report.html import render_html

        _write(args.html, render_html(summary).encode())
        print(f"Wrote {args.html}", file=sys.stderr)
    elif args.png:
        from ksmtrace.report.plots import IMAGE_FORMATS, render_png

        suffix = args.png.suffix.lower().lstrip(".") or "png"
        _write(args.png, render_png(summary, suffix if suffix in IMAGE_FORMATS else "png"))
        print(f"Wrote {args.png}", file=sys.stderr)
    else:
        print(format_report(summary, args.top))
    return 0
