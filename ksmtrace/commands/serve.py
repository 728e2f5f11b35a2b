"""``ksmtrace serve``: a Prometheus exporter of live per-process KSM activity."""

from __future__ import annotations

import argparse
from typing import Any

from ksmtrace.commands.argtypes import positive_float, positive_int
from ksmtrace.commands.trace import add_probe_options, probe_options
from ksmtrace.errors import UsageError
from ksmtrace.exporter import DEFAULT_LISTEN, DEFAULT_PORT, DEFAULT_TOP_N, Listen, serve
from ksmtrace.exporter.sources import live_probe_report, trace_probe_report
from ksmtrace.hostpaths import HostPaths
from ksmtrace.probes.live import LiveSource, require_root
from ksmtrace.replay import ReplaySource

ORDER = 50
HELP = "Prometheus exporter: /metrics with KSM savings, cost and churn per process and VM"

DESCRIPTION = f"""\
Attach the probe set and serve Prometheus metrics at http://{DEFAULT_LISTEN}/metrics:

  host     ksmtrace_pages_sharing, _pages_shared, _full_scans_total, _run, _sleep_seconds...
           (node_exporter's ksmd names), _saved_bytes, _general_profit_bytes,
           _cow_ksm_total, _ksmd_cpu_seconds_total, _full_scan_duration_seconds
  process  ksmtrace_process_merges_total, _cow_unmerges_total, _unmerges_total{{kind}},
           _pages_scanned_total, _scan_cpu_seconds_total, _saved_bytes, _merging_pages,
           _profit_bytes, _merge_lifetime_seconds (histogram); labels pid, comm, vm, cgroup
  health   ksmtrace_scrape_collector_success, _lost_events_total, _probe_info

Only the --top processes with the largest savings get their own series; all others are
summed into one series labelled "other", so scrapes stay small on hosts with thousands of
processes. A process moving in or out of the top keeps every counter monotonic: each
interval's increase goes to the series the process belongs to in that interval, so use
sum(rate(...)) for host-wide rates. Grafana dashboards for these metrics are in dashboards/.

The default port, {DEFAULT_PORT}, is outside the 9100-9999 block the Prometheus exporter
port registry has fully allocated and past its allocations above 10000. Only this host can
connect unless --listen names another address. ksmtrace only observes: it changes no KSM knob.
"""

EPILOG = f"""\
examples:
  ksmtrace serve                              localhost:{DEFAULT_PORT}, top 20 processes
  ksmtrace serve --listen 0.0.0.0:{DEFAULT_PORT}    let a Prometheus on another host scrape
  ksmtrace serve --top 50 --interval 15       more series, updated as often as scraped
  curl -s localhost:{DEFAULT_PORT}/metrics | grep ksmtrace_saved_bytes

prometheus.yml:
  scrape_configs:
    - job_name: ksmtrace
      static_configs: [{{targets: ["HOST:{DEFAULT_PORT}"]}}]
"""


def add_serving_options(p: argparse.ArgumentParser) -> None:
    """Options every command that serves /metrics shares (serve, replay --serve)."""
    g = p.add_argument_group("exporter options")
    g.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to serve /metrics on ({DEFAULT_LISTEN}; 0.0.0.0:PORT for every "
        "interface, port 0 for any free port)",
    )
    g.add_argument(
        "--top",
        type=positive_int("--top"),
        default=DEFAULT_TOP_N,
        help=f"processes with their own series, by savings; the rest are 'other' ({DEFAULT_TOP_N})",
    )


def add_replay_serving_options(p: argparse.ArgumentParser) -> None:
    """``replay``'s --serve and --listen (--top and --interval keep replay's meaning)."""
    g = p.add_argument_group("exporter options")
    g.add_argument(
        "--serve",
        action="store_true",
        help="serve the replay as Prometheus /metrics instead of printing it (the metrics "
        "and dashboards of 'ksmtrace serve'; --top processes get their own series); the "
        "last values stay served after the end until Ctrl-C",
    )
    g.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address for --serve ({DEFAULT_LISTEN}; port 0 for any free port)",
    )


def add_parser(sub: Any) -> None:
    """Register the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_serving_options(p)
    p.add_argument(
        "--interval",
        type=positive_float("--interval"),
        default=5.0,
        help="seconds between updates of the served values (5)",
    )
    p.add_argument(
        "--duration", type=positive_float("--duration"), help="stop after this many seconds"
    )
    add_probe_options(p)
    p.set_defaults(run=run)


def serve_replay(source: ReplaySource, args: argparse.Namespace) -> int:
    """``ksmtrace replay FILE --serve``: the replayed trace as /metrics (options as serve's).

    After the trace ends the last values stay served until Ctrl-C, so a Prometheus scrape
    still finds them.
    """
    if args.json or args.pid:
        raise UsageError("--serve serves every process as metrics: drop --json and --pid")
    try:
        return serve(
            source,
            Listen.parse(args.listen),
            interval_s=args.interval,
            top_n=args.top,
            probe=lambda: trace_probe_report(source.header),
            linger=True,
        )
    except KeyboardInterrupt:
        return 0


def run(args: argparse.Namespace) -> int:
    """Serve until --duration or Ctrl-C."""
    listen = Listen.parse(args.listen)
    if args.interval <= 0:
        raise UsageError("--interval must be positive, e.g. --interval 5")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive, e.g. --duration 3600")
    require_root()  # before anything says "Serving"
    source = LiveSource(HostPaths.from_env(), probe_options(args))
    try:  # serve() binds the port first, then the source attaches the probes
        return serve(
            source,
            listen,
            interval_s=args.interval,
            top_n=args.top,
            duration_s=args.duration,
            probe=lambda: live_probe_report(source),
        )
    except KeyboardInterrupt:
        return 0
    finally:
        source.close()
