"""Tests of process identity: VM, container, pod and unit recognition and /proc resolution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksmtrace.errors import UsageError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import (
    IdentityCache,
    ProcessIdentity,
    parse_cgroup_path,
    parse_qemu_name,
    parse_vm,
    resolve_identity,
)

HEX = "0123456789abcdef" * 4  # a 64-hex-digit container id
SHORT = HEX[:12]
UID = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
UID_US = UID.replace("-", "_")
VM_UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"

QEMU = "/usr/bin/qemu-system-x86_64"

QEMU_NAME_CASES = [
    pytest.param([QEMU, "-name", "foo"], ("foo", None), id="plain"),
    pytest.param(
        [QEMU, "-name", "guest=dom,debug-threads=on", "-uuid", VM_UUID],
        ("dom", VM_UUID),
        id="libvirt",
    ),
    pytest.param([QEMU, "-name", "foo,process=bar"], ("foo", None), id="process-key"),
    pytest.param([QEMU, "-name", "process=bar,guest=foo"], ("foo", None), id="guest-not-first"),
    pytest.param([QEMU, "-name=foo"], ("foo", None), id="equals-form"),
    pytest.param([QEMU, "--name", "guest=foo"], ("foo", None), id="double-dash"),
    pytest.param([QEMU, "-name", "a,,b,process=x"], ("a,b", None), id="escaped-comma"),
    pytest.param([QEMU, "-name", "guest=a,,,,b"], ("a,,b", None), id="escaped-commas-guest"),
    pytest.param([QEMU, "-name", "process=bar"], (None, None), id="no-guest"),
    pytest.param([QEMU, "-name", ""], (None, None), id="empty"),
    pytest.param([QEMU, "-name"], (None, None), id="missing-value"),
    pytest.param([QEMU, "-uuid=" + VM_UUID], (None, VM_UUID), id="uuid-equals"),
    pytest.param([QEMU, "-name", "a", "-name", "b"], ("b", None), id="last-wins"),
    pytest.param(
        [QEMU, "-drive", "file=/var/lib/disk.qcow2", "-kernel", "/boot/vmlinuz"],
        (None, None),
        id="no-name-no-fallback",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), QEMU_NAME_CASES)
def test_parse_qemu_name(argv: list[str], expected: tuple[str | None, str | None]) -> None:
    assert parse_qemu_name(argv) == expected


VM_CASES = [
    pytest.param([QEMU, "-name", "web"], "qemu-system-x86", ("web", "qemu", None), id="qemu"),
    pytest.param(
        ["/usr/libexec/qemu-kvm", "-name", "guest=db,debug-threads=on", "-uuid", VM_UUID],
        "qemu-kvm",
        ("db", "qemu", VM_UUID),
        id="qemu-kvm-libvirt",
    ),
    pytest.param(["/usr/bin/kvm", "-name", "k"], "kvm", ("k", "qemu", None), id="kvm-comm"),
    pytest.param([QEMU, "-name", "web"], "CPU 0/KVM", ("web", "qemu", None), id="qemu-vcpu-thread"),
    pytest.param([QEMU, "-m", "1G"], "qemu-system-x86", (None, "qemu", None), id="qemu-unnamed"),
    pytest.param(["qemu-img", "convert", "a", "b"], "qemu-img", (None, None, None), id="qemu-img"),
    pytest.param(["/usr/bin/qemu-ga"], "qemu-ga", (None, None, None), id="qemu-guest-agent"),
    pytest.param([], "kvm-nx-lpage-re", (None, None, None), id="kernel-thread"),
    pytest.param(
        ["/usr/bin/firecracker", "--id", "fc1", "--api-sock", "/tmp/fc.sock"],
        "firecracker",
        ("fc1", "firecracker", None),
        id="firecracker",
    ),
    pytest.param(
        ["firecracker-v1.7.0-x86_64", "--id=fc2"],
        "fc_vcpu 0",
        ("fc2", "firecracker", None),
        id="firecracker-equals-release-binary",
    ),
    pytest.param(
        ["/usr/bin/firecracker"], "firecracker", (None, "firecracker", None), id="firecracker-noid"
    ),
    pytest.param(
        ["/usr/bin/cloud-hypervisor", "--api-socket", "path=/run/ch/vm1.sock", "--memory", "x"],
        "cloud-hyperviso",
        ("vm1", "cloud-hypervisor", None),
        id="cloud-hypervisor-path-key",
    ),
    pytest.param(
        ["cloud-hypervisor", "--api-socket", "/run/ch/vm2.sock"],
        "cloud-hyperviso",
        ("vm2", "cloud-hypervisor", None),
        id="cloud-hypervisor-bare-path",
    ),
    pytest.param(
        ["cloud-hypervisor", "--api-socket=path=/run/vm3.api"],
        "vcpu0",
        ("vm3", "cloud-hypervisor", None),
        id="cloud-hypervisor-equals",
    ),
    pytest.param(
        ["cloud-hypervisor", "--api-socket", "fd=3"],
        "cloud-hyperviso",
        (None, "cloud-hypervisor", None),
        id="cloud-hypervisor-fd",
    ),
    pytest.param(
        ["cloud-hypervisor", "--kernel", "/boot/vmlinuz"],
        "cloud-hyperviso",
        (None, "cloud-hypervisor", None),
        id="cloud-hypervisor-nosocket",
    ),
    pytest.param(["/usr/sbin/nginx", "-name", "x"], "nginx", (None, None, None), id="not-a-vm"),
]


@pytest.mark.parametrize(("argv", "comm", "expected"), VM_CASES)
def test_parse_vm(
    argv: list[str], comm: str, expected: tuple[str | None, str | None, str | None]
) -> None:
    assert parse_vm(argv, comm) == expected


CGROUP_CASES = [
    pytest.param("/", (None, None, None), id="root"),
    pytest.param("/system.slice/nginx.service", (None, None, "nginx.service"), id="service"),
    pytest.param(
        "/user.slice/user-1000.slice/session-3.scope",
        (None, None, "session-3.scope"),
        id="session-scope",
    ),
    pytest.param(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-12.scope",
        (None, None, "app-firefox-12.scope"),
        id="user-app-scope",
    ),
    pytest.param("/user.slice/user-1000.slice", (None, None, "user-1000.slice"), id="slice"),
    pytest.param(
        f"/system.slice/docker-{HEX}.scope", (SHORT, None, "system.slice"), id="docker-systemd"
    ),
    pytest.param(f"/docker/{HEX}", (SHORT, None, None), id="docker-cgroupfs"),
    pytest.param(
        f"/system.slice/cri-containerd-{HEX}.scope",
        (SHORT, None, "system.slice"),
        id="containerd",
    ),
    pytest.param(f"/machine.slice/crio-{HEX}.scope", (SHORT, None, "machine.slice"), id="crio"),
    pytest.param(
        f"/system.slice/crio-conmon-{HEX}.scope",
        (None, None, f"crio-conmon-{HEX}.scope"),
        id="crio-conmon-is-not-container",
    ),
    pytest.param(
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope/container",
        (SHORT, None, "user.slice"),
        id="podman-rootless",
    ),
    pytest.param(
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/"
        f"cri-containerd-{HEX}.scope",
        (SHORT, UID, f"kubepods-burstable-pod{UID_US}.slice"),
        id="kubepods-systemd-burstable",
    ),
    pytest.param(
        f"/kubepods.slice/kubepods-pod{UID_US}.slice/crio-{HEX}.scope",
        (SHORT, UID, f"kubepods-pod{UID_US}.slice"),
        id="kubepods-systemd-guaranteed",
    ),
    pytest.param(
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice",
        (None, UID, f"kubepods-besteffort-pod{UID_US}.slice"),
        id="kubepods-pod-only",
    ),
    pytest.param(f"/kubepods/burstable/pod{UID}/{HEX}", (SHORT, UID, None), id="kubepods-cgroupfs"),
    pytest.param(f"/kubepods/pod{UID}/{HEX}", (SHORT, UID, None), id="kubepods-cgroupfs-guar"),
    pytest.param(f"/podcast/pod{UID}", (None, None, None), id="pod-dir-outside-kubepods"),
    pytest.param(
        f"/system.slice/containerd.service/kubepods-besteffort-pod{UID_US}.slice"
        f":cri-containerd:{HEX}",
        (SHORT, UID, f"kubepods-besteffort-pod{UID_US}.slice"),
        id="kind-colon-form",
    ),
    pytest.param(f"/docker/{HEX}/docker/{'f' * 64}", ("f" * 12, None, None), id="nested-innermost"),
    pytest.param(
        r"/machine.slice/machine-qemu\x2d1\x2ddom.scope",
        (None, None, "machine-qemu-1-dom.scope"),
        id="libvirt-machine",
    ),
    pytest.param(
        r"/machine.slice/machine-qemu\x2d2\x2dweb.scope/libvirt/vcpu0",
        (None, None, "machine-qemu-2-web.scope"),
        id="libvirt-machine-vcpu",
    ),
    pytest.param(f"/lxc/{HEX[:10]}", (None, None, None), id="short-hex-not-container"),
]


@pytest.mark.parametrize(("path", "expected"), CGROUP_CASES)
def test_parse_cgroup_path(path: str, expected: tuple[str | None, str | None, str | None]) -> None:
    assert parse_cgroup_path(path) == expected


LABEL_CASES = [
    pytest.param(
        ProcessIdentity(1, "qemu-system-x86", vm="web", container=SHORT, unit="u.scope"),
        "web",
        id="vm",
    ),
    pytest.param(
        ProcessIdentity(1, "nginx", container=SHORT, unit="system.slice"),
        f"container:{SHORT}",
        id="container",
    ),
    pytest.param(ProcessIdentity(1, "nginx", unit="nginx.service"), "nginx.service", id="unit"),
    pytest.param(ProcessIdentity(1, "nginx"), "nginx", id="comm"),
]


@pytest.mark.parametrize(("identity", "expected"), LABEL_CASES)
def test_label(identity: ProcessIdentity, expected: str) -> None:
    assert identity.label == expected


GROUP_CASES = [
    pytest.param(ProcessIdentity(7, "bash"), "process", "bash[7]", id="process"),
    pytest.param(ProcessIdentity(7, "qemu", vm="web"), "vm", "web", id="vm"),
    pytest.param(ProcessIdentity(7, "bash"), "vm", "(no vm)", id="no-vm"),
    pytest.param(
        ProcessIdentity(7, "x", cgroup="/c", container=SHORT, pod=UID, unit="u.scope"),
        "cgroup",
        f"container:{SHORT}",
        id="cgroup-container",
    ),
    pytest.param(
        ProcessIdentity(7, "x", cgroup="/c", pod=UID, unit="u.slice"),
        "cgroup",
        f"pod:{UID}",
        id="cgroup-pod",
    ),
    pytest.param(
        ProcessIdentity(7, "x", cgroup="/system.slice/a.service", unit="a.service"),
        "cgroup",
        "a.service",
        id="cgroup-unit",
    ),
    pytest.param(ProcessIdentity(7, "x", cgroup="/lxc/c1"), "cgroup", "/lxc/c1", id="cgroup-path"),
    pytest.param(ProcessIdentity(7, "x", cgroup="/"), "cgroup", "(root)", id="cgroup-root"),
    pytest.param(ProcessIdentity(7, "x"), "cgroup", "(unknown)", id="cgroup-unknown"),
]


@pytest.mark.parametrize(("identity", "grouping", "expected"), GROUP_CASES)
def test_group_key(identity: ProcessIdentity, grouping: str, expected: str) -> None:
    assert identity.group_key(grouping) == expected


def test_group_key_rejects_unknown_grouping() -> None:
    with pytest.raises(UsageError, match="unknown grouping 'pod'"):
        ProcessIdentity(1).group_key("pod")


# --- resolution against a fixture /proc ---------------------------------------------------


def _stat_line(pid: int, comm: str, start_time: int) -> str:
    # Fields 3..52 of a real stat line, with field 22 (starttime) replaced.
    tail = (
        f"S 1 1 1 0 -1 4194560 5000 0 0 0 10 5 0 0 20 0 4 0 {start_time} 123456789 2000 "
        "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0"
    )
    return f"{pid} ({comm}) {tail}\n"


def _make_proc(
    root: Path,
    pid: int,
    *,
    comm: str,
    argv: list[str],
    start_time: int,
    cgroup: str = "0::/\n",
    stat_comm: str | None = None,
) -> Path:
    pid_dir = root / "proc" / str(pid)
    pid_dir.mkdir(parents=True, exist_ok=True)
    (pid_dir / "comm").write_text(comm + "\n")
    (pid_dir / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    (pid_dir / "cgroup").write_text(cgroup)
    (pid_dir / "stat").write_text(_stat_line(pid, stat_comm or comm, start_time))
    return pid_dir


def test_resolve_libvirt_qemu(tmp_path: Path) -> None:
    cgroup = r"0::/machine.slice/machine-qemu\x2d1\x2ddom.scope/libvirt/emulator" + "\n"
    argv = [QEMU, "-name", "guest=dom,debug-threads=on", "-uuid", VM_UUID, "-m", "4096"]
    _make_proc(tmp_path, 4242, comm="qemu-system-x86", argv=argv, start_time=98765, cgroup=cgroup)
    identity = resolve_identity(HostPaths(tmp_path), 4242)
    assert identity == ProcessIdentity(
        pid=4242,
        comm="qemu-system-x86",
        start_time=98765,
        vm="dom",
        vm_kind="qemu",
        vm_uuid=VM_UUID,
        cgroup=r"/machine.slice/machine-qemu\x2d1\x2ddom.scope/libvirt/emulator",
        container=None,
        pod=None,
        unit="machine-qemu-1-dom.scope",
    )
    assert identity.label == "dom"


def test_resolve_container_on_cgroup_v1(tmp_path: Path) -> None:
    # Hybrid/v1 host: the unified line is "/", the systemd and controller lines are not.
    cgroup = (
        f"12:memory:/kubepods/burstable/pod{UID}/{HEX}\n"
        f"1:name=systemd:/kubepods/burstable/pod{UID}/{HEX}\n"
        "0::/\n"
    )
    _make_proc(
        tmp_path, 10, comm="java", argv=["java", "-jar", "app.jar"], start_time=5, cgroup=cgroup
    )
    identity = resolve_identity(HostPaths(tmp_path), 10)
    assert identity is not None
    assert identity.cgroup == f"/kubepods/burstable/pod{UID}/{HEX}"
    assert (identity.container, identity.pod, identity.unit) == (SHORT, UID, None)
    assert identity.vm is None and identity.vm_kind is None
    assert identity.label == f"container:{SHORT}"
    assert identity.group_key("cgroup") == f"container:{SHORT}"


def test_resolve_comm_with_spaces_and_parens(tmp_path: Path) -> None:
    odd = "a) b (c"
    _make_proc(tmp_path, 11, comm=odd, argv=["x"], start_time=777)
    (tmp_path / "proc/11/comm").unlink()  # comm then comes from stat
    identity = resolve_identity(HostPaths(tmp_path), 11)
    assert identity is not None
    assert (identity.comm, identity.start_time) == (odd, 777)


def test_resolve_missing_optional_files(tmp_path: Path) -> None:
    pid_dir = _make_proc(tmp_path, 12, comm="zombie", argv=[], start_time=3)
    (pid_dir / "cgroup").unlink()
    (pid_dir / "cmdline").unlink()
    identity = resolve_identity(HostPaths(tmp_path), 12)
    assert identity == ProcessIdentity(pid=12, comm="zombie", start_time=3)
    assert identity.group_key("cgroup") == "(unknown)"


def test_resolve_vanished_pid(tmp_path: Path) -> None:
    assert resolve_identity(HostPaths(tmp_path), 999) is None
    pid_dir = _make_proc(tmp_path, 999, comm="x", argv=["x"], start_time=1)
    (pid_dir / "stat").write_text("garbage\n")
    assert resolve_identity(HostPaths(tmp_path), 999) is None


def test_cache_keeps_identity_after_exit(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    pid_dir = _make_proc(
        tmp_path,
        20,
        comm="firecracker",
        argv=["/usr/bin/firecracker", "--id", "fc1"],
        start_time=100,
    )
    cache = IdentityCache(paths)
    first = cache.get(20)
    assert (first.vm, first.vm_kind, first.start_time) == ("fc1", "firecracker", 100)

    # Same process, files changed: the identity is not resolved again.
    (pid_dir / "comm").write_text("renamed\n")
    assert cache.get(20) is first

    for child in pid_dir.iterdir():
        child.unlink()
    pid_dir.rmdir()
    assert cache.get(20) is first


def test_cache_unknown_vanished_pid(tmp_path: Path) -> None:
    cache = IdentityCache(HostPaths(tmp_path))
    identity = cache.get(31)
    assert identity == ProcessIdentity(31, comm="?")
    assert (identity.label, identity.group_key("process")) == ("?", "?[31]")


def test_cache_detects_pid_reuse(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path)
    _make_proc(tmp_path, 40, comm="old", argv=["old"], start_time=1000)
    cache = IdentityCache(paths)
    old = cache.get(40)
    assert (old.comm, old.start_time) == ("old", 1000)

    _make_proc(
        tmp_path,
        40,
        comm="new",
        argv=["new"],
        start_time=2000,
        cgroup=f"0::/system.slice/docker-{HEX}.scope\n",
    )
    new = cache.get(40)
    assert new is not old
    assert (new.comm, new.start_time, new.container) == ("new", 2000, SHORT)
    assert cache.get(40) is new


def test_cache_vanished_then_appears(tmp_path: Path) -> None:
    cache = IdentityCache(HostPaths(tmp_path))
    assert cache.get(50).comm == "?"
    _make_proc(tmp_path, 50, comm="late", argv=["late"], start_time=9)
    assert cache.get(50).comm == "late"


def test_cache_forget_older_than(tmp_path: Path) -> None:
    _make_proc(tmp_path, 60, comm="a", argv=["a"], start_time=1)
    cache = IdentityCache(HostPaths(tmp_path))
    cache.get(60)
    cache.get(61)
    assert len(cache) == 2
    assert cache.forget_older_than(3600) == 0
    assert len(cache) == 2
    assert cache.forget_older_than(0, now=float("inf")) == 2
    assert len(cache) == 0


# --- the real host ------------------------------------------------------------------------


def test_resolve_self_on_real_host() -> None:
    pid = os.getpid()
    identity = resolve_identity(HostPaths(), pid)
    assert identity is not None
    expected_comm = Path(f"/proc/{pid}/comm").read_text().removesuffix("\n")
    assert identity.comm == expected_comm
    assert identity.start_time > 0
    assert identity.cgroup is not None and identity.cgroup.startswith("/")
    assert identity.vm is None
    assert IdentityCache(HostPaths()).get(pid) == identity
