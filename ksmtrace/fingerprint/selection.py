"""Which processes a snapshot records: given pids, QEMU VMs by name, or every mergeable process."""

from __future__ import annotations

from dataclasses import dataclass

from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import resolve_identity
from ksmtrace.kernel import procfs


@dataclass(frozen=True, slots=True)
class Selection:
    """What to record; several criteria add up.

    Attributes:
        pids: Processes by id.
        vms: VM names (QEMU ``-name``, Firecracker ``--id`` ...), see ksmtrace.identity.
        all_mergeable: Every process with KSM state or a mergeable region, found again at
            each frame (new ones join, exited ones leave).
    """

    pids: tuple[int, ...] = ()
    vms: tuple[str, ...] = ()
    all_mergeable: bool = False

    def describe(self) -> str:
        """The selection as command-line options."""
        parts = [f"--pid {p}" for p in self.pids] + [f"--vm {v}" for v in self.vms]
        return " ".join(parts + (["--all-mergeable"] if self.all_mergeable else []))

    def resolve(self, paths: HostPaths, first: bool = False) -> list[int]:
        """The pids to record now, in a stable order (given pids first, then by pid).

        Raises:
            UsageError: on the first frame, a given pid or VM name does not exist, or
                --all-mergeable finds no process using KSM.
        """
        out: list[int] = []
        for pid in self.pids:
            if paths.pid_dir(pid).exists():
                out.append(pid)
            elif first:
                raise UsageError(f"no process with pid {pid}; check it with 'ps -p {pid}'")
        if self.vms:
            found = _vm_pids(paths)
            for name in self.vms:
                if first and name not in found:
                    known = ", ".join(sorted(found)) or "none running"
                    raise UsageError(f"no VM named {name!r} (VMs: {known})")
                out.extend(p for p in found.get(name, []) if p not in out)
        if self.all_mergeable:
            out.extend(p for p in procfs.list_ksm_processes(paths) if p not in out)
        if first and not out:
            raise UsageError(
                "--all-mergeable found no process using KSM (no /proc/PID/ksm_stat shows "
                "mergeable memory): start the workload first, or choose processes with --pid "
                "or --vm"
            )
        return out


def _vm_pids(paths: HostPaths) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for pid in procfs.list_pids(paths):
        ident = resolve_identity(paths, pid)
        if ident is not None and ident.vm:
            found.setdefault(ident.vm, []).append(pid)
    return found


def read_uid(paths: HostPaths, pid: int) -> int | None:
    """The real uid of a process (``Uid:`` of /proc/<pid>/status), or None if gone."""
    try:
        text = (paths.pid_dir(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None
