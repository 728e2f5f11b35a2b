"""The kernel's timer frequency (CONFIG_HZ): ksmd's sleeps are whole jiffies of 1/HZ s."""

from __future__ import annotations

import gzip
import re
import time

from ksmtrace.errors import HostError
from ksmtrace.hostpaths import HostPaths

#: The values CONFIG_HZ can take on x86 and most other architectures.
KNOWN_HZ = (100, 250, 300, 1000)

_CONFIG_HZ = re.compile(rb"^CONFIG_HZ=(\d+)$", re.M)
_JIFFIES = re.compile(rb"^jiffies: (\d+)$", re.M)


def _from_config(paths: HostPaths) -> int | None:
    try:
        with gzip.open(paths.proc / "config.gz", "rb") as f:
            match = _CONFIG_HZ.search(f.read())
    except (OSError, EOFError):
        return None
    return int(match.group(1)) if match else None


def _read_jiffies(paths: HostPaths) -> int | None:
    try:
        text = (paths.proc / "timer_list").read_bytes()
    except OSError:
        return None
    match = _JIFFIES.search(text)
    return int(match.group(1)) if match else None


def _measured(paths: HostPaths, window_s: float) -> int | None:
    j0, t0 = _read_jiffies(paths), time.monotonic()
    time.sleep(window_s)
    j1, t1 = _read_jiffies(paths), time.monotonic()
    if j0 is None or j1 is None or j1 <= j0:
        return None
    rate = (j1 - j0) / (t1 - t0)
    return min(KNOWN_HZ, key=lambda hz: abs(hz - rate))


def host_hz(paths: HostPaths | None = None, window_s: float = 0.2) -> int:
    """CONFIG_HZ of the running kernel.

    Read from /proc/config.gz when the kernel exposes its configuration, else measured from
    the jiffies counter in /proc/timer_list over ``window_s`` seconds.

    Raises:
        HostError: neither source is readable.
    """
    paths = paths or HostPaths.from_env()
    hz = _from_config(paths) or _measured(paths, window_s)
    if hz is None:
        raise HostError(
            "cannot tell the kernel's HZ (no /proc/config.gz, no readable /proc/timer_list): "
            "pass --hz explicitly"
        )
    return hz
