"""Where the host's /sys and /proc live, injectable so tests can point at fixture trees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Environment variable that moves the host root (for tests and offline inspection).
ROOT_ENV = "KSMTRACE_HOST_ROOT"


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Paths of the kernel interfaces ksmtrace reads, all below one root.

    Attributes:
        root: "/" on a real host; a fixture directory in tests.
    """

    root: Path = Path("/")

    @classmethod
    def from_env(cls) -> HostPaths:
        """Return the paths below ``$KSMTRACE_HOST_ROOT``, or below "/" when it is unset."""
        return cls(Path(os.environ.get(ROOT_ENV, "/")))

    @property
    def ksm_dir(self) -> Path:
        """``/sys/kernel/mm/ksm``: KSM knobs and counters."""
        return self.root / "sys/kernel/mm/ksm"

    @property
    def btf_vmlinux(self) -> Path:
        """``/sys/kernel/btf/vmlinux``: the running kernel's type information."""
        return self.root / "sys/kernel/btf/vmlinux"

    @property
    def tracefs(self) -> Path:
        """``/sys/kernel/tracing``: where tracefs is (or gets) mounted."""
        return self.root / "sys/kernel/tracing"

    @property
    def proc(self) -> Path:
        """``/proc``."""
        return self.root / "proc"

    def pid_dir(self, pid: int) -> Path:
        """``/proc/<pid>``."""
        return self.proc / str(pid)

    @property
    def vmstat(self) -> Path:
        """``/proc/vmstat``: global VM event counters (cow_ksm, ksm_swpin_copy)."""
        return self.proc / "vmstat"

    @property
    def kallsyms(self) -> Path:
        """``/proc/kallsyms``: kernel symbol addresses (readable by root)."""
        return self.proc / "kallsyms"
