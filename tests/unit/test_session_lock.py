"""One KSM-changing session at a time: waiting says so, giving up names the holder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ksmtrace.errors import HostError
from ksmtrace.kernel.session_lock import SessionLock

HOLD = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); \
fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, b'pid 4242: demo\\n', 0); print('held', flush=True); \
time.sleep(float(sys.argv[2]))"


def holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_waiting_for_another_session_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    said: list[str] = []
    proc = holder(path, 1.0)
    try:
        with SessionLock("calibrate", wait_s=30, path=path, say=said.append):
            assert path.read_text().startswith("pid ")
    finally:
        proc.communicate(timeout=10)
    assert len(said) == 1 and "Waiting up to 30 s" in said[0] and "pid 4242: demo" in said[0]


def test_giving_up_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    said: list[str] = []
    proc = holder(path, 30.0)
    try:
        with (
            pytest.raises(HostError, match="another ksmtrace session.*pid 4242: demo"),
            SessionLock("calibrate", wait_s=0, path=path, say=said.append),
        ):
            pass
    finally:
        proc.kill()
        proc.communicate()
    assert said == []  # no wait: no "waiting" line
