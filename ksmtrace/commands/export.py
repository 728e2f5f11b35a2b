"""``ksmtrace export``: a trace as Parquet tables or as OpenMetrics text for Prometheus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ksmtrace.errors import TraceFormatError, UsageError
from ksmtrace.private_files import open_private
from ksmtrace.tracefile.reader import check_file

ORDER = 43
HELP = "convert a trace to Parquet tables (DuckDB, pandas) or OpenMetrics (Prometheus)"

DESCRIPTION = """\
--format parquet writes a folder of Parquet tables:

  events.parquet        one row per event: time, kind, pid, comm, vm, values
  intervals.parquet     one row per interval: every /sys/kernel/mm/ksm counter, /proc/vmstat
                        KSM lines, ksmd CPU, saved bytes, events and lost events
  processes.parquet     one row per process and interval: ksm_stat and its saving share
  knob_changes.parquet  one row per KSM knob change

--format openmetrics writes the trace's metrics, with the names the live exporter serves
(ksmtrace_pages_sharing, ksmtrace_process_merges_total{pid,comm,vm,cgroup}, ...), stamped
with the recorded times, as OpenMetrics text that Prometheus loads with
'promtool tsdb create-blocks-from openmetrics', so the Grafana dashboards show a recorded
incident like live data.
"""

EPILOG = """\
examples:
  ksmtrace export incident.ksmtrace --format parquet -o incident/
  duckdb -c "SELECT comm, count(*) FROM 'incident/events.parquet' WHERE kind='COW' GROUP BY 1"
  ksmtrace export incident.ksmtrace --format openmetrics -o incident.om
  promtool tsdb create-blocks-from openmetrics incident.om /var/lib/prometheus/metrics2
"""


def add_parser(sub: Any) -> None:
    """Register the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="trace file")
    p.add_argument("--format", required=True, choices=("parquet", "openmetrics"))
    p.add_argument(
        "-o", "--output", type=Path, required=True,
        help="folder (parquet) or file (openmetrics; '-' for standard output)",
    )  # fmt: skip
    p.set_defaults(run=run)


def _require_some(path: Path, warnings: list[str], exported: int) -> None:
    """Refuse a damaged trace of which nothing could be exported (exit 0 only with data)."""
    if warnings and not exported:
        raise TraceFormatError(
            f"{path}: no interval of the trace is readable, so nothing was exported (see the "
            "warnings above); if the file was copied, copy the whole file again"
        )


def _partial(warnings: list[str]) -> str:
    """What to add to the 'Wrote ...' line when parts of the trace were skipped."""
    if not warnings:
        return ""
    return (
        "; partial export: the trace is damaged and what could not be read was skipped "
        f"({len(warnings)} warnings above)"
    )


def run(args: argparse.Namespace) -> int:
    """Write the export, warning on stderr about every damaged part of the trace skipped."""
    check_file(args.file)  # the same one-line errors as replay: missing, a folder, not a trace
    parent = args.output.parent if str(args.output) != "-" else None
    if parent is not None and not parent.is_dir():
        raise UsageError(f"cannot write {args.output}: folder {parent} does not exist")
    warnings: list[str] = []

    def warn(line: str) -> None:
        warnings.append(line)
        print(f"ksmtrace: warning: {line}", file=sys.stderr, flush=True)

    if args.format == "parquet":
        from ksmtrace.export.parquet import export_parquet

        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"{args.output} is a file: parquet export writes a folder of tables")
        try:
            counts = export_parquet(args.file, args.output, warn)
        except OSError as exc:
            raise UsageError(f"cannot write into {args.output}: {exc.strerror or exc}") from exc
        _require_some(args.file, warnings, counts["intervals"])
        print(
            f"Wrote {args.output}/: "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + _partial(warnings),
            file=sys.stderr,
        )
        return 0
    from ksmtrace.export.openmetrics import gather, write_points

    points = gather(args.file, warn)  # the whole trace first: a bad one leaves no output file
    _require_some(args.file, warnings, len(points))
    if str(args.output) == "-":
        n = write_points(points, sys.stdout)
        if warnings:
            print(f"Wrote {n} samples to standard output{_partial(warnings)}", file=sys.stderr)
        return 0
    try:
        with open_private(args.output, "w") as out:
            n = write_points(points, out)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print(f"Wrote {n} samples to {args.output}{_partial(warnings)}", file=sys.stderr)
    return 0
