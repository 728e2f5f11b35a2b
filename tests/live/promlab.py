"""A real Prometheus server and a real ``ksmtrace serve`` process for live tests.

Both run as child processes on free loopback ports, with their files in a temporary
directory, and are ended by pid on every exit path.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from ksmtrace.processes import end_process

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout_s: float = 10.0) -> bytes:
    """The body of a GET."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        body: bytes = resp.read()
        return body


class Exporter:
    """``python -m ksmtrace serve`` on a free loopback port (announced on stderr)."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.log = workdir / "exporter.log"
        argv = [sys.executable, "-m", "ksmtrace", "serve", "--listen", "127.0.0.1:0", *args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.address = ""

    def __enter__(self) -> Exporter:
        deadline = time.monotonic() + 30
        while not (m := re.search(r"http://(127\.0\.0\.1:\d+)/metrics", self.log.read_text())):
            assert self.proc.poll() is None, f"exporter died: {self.log.read_text()}"
            assert time.monotonic() < deadline, "exporter did not announce its address"
            time.sleep(0.1)
        self.address = m.group(1)
        return self

    def metrics(self) -> str:
        """One scrape of /metrics."""
        return get(f"http://{self.address}/metrics").decode()

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        """Wait until the probes are attached and the first interval was published."""
        deadline = time.monotonic() + timeout_s
        while "ksmtrace_source_up 1.0" not in self.metrics():
            assert self.proc.poll() is None, f"exporter died: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"no data served: {self.log.read_text()}"
            time.sleep(0.2)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_process(self.proc)


class Prometheus:
    """Debian's Prometheus scraping ``targets`` every second, data in ``workdir``."""

    def __init__(self, workdir: Path, targets: list[str], job: str = "ksmtrace") -> None:
        assert shutil.which(PROMETHEUS) or Path(PROMETHEUS).exists(), (
            "Prometheus missing: run scripts/setup.sh (Debian package prometheus)"
        )
        self.job = job
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            f"scrape_configs:\n  - job_name: {job}\n"
            f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.log = workdir / "prometheus.log"
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"prometheus died: {self.log.read_text()}"
            with contextlib.suppress(OSError):
                if get(f"{self.url}/-/ready", 2).startswith(b"Prometheus"):
                    return self
            assert time.monotonic() < deadline, f"prometheus not ready: {self.log.read_text()}"
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        """The ``data`` of an HTTP API answer; fails the test on an API error."""
        query = urllib.parse.urlencode(params)
        answer = json.loads(get(f"{self.url}/api/v1/{path}?{query}"))
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query at the current time: its result vector."""
        data = self.api("query", query=expr, time=f"{time.time():.3f}")
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float:
        """The one value an instant query returns."""
        result = self.query(expr)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def wait_scraped(self, samples: int, timeout_s: float = 60.0) -> None:
        """Wait until the target was scraped successfully ``samples`` times in a row."""
        deadline = time.monotonic() + timeout_s
        expr = f'count_over_time(up{{job="{self.job}"}}[5m]) and up{{job="{self.job}"}} == 1'
        while True:
            result = self.query(expr)
            if result and float(result[0]["value"][1]) >= samples:
                return
            assert time.monotonic() < deadline, f"not scraped: {self.api('targets')}"
            time.sleep(0.5)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end_process(self.proc)
