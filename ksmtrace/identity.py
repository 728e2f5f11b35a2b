"""Who a process is: comm, VM, container, pod and systemd unit, for attributing KSM activity."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import PurePosixPath

from ksmtrace.events import GROUPINGS, ProcessIdentity
from ksmtrace.hostpaths import HostPaths

__all__ = [
    "GROUPINGS",
    "IdentityCache",
    "ProcessIdentity",
    "parse_cgroup_path",
    "parse_qemu_name",
    "parse_status_uid",
    "parse_vm",
    "resolve_identity",
]


# Container scopes: docker, containerd (CRI), CRI-O and podman, as systemd scopes or, for
# the cgroupfs driver, as bare directories (optionally runtime-prefixed).
_CONTAINER_RE = re.compile(
    r"(?:(?:docker|cri-containerd|crio|libpod)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?"
)
# Kubernetes pod slices: "kubepods-burstable-pod<uid_with_underscores>.slice" (systemd
# driver) or "pod<uid>" below a "kubepods" directory (cgroupfs driver).
_POD_SLICE_RE = re.compile(r"kubepods(?:-[a-z]+)?-pod(?P<uid>[0-9a-f_-]+)\.slice")
_POD_DIR_RE = re.compile(r"pod(?P<uid>[0-9a-f_-]{32,36})")
_UNIT_SUFFIXES = (".service", ".scope", ".slice")
_SYSTEMD_ESCAPE_RE = re.compile(r"\\x([0-9a-fA-F]{2})")

# Programs named qemu-* that are tools rather than virtual machines.
_QEMU_TOOLS = (
    "qemu-img",
    "qemu-nbd",
    "qemu-io",
    "qemu-ga",
    "qemu-storage",
    "qemu-pr-helper",
    "qemu-bridge",
)

# Index of /proc/<pid>/stat field 22 (starttime) among the fields after the ")" closing comm,
# the first of which is field 3 (state).
_STAT_STARTTIME_INDEX = 22 - 3


def _option_value(argv: Sequence[str], names: Sequence[str]) -> str | None:
    """Return the value of the last ``NAME VALUE`` or ``NAME=VALUE`` option in ``argv[1:]``."""
    value: str | None = None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in names:
            if i + 1 < len(argv):
                value = argv[i + 1]
            i += 2
            continue
        for name in names:
            if arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
        i += 1
    return value


def _split_qemu_opts(value: str) -> list[str]:
    """Split a QEMU ``key=value,...`` string at commas, unescaping ",," to ",".

    Command-line arguments cannot contain NUL, so it stands in for escaped commas.
    """
    return [part.replace("\0", ",") for part in value.replace(",,", "\0").split(",")]


def parse_qemu_name(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """Return the guest name and uuid from a QEMU command line.

    The name comes from ``-name foo``, ``-name guest=foo,debug-threads=on`` (libvirt),
    ``-name foo,process=bar`` or the ``-name=...`` forms; the uuid from ``-uuid``.

    Args:
        argv: The command line, ``argv[0]`` included.

    Returns:
        ``(name, uuid)``, each None when absent or empty.
    """
    name: str | None = None
    raw = _option_value(argv, ("-name", "--name"))
    if raw is not None:
        for index, part in enumerate(_split_qemu_opts(raw)):
            key, sep, val = part.partition("=")
            if sep and key == "guest":
                name = val
            elif not sep and index == 0:
                name = part  # the first element may omit its "guest=" key
    uuid = _option_value(argv, ("-uuid", "--uuid"))
    return name or None, uuid or None


def _api_socket_name(value: str) -> str | None:
    """Return the basename, without extension, of a Cloud Hypervisor ``--api-socket`` path."""
    path: str | None = None
    for index, part in enumerate(value.split(",")):
        if part.startswith("path="):
            path = part[len("path=") :]
        elif "=" not in part and index == 0:
            path = part
    if not path:
        return None
    return PurePosixPath(path).stem or None


def _is_qemu(names: Sequence[str]) -> bool:
    """Tell whether a process called any of ``names`` is a QEMU virtual machine."""
    for name in names:
        if name.startswith(_QEMU_TOOLS):
            continue
        if "qemu-system" in name or name.startswith(("qemu", "kvm")):
            return True
    return False


def parse_vm(argv: Sequence[str], comm: str) -> tuple[str | None, str | None, str | None]:
    """Recognise a QEMU, Firecracker or Cloud Hypervisor process and name its VM.

    An empty ``argv`` (a kernel thread such as ``kvm-nx-lpage-recovery``, or a zombie) is
    never a VM.

    Args:
        argv: The command line, ``argv[0]`` included.
        comm: The process's comm.

    Returns:
        ``(vm_name, vm_kind, uuid)``; ``vm_kind`` is None for other processes, and the name
        and uuid are None when the command line does not give them.
    """
    if not argv:
        return None, None, None
    names = (comm, PurePosixPath(argv[0]).name)
    if any(name.startswith("firecracker") for name in names):
        return _option_value(argv, ("--id",)) or None, "firecracker", None
    # comm is truncated to 15 characters: "cloud-hyperviso".
    if any(name.startswith("cloud-hyperviso") for name in names):
        socket = _option_value(argv, ("--api-socket",))
        return (_api_socket_name(socket) if socket else None), "cloud-hypervisor", None
    if _is_qemu(names):
        name, uuid = parse_qemu_name(argv)
        return name, "qemu", uuid
    return None, None, None


def _unescape_unit(name: str) -> str:
    r"""Undo systemd's ``\xHH`` escaping in a unit name (``\x2d`` is "-")."""
    return _SYSTEMD_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), name)


