"""Serving /metrics: the listen address, the HTTP server and the loop that feeds it Ticks."""

from __future__ import annotations

import html
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from ksmtrace import console
from ksmtrace.errors import UsageError
from ksmtrace.events import TickSource
from ksmtrace.exporter.collectors import KsmtraceCollector, SnapshotBoard
from ksmtrace.exporter.snapshot import ProbeReport
from ksmtrace.exporter.state import DEFAULT_TOP_N, ExporterState

#: Default port. The Prometheus exporter registry (the "Default port allocations" page of
#: the prometheus/prometheus wiki) filled 9100-9999 by 2023 and continues upwards from
#: 10000; 10455 lies past the allocations made so far, in the part nobody has claimed, and
#: clear of /etc/services entries (webmin 10000, zabbix 10050/10051, amanda 10080-10083).
DEFAULT_PORT = 10455
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"


@dataclass(frozen=True, slots=True)
class Listen:
    """Where /metrics is served: ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (localhost)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse a ``--listen`` value.

        Raises:
            UsageError: not HOST:PORT with a port from 0 to 65535 (0: any free port).
        """
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text.isdigit() or int(port_text) > 65535:
            raise UsageError(
                f"--listen {text!r} is not HOST:PORT; e.g. --listen 127.0.0.1:{DEFAULT_PORT}, "
                f"or 0.0.0.0:{DEFAULT_PORT} to accept scrapes from other hosts"
            )
        host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
        return cls(host, int(port_text))

    @property
    def loopback(self) -> bool:
        """Whether only this host can connect."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def url(self, port: int | None = None) -> str:
        """The /metrics URL (with the port actually bound, if given)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/metrics"


def build_registry(
    board: SnapshotBoard, clock: Callable[[], float] = time.monotonic, own_process: bool = True
) -> CollectorRegistry:
    """A private registry with the ksmtrace collectors (and the exporter's own process_*)."""
    registry = CollectorRegistry()
    registry.register(KsmtraceCollector(board, clock))
    if own_process:
        ProcessCollector(registry=registry)
    return registry


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow scraper never holds up another."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def metrics_app(registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    """WSGI app: /metrics from ``registry``, a short page at /, 404 for any other path."""
    metrics = make_wsgi_app(registry)
    landing = (
        b"<html><head><title>ksmtrace exporter</title></head><body><h1>ksmtrace exporter</h1>"
        b'<p>KSM savings, churn and ksmd cost per process: <a href="metrics">metrics</a></p>'
        b"</body></html>"
    )

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{html.escape(path)}: not found; the metrics are at /metrics\n".encode()]

    return app


def start_server(
    listen: Listen, registry: CollectorRegistry
) -> tuple[WSGIServer, threading.Thread]:
    """Bind ``listen`` and answer scrapes from a daemon thread.

    Raises:
        OSError: the address cannot be bound.
    """
    server_class = _Server6 if ":" in listen.host else _Server
    httpd = make_server(
        listen.host, listen.port, metrics_app(registry), server_class, _QuietHandler
    )
    thread = threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return httpd, thread


def serve(
    source: TickSource,
    listen: Listen,
    *,
    interval_s: float = 5.0,
    top_n: int = DEFAULT_TOP_N,
    duration_s: float | None = None,
    probe: Callable[[], ProbeReport] | None = None,
    linger: bool = False,
    say: Callable[[str], None] = console.say,
) -> int:
    """Serve /metrics from ``source`` until it ends (or forever with ``linger``) or Ctrl-C.

    The HTTP server answers from its own threads; this thread reads the source, folds each
    Tick and publishes the new snapshot.

    Args:
        source: live probes or a replayed trace.
        listen: address to bind; port 0 picks a free one (announced through ``say``).
        interval_s: seconds per Tick: how fresh the served data is (0: as the source
            chooses; a replay then keeps the recorded intervals).
        top_n: processes with their own series; the rest are summed as ``other``.
        duration_s: stop after this long (None: until the source ends).
        probe: describes the source for ``ksmtrace_probe_info``.
        linger: keep serving the last snapshot after the source ended, until interrupted.
        say: where progress lines go (stderr).

    Returns:
        0.

    Raises:
        UsageError: the address cannot be bound.
    """
    if interval_s < 0:
        raise UsageError("--interval must be positive, e.g. --interval 5")
    state = ExporterState(top_n, probe)
    board = SnapshotBoard()
    try:
        httpd, thread = start_server(listen, build_registry(board))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {listen.host}:{listen.port} ({exc.strerror or exc}); "
            "pick another address with --listen HOST:PORT"
        ) from None
    say(f"Serving {listen.url(httpd.server_port)}")
    if not listen.loopback:
        say("Listening beyond this host: /metrics shows process names, VM names and cgroups.")
    try:
        for tick in source.ticks(interval_s, duration_s):
            board.publish(state.fold(tick))
        last = state.ended()
        if last is not None:
            board.publish(last)
        if linger:
            say("The source ended; serving its last values until Ctrl-C.")
            threading.Event().wait()
    except SystemExit:  # SIGTERM/SIGHUP (see cli): the usual way a service is stopped
        say("ksmtrace: stopped by a signal, no longer serving")
        raise
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
    return 0
