"""tracefs: mounting it when the host has not, and checking which tracepoints exist."""

from __future__ import annotations

import ctypes
import errno
import os
from types import TracebackType

from ksmtrace.errors import HostError
from ksmtrace.hostpaths import HostPaths

_MNT_DETACH = 2


def tracefs_mounted(paths: HostPaths) -> bool:
    """Whether /sys/kernel/tracing holds a mounted tracefs (its ``events`` folder is there)."""
    return (paths.tracefs / "events").is_dir()


def tracepoint_exists(paths: HostPaths, category: str, name: str) -> bool:
    """Whether ``/sys/kernel/tracing/events/<category>/<name>`` exists (tracefs mounted)."""
    return (paths.tracefs / "events" / category / name / "id").is_file()


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


class TracefsMount:
    """Context manager that mounts tracefs if needed and unmounts it again if it did.

    bcc reads tracepoint formats and ids from tracefs. Hosts that boot without it mounted
    (many minimal VMs) get it for the duration of a ksmtrace run only.
    """

    def __init__(self, paths: HostPaths) -> None:
        self._paths = paths
        self.mounted_by_us = False

    def __enter__(self) -> TracefsMount:
        if tracefs_mounted(self._paths):
            return self
        target = str(self._paths.tracefs).encode()
        if _libc().mount(b"nodev", target, b"tracefs", 0, None) != 0:
            err = ctypes.get_errno()
            raise HostError(
                f"tracefs is not mounted and mounting it on {self._paths.tracefs} failed "
                f"({os.strerror(err)}); run as root or mount it: "
                "mount -t tracefs nodev /sys/kernel/tracing"
            )
        self.mounted_by_us = True
        return self

    def release(self) -> None:
        """Unmount tracefs if this object mounted it (lazily if something still uses it)."""
        if not self.mounted_by_us:
            return
        libc = _libc()
        target = str(self._paths.tracefs).encode()
        if libc.umount2(target, 0) != 0 and ctypes.get_errno() == errno.EBUSY:
            libc.umount2(target, _MNT_DETACH)
        self.mounted_by_us = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