def parse_cgroup_path(path: str) -> tuple[str | None, str | None, str | None]:
    r"""Find the container, Kubernetes pod and systemd unit in a cgroup path.

    Recognised: docker (``docker-<id>.scope``, ``/docker/<id>``), containerd
    (``cri-containerd-<id>.scope``), CRI-O (``crio-<id>.scope``), podman
    (``libpod-<id>.scope``), bare ``<id>`` directories and ``<slice>:<runtime>:<id>``
    components; pods from ``kubepods-<qos>-pod<uid>.slice`` or ``/kubepods/<qos>/pod<uid>``.
    The innermost match wins.

    Args:
        path: A cgroup path such as
            ``/machine.slice/machine-qemu\x2d1\x2ddom.scope/libvirt/emulator``.

    Returns:
        ``(container, pod, unit)``: the container id shortened to 12 hex digits, the pod uid
        with dashes, and the last ``.service``/``.scope``/``.slice`` component that is not a
        container scope, unescaped; each None when absent.
    """
    container: str | None = None
    pod: str | None = None
    unit: str | None = None
    under_kubepods = False
    for component in path.split("/"):
        for piece in component.split(":"):
            if not piece:
                continue
            if match := _CONTAINER_RE.fullmatch(piece):
                container = match["id"][:12]
                continue
            if (match := _POD_SLICE_RE.fullmatch(piece)) or (
                under_kubepods and (match := _POD_DIR_RE.fullmatch(piece))
            ):
                pod = match["uid"].replace("_", "-")
            if piece.endswith(_UNIT_SUFFIXES):
                unit = _unescape_unit(piece)
        under_kubepods = under_kubepods or component.startswith("kubepods")
    return container, pod, unit


def _pick_cgroup(text: str) -> str | None:
    """Choose one path from ``/proc/<pid>/cgroup``.

    Prefers the unified (v2) hierarchy, then v1 ``name=systemd``, then other v1 hierarchies,
    taking the first that is not the root: on hybrid and v1 hosts some hierarchies leave
    every process at "/".
    """
    unified: str | None = None
    systemd: str | None = None
    others: list[str] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        path = path.removesuffix(" (deleted)")
        if hierarchy == "0" and not controllers:
            unified = path
        elif controllers == "name=systemd":
            systemd = path
        else:
            others.append(path)
    candidates = [p for p in (unified, systemd, *others) if p]
    return next((p for p in candidates if p != "/"), candidates[0] if candidates else None)


def parse_status_uid(status: str) -> int | None:
    """Return the real uid from the ``Uid:`` line of ``/proc/<pid>/status``, or None."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


def _read_at(dir_fd: int, name: str) -> bytes | None:
    """Read a whole file relative to ``dir_fd``, or return None if it cannot be read."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_stat(stat: bytes) -> tuple[str, int] | None:
    """Return (comm, start_time) from ``/proc/<pid>/stat``, or None if it is malformed."""
    text = stat.decode("utf-8", "replace")
    # comm may itself contain spaces and parentheses; it ends at the last ")".
    head, sep, tail = text.rpartition(")")
    fields = tail.split()
    if not sep or "(" not in head or len(fields) <= _STAT_STARTTIME_INDEX:
        return None
    try:
        start_time = int(fields[_STAT_STARTTIME_INDEX])
    except ValueError:
        return None
    return head.partition("(")[2], start_time


