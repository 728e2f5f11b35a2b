"""Test cgroups made below this process's own cgroup, in the v2 and/or v1 hierarchy the host has."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def v2_mount() -> Path | None:
    """The cgroup v2 hierarchy: /sys/fs/cgroup (unified host) or /sys/fs/cgroup/unified (hybrid)."""
    for root in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        if (root / "cgroup.controllers").exists():
            return root
    return None


def v1_mount(controller: str = "memory") -> Path | None:
    """A cgroup v1 hierarchy holding ``controller``, if the host has one."""
    root = CGROUP_ROOT / controller
    if (root / "cgroup.procs").exists() and not (root / "cgroup.controllers").exists():
        return root
    return None


def own_path(hierarchy: Path, controller: str = "memory") -> str:
    """This process's cgroup in ``hierarchy`` (from /proc/self/cgroup)."""
    v2 = (hierarchy / "cgroup.controllers").exists()
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        num, controllers, path = line.split(":", 2)
        if (v2 and num == "0") or (not v2 and controller in controllers.split(",")):
            return path
    raise AssertionError(f"this process is in no cgroup of {hierarchy}")


class TestCgroup:
    """A cgroup ``<own cgroup>/ksmtrace-test-<pid>/<name>``, removed (emptied first) on exit."""

    __test__ = False  # not a pytest test class

    def __init__(self, hierarchy: Path, name: str) -> None:
        self.hierarchy = hierarchy
        self.parent = hierarchy / own_path(hierarchy).lstrip("/") / f"ksmtrace-test-{os.getpid()}"
        self.path = self.parent / name
        self.relative = "/" + str(self.path.relative_to(hierarchy))

    def __enter__(self) -> TestCgroup:
        self.path.mkdir(parents=True)
        return self

    def add(self, pid: int) -> None:
        """Move a process into this cgroup."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def __exit__(self, *exc: object) -> None:
        home = self.parent.parent / "cgroup.procs"
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it may exit meanwhile
                home.write_text(f"{pid}\n")
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with contextlib.suppress(OSError):  # another TestCgroup may still use the parent
            self.parent.rmdir()
