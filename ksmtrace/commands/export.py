"""``ksmtrace export``: a trace as Parquet tables or as OpenMetrics text for Prometheus."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ksmtrace.errors import TraceFormatError, UsageError

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


def run(args: argparse.Namespace) -> int:
    """Write the export."""
    if not args.file.is_file():
        raise TraceFormatError(f"{args.file}: no such file; give a trace from 'ksmtrace record'")
    parent = args.output.parent if str(args.output) != "-" else None
    if parent is not None and not parent.is_dir():
        raise UsageError(f"cannot write {args.output}: folder {parent} does not exist")
    if args.format == "parquet":
        from ksmtrace.export.parquet import export_parquet

        if args.output.exists() and not args.output.is_dir():
            raise UsageError(f"{args.output} is a file: parquet export writes a folder of tables")
        counts = export_parquet(args.file, args.output)
        print(
            f"Wrote {args.output}/: " + ", ".join(f"{n} {k}" for k, n in counts.items()),
            file=sys.stderr,
        )
        return 0
    from ksmtrace.export.openmetrics import write_openmetrics

    if str(args.output) == "-":
        write_openmetrics(args.file, sys.stdout)
        return 0
    try:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as out:
        n = write_openmetrics(args.file, out)
    print(f"Wrote {n} samples to {args.output}", file=sys.stderr)
    return 0