def _read_start_time(paths: HostPaths, pid: int) -> int | None:
    """Return the start time of ``pid``, or None if it is gone."""
    try:
        stat = (paths.pid_dir(pid) / "stat").read_bytes()
    except OSError:
        return None
    parsed = _parse_stat(stat)
    return None if parsed is None else parsed[1]


def resolve_identity(paths: HostPaths, pid: int) -> ProcessIdentity | None:
    """Read who ``pid`` is from ``/proc/<pid>``.

    All files are read through one handle on the ``/proc/<pid>`` directory, so they describe
    the same process even if the pid is reused meanwhile (a stale handle reads nothing).
    Fields whose file cannot be read are left unknown.

    Args:
        paths: Where the host's /proc is.
        pid: The process (or thread) id.

    Returns:
        The identity, or None if the process is gone.
    """
    try:
        dir_fd = os.open(paths.pid_dir(pid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = _read_at(dir_fd, "stat")
        parsed = None if stat is None else _parse_stat(stat)
        if parsed is None:
            return None
        stat_comm, start_time = parsed
        comm_raw = _read_at(dir_fd, "comm")
        cmdline = _read_at(dir_fd, "cmdline") or b""
        cgroup_raw = _read_at(dir_fd, "cgroup")
        status = _read_at(dir_fd, "status")
    finally:
        os.close(dir_fd)

    comm = stat_comm
    if comm_raw is not None:
        comm = comm_raw.decode("utf-8", "replace").removesuffix("\n")
    comm = comm or "?"
    argv = [arg.decode("utf-8", "replace") for arg in cmdline.split(b"\0")]
    if argv and not argv[-1]:
        argv.pop()  # the terminating NUL
    vm, vm_kind, vm_uuid = parse_vm(argv, comm)
    cgroup = None if cgroup_raw is None else _pick_cgroup(cgroup_raw.decode("utf-8", "replace"))
    container, pod, unit = parse_cgroup_path(cgroup) if cgroup else (None, None, None)
    return ProcessIdentity(
        pid=pid,
        comm=comm,
        start_time=start_time,
        vm=vm,
        vm_kind=vm_kind,
        vm_uuid=vm_uuid,
        cgroup=cgroup,
        container=container,
        pod=pod,
        unit=unit,
        uid=None if status is None else parse_status_uid(status.decode("utf-8", "replace")),
    )


class IdentityCache:
    """Resolves identities once per (pid, start_time), keeping the last one after exit.

    Each ``get`` reads ``/proc/<pid>/stat`` to notice pid reuse. Not thread-safe.
    """

    def __init__(self, paths: HostPaths) -> None:
        self._paths = paths
        self._entries: dict[int, ProcessIdentity] = {}
        self._last_used: dict[int, float] = {}

    def __len__(self) -> int:
        """Number of pids with a cached identity."""
        return len(self._entries)

    def get(self, pid: int) -> ProcessIdentity:
        """Return who ``pid`` is (or, if it has exited, last was); never raises.

        Args:
            pid: The process (or thread) id.

        Returns:
            The cached identity if the pid still has the same start time or has exited, a
            fresh one if it is new or was reused, and ``ProcessIdentity(pid)`` (comm "?",
            everything else unknown) for a pid that vanished before it was ever seen.
        """
        cached = self._entries.get(pid)
        start_time = _read_start_time(self._paths, pid)
        if start_time is not None and (cached is None or cached.start_time != start_time):
            # New or reused pid; if it exits before it is resolved, only its start is known.
            cached = resolve_identity(self._paths, pid) or ProcessIdentity(
                pid, start_time=start_time
            )
        identity = cached or ProcessIdentity(pid)
        self._entries[pid] = identity
        self._last_used[pid] = time.monotonic()
        return identity

    def forget_older_than(self, max_age: float, now: float | None = None) -> int:
        """Drop identities not asked for in the last ``max_age`` seconds.

        Args:
            max_age: Seconds since the last ``get`` beyond which an entry is dropped.
            now: ``time.monotonic()`` value to measure from; the current one if None.

        Returns:
            How many pids were forgotten.
        """
        cutoff = (time.monotonic() if now is None else now) - max_age
        stale = [pid for pid, used in self._last_used.items() if used < cutoff]
        for pid in stale:
            del self._last_used[pid]
            self._entries.pop(pid, None)
        return len(stale)
