"""One KSM-changing session at a time: an advisory lock shared by the demo, the CLI and the tests.

Two sessions that both change the global KSM knobs (or compare global counters such as
``cow_ksm`` against their own workload) would corrupt each other's results and restore
each other's knobs in the wrong order.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ksmtrace import console
from ksmtrace.errors import HostError

LOCK_PATH = Path("/run/lock/ksmtrace-ksm.lock")
#: Set while a process holds the lock, so the processes it starts (a test running the CLI)
#: work under its lock instead of waiting for it.
HOLDER_ENV = "KSMTRACE_SESSION_LOCK_HOLDER"


class SessionLock:
    """Exclusive ``flock`` on :data:`LOCK_PATH`, held for the length of a ``with`` block."""

    def __init__(
        self,
        purpose: str,
        wait_s: float = 0.0,
        path: Path = LOCK_PATH,
        say: Callable[[str], None] = console.say,
    ) -> None:
        """Prepare the lock.

        Args:
            purpose: what the holder does, shown to whoever waits for it.
            wait_s: how long to wait for another holder before giving up.
            path: the lock file.
            say: where the one line saying that it waits goes (stderr).
        """
        self.purpose = purpose
        self.wait_s = wait_s
        self.path = path
        self.say = say
        self._fd: int | None = None
        self._saved_env: str | None = None

    def _held_by_parent(self) -> bool:
        holder = os.environ.get(HOLDER_ENV)
        if not holder:
            return False
        try:
            return self.path.read_text().startswith(f"pid {holder}:")
        except OSError:
            return False

    def __enter__(self) -> SessionLock:
        if self._held_by_parent():
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait_s
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                if time.monotonic() < deadline and not waiting:
                    waiting = True
                    self.say(
                        f"Waiting up to {self.wait_s:.0f} s for another ksmtrace session that "
                        f"changes KSM to finish ({holder or 'unknown'})..."
                    )
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise HostError(
                        f"another ksmtrace session is changing KSM ({holder or 'unknown'}); "
                        "wait for it to finish or stop it"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.purpose}\n".encode(), 0)
        self._fd = fd
        self._saved_env = os.environ.get(HOLDER_ENV)
        os.environ[HOLDER_ENV] = str(os.getpid())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            if self._saved_env is None:
                os.environ.pop(HOLDER_ENV, None)
            else:
                os.environ[HOLDER_ENV] = self._saved_env
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
