"""serve(): a TickSource's snapshots over real HTTP, on a free loopback port."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from ksmtrace.errors import UsageError
from ksmtrace.exporter import Listen, serve

from .exporter_input import ListSource, golden_ticks
from .test_exporter_golden import recorded


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body: bytes = resp.read()
        return body.decode()


def test_serve_publishes_every_tick_over_http_and_stops_with_the_source() -> None:
    release = threading.Event()
    source = ListSource(golden_ticks(), release)
    lines: list[str] = []
    ready = threading.Event()

    def say(line: str) -> None:
        lines.append(line)
        ready.set()

    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            serve(source, Listen.parse("127.0.0.1:0"), interval_s=1, top_n=2, say=say)
        )
    )
    thread.start()
    try:
        assert ready.wait(10), "serve() did not announce its address"
        url = lines[0].split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        for _ in range(100):  # the source thread folds three ticks, then waits for release
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            if "ksmtrace_snapshots_total 3.0" in body:
                break
        assert "ksmtrace_snapshots_total 3.0" in body
        assert 'ksmtrace_process_merges_total{cgroup="other",comm="other"' in body
        assert "ksmtrace_source_up 1.0" in body
        assert "process_cpu_seconds_total" in body, "the exporter's own process metrics"
    finally:
        release.set()
        thread.join(10)
    assert result == [0]
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(ListSource([]), Listen("127.0.0.1", port), say=lambda _: None)


def test_replay_serve_serves_the_recorded_trace_until_interrupted(tmp_path: Path) -> None:
    trace = recorded(tmp_path)
    log = tmp_path / "replay.log"
    argv = [sys.executable, "-m", "ksmtrace", "replay", str(trace), "--serve", "--fast"]
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--listen", "127.0.0.1:0", "--top", "2"], stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"http://\S+/metrics", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        ended = ("ksmtrace_snapshots_total 3.0", "ksmtrace_source_up 0.0")
        while not all(line in (body := get(m.group(0))) for line in ended):
            assert time.monotonic() < deadline, body  # the trace ended; values stay served
            time.sleep(0.05)
        assert (
            'ksmtrace_probe_info{cow_check="page-table",headers="fixture headers",source="replay"}'
            in body
        )
        assert "ksmtrace_snapshots_total 3.0" in body
        assert 'ksmtrace_process_merges_total{cgroup="machine-qemu-1-guest0.scope"' in body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
    said = log.read_text()
    assert (
        said.rstrip().endswith("stopped by a signal, no longer serving") and "Traceback" not in said
    )


def test_only_metrics_and_the_landing_page_are_served() -> None:
    import urllib.error

    from prometheus_client import CollectorRegistry

    from ksmtrace.exporter.server import start_server

    httpd, thread = start_server(Listen("127.0.0.1", 0), CollectorRegistry())
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        assert 'href="metrics"' in get(base + "/")
        assert get(base + "/metrics") is not None
        with pytest.raises(urllib.error.HTTPError) as err:
            get(base + "/foo")
        assert err.value.code == 404
        err.value.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
