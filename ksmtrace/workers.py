"""Starting, commanding and always stopping workload processes (ksmtrace.workload)."""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from types import TracebackType

from ksmtrace.errors import KsmtraceError
from ksmtrace.processes import end_process


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One workload process: see ``python -m ksmtrace.workload --help``."""

    name: str
    pages: int
    shared: float = 0.5
    zero: float = 0.0
    distinct: int = 64
    seed: int = 1
    churn: float = 0.0
    prctl: bool = False

    def argv(self) -> list[str]:
        """Command line of the process."""
        cmd = [sys.executable, "-m", "ksmtrace.workload", "--name", self.name]
        cmd += ["--pages", str(self.pages), "--shared", str(self.shared)]
        cmd += ["--zero", str(self.zero), "--distinct", str(self.distinct)]
        cmd += ["--seed", str(self.seed), "--churn", str(self.churn)]
        return cmd + (["--prctl"] if self.prctl else [])


class Worker:
    """A running workload process with a line-command channel."""

    def __init__(self, spec: WorkerSpec, timeout_s: float = 60.0) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            spec.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        line = self._readline(timeout_s)
        if not line.startswith("ready"):
            self.stop()
            raise KsmtraceError(f"workload {spec.name} failed to start: {line or 'no output'}")
        self.addr = int(line.split()[2], 16)

    def _readline(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return ""
        return self.proc.stdout.readline().strip()

    def command(self, line: str, timeout_s: float = 120.0) -> str:
        """Send one command, return its one-line answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self._readline(timeout_s)
        if not answer or answer.startswith("error"):
            raise KsmtraceError(f"workload {self.spec.name}: '{line}' failed: {answer}")
        return answer

    def stop(self, grace_s: float = 2.0) -> None:
        """End the process (SIGTERM, then SIGKILL) and reap it."""
        end_process(self.proc, grace_s)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Workers:
    """Context manager over several workers; every one is stopped on every exit path."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.specs = specs
        self.workers: list[Worker] = []

    def __enter__(self) -> Workers:
        try:
            for spec in self.specs:
                self.workers.append(Worker(spec))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop all started workers (idempotent)."""
        while self.workers:
            self.workers.pop().stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        """Pids of the running workers."""
        return [w.pid for w in self.workers]

    def by_name(self, name: str) -> Worker:
        """The worker called ``name``."""
        return next(w for w in self.workers if w.spec.name == name)


def wait_until(predicate: object, timeout_s: float, poll_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
