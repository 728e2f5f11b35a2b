"""Tests of ksmtrace.kernel.procfs against fixture /proc trees."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from ksmtrace.errors import HostError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.procfs import (
    KsmStat,
    find_ksmd,
    is_kernel_thread,
    list_ksm_processes,
    list_pids,
    page_size,
    read_cgroup,
    read_cmdline,
    read_comm,
    read_ksm_stat,
    read_schedstat_ns,
    read_start_time,
    read_vmstat_ksm,
)

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
BASIC = HostPaths(FIXTURES / "host-basic")
OLD = HostPaths(FIXTURES / "host-oldkernel")
GONE = 4242

QEMU_STAT = KsmStat(
    rmap_items=2048,
    zero_pages=0,
    merging_pages=40,
    process_profit=32768,
    merge_any=False,
    mergeable=True,
)


@pytest.fixture
def host(tmp_path: Path) -> HostPaths:
    """A writable copy of the host-basic /proc tree."""
    shutil.copytree(BASIC.proc, tmp_path / "proc")
    return HostPaths(tmp_path)


def _add_process(paths: HostPaths, pid: int, **files: str | bytes) -> None:
    directory = paths.pid_dir(pid)
    directory.mkdir(parents=True)
    for name, content in files.items():
        target = directory / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def _fail_reading(monkeypatch: pytest.MonkeyPatch, suffix: str, exc: OSError) -> None:
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if str(self).endswith(suffix):
            raise exc
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


# --- /proc/vmstat --------------------------------------------------------------------


def test_read_vmstat_ksm() -> None:
    assert read_vmstat_ksm(BASIC) == {"ksm_swpin_copy": 0, "cow_ksm": 123}
    assert read_vmstat_ksm(OLD) == {"ksm_swpin_copy": 0, "cow_ksm": 7}


def test_read_vmstat_ksm_picks_future_ksm_lines(host: HostPaths) -> None:
    host.vmstat.write_text("pgfault 5\nksm_new_event 9\nnr_ksm_thing 4\nkswapd_x 1\ncow_ksm 2\n")
    assert read_vmstat_ksm(host) == {"ksm_new_event": 9, "nr_ksm_thing": 4, "cow_ksm": 2}


def test_read_vmstat_ksm_without_proc(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="mount procfs on /proc"):
        read_vmstat_ksm(HostPaths(tmp_path))


# --- /proc/<pid>/ksm_stat ------------------------------------------------------------


def test_read_ksm_stat_6_18() -> None:
    stat = read_ksm_stat(BASIC, 100)
    assert stat == QEMU_STAT
    assert stat is not None and stat.uses_ksm


def test_read_ksm_stat_old_kernel_has_only_rmap_items() -> None:
    assert read_ksm_stat(OLD, 100) == KsmStat(rmap_items=512, merge_any=None, mergeable=None)


def test_read_ksm_stat_kernel_thread_and_gone_process() -> None:
    assert read_ksm_stat(BASIC, 39) is None
    assert read_ksm_stat(BASIC, GONE) is None


@pytest.mark.parametrize(
    "exc",
    [
        ProcessLookupError(errno.ESRCH, "No such process"),
        PermissionError(errno.EACCES, "Permission denied"),
        FileNotFoundError(errno.ENOENT, "No such file or directory"),
    ],
)
def test_read_ksm_stat_process_exiting_mid_read(
    monkeypatch: pytest.MonkeyPatch, exc: OSError
) -> None:
    _fail_reading(monkeypatch, "/100/ksm_stat", exc)
    assert read_ksm_stat(BASIC, 100) is None


def test_read_ksm_stat_negative_profit_and_unknown_lines(host: HostPaths) -> None:
    _add_process(
        host,
        300,
        ksm_stat="ksm_rmap_items 64\nksm_process_profit -4096\nksm_future_field 7\n"
        "ksm_merge_any: yes\n",
    )
    assert read_ksm_stat(host, 300) == KsmStat(rmap_items=64, process_profit=-4096, merge_any=True)


# --- comm, cmdline, cgroup -----------------------------------------------------------


def test_read_comm() -> None:
    assert read_comm(BASIC, 100) == "qemu-system-x86"
    assert read_comm(BASIC, 39) == "ksmd"
    assert read_comm(BASIC, GONE) is None


def test_read_cmdline() -> None:
    assert read_cmdline(BASIC, 100) == [
        "qemu-system-x86_64",
        "-name",
        "guest0",
        "-accel",
        "tcg",
        "-m",
        "128",
        "-kernel",
        "/var/lib/vms/vmlinuz",
        "-append",
        "console=ttyS0 quiet",
        "-nographic",
    ]
    assert read_cmdline(BASIC, 39) == []
    assert read_cmdline(BASIC, GONE) is None


def test_read_cmdline_keeps_inner_empty_arguments(host: HostPaths) -> None:
    _add_process(host, 301, cmdline=b"prog\0\0last\0")
    assert read_cmdline(host, 301) == ["prog", "", "last"]


def test_read_cgroup_fixtures() -> None:
    assert read_cgroup(BASIC, 100) == (
        "/machine.slice/machine-qemu\\x2d1\\x2dguest0.scope/libvirt/emulator"
    )
    assert read_cgroup(OLD, 100) == "/machine.slice/machine-qemu\\x2d1\\x2dguest0.scope"
    assert read_cgroup(BASIC, GONE) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("0::/user.slice/a.scope\n", "/user.slice/a.scope"),
        ("0::/\n", "/"),
        ("4:memory:/box\n1:name=systemd:/sys\n0::/user.slice\n", "/user.slice"),
        ("4:memory:/box\n2:cpu,cpuacct:/c\n1:name=systemd:/sys\n0::/\n", "/box"),
        ("3:pids:/p\n2:cpu,cpuacct:/c\n1:name=systemd:/sys\n", "/c"),
        ("3:pids:/p\n1:name=systemd:/sys\n", "/sys"),
        ("3:pids:/p\n2:blkio:/b\n", "/p"),
        ("5:memory:/with:colon\n", "/with:colon"),
        ("", None),
    ],
)
def test_read_cgroup_preference(host: HostPaths, content: str, expected: str | None) -> None:
    _add_process(host, 302, cgroup=content)
    assert read_cgroup(host, 302) == expected


# --- /proc/<pid>/stat ----------------------------------------------------------------


def test_read_start_time() -> None:
    assert read_start_time(BASIC, 100) == 4321
    assert read_start_time(BASIC, 39) == 25
    assert read_start_time(BASIC, GONE) is None


def test_read_start_time_with_awkward_comm(host: HostPaths) -> None:
    stat = (BASIC.pid_dir(100) / "stat").read_text()
    awkward = stat.replace("(qemu-system-x86)", "(a) (b c) 9 9)", 1).replace("100 ", "303 ", 1)
    _add_process(host, 303, stat=awkward)
    assert read_start_time(host, 303) == 4321
    assert not is_kernel_thread(host, 303)


def test_read_start_time_truncated_stat(host: HostPaths) -> None:
    _add_process(host, 304, stat="304 (short) S 1 2\n")
    assert read_start_time(host, 304) is None
    assert not is_kernel_thread(host, 304)


def test_is_kernel_thread() -> None:
    assert is_kernel_thread(BASIC, 39)
    assert not is_kernel_thread(BASIC, 100)
    assert not is_kernel_thread(BASIC, GONE)


# --- listing and ksmd ----------------------------------------------------------------


def test_list_pids() -> None:
    assert list_pids(BASIC) == [39, 100]
    assert list_pids(OLD) == [38, 100]


def test_list_pids_without_proc(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="mount procfs on /proc"):
        list_pids(HostPaths(tmp_path))


def test_find_ksmd() -> None:
    assert find_ksmd(BASIC) == 39
    assert find_ksmd(OLD) == 38


def test_find_ksmd_ignores_user_process_named_ksmd(host: HostPaths) -> None:
    impostor = (BASIC.pid_dir(100) / "stat").read_text().replace("(qemu-system-x86)", "(ksmd)")
    _add_process(host, 7, comm="ksmd\n", stat=impostor)
    assert find_ksmd(host) == 39
    shutil.rmtree(host.pid_dir(39))
    assert find_ksmd(host) is None


def test_read_schedstat_ns() -> None:
    assert read_schedstat_ns(BASIC, 100) == 5123456789
    assert read_schedstat_ns(BASIC, 100, tid=101) == 1100000000
    assert read_schedstat_ns(BASIC, 39) == 12123731257
    assert read_schedstat_ns(BASIC, 100, tid=GONE) is None
    assert read_schedstat_ns(OLD, 100) is None


def test_list_ksm_processes() -> None:
    assert list_ksm_processes(BASIC) == {100: QEMU_STAT}
    assert list_ksm_processes(OLD) == {100: KsmStat(rmap_items=512)}


def test_list_ksm_processes_criteria(host: HostPaths) -> None:
    idle = "ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\n"
    _add_process(host, 400, ksm_stat=idle + "ksm_merge_any: no\nksm_mergeable: no\n")
    _add_process(host, 401, ksm_stat=idle + "ksm_merge_any: no\nksm_mergeable: yes\n")
    _add_process(host, 402, ksm_stat=idle + "ksm_merge_any: yes\nksm_mergeable: no\n")
    _add_process(host, 403, ksm_stat=idle.replace("zero_pages 0", "zero_pages 3"))
    _add_process(host, 404, ksm_stat="")
    _add_process(host, 405, comm="no ksm_stat here\n")
    assert sorted(list_ksm_processes(host)) == [100, 401, 402, 403]


def test_list_ksm_processes_tolerates_exit_mid_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_reading(monkeypatch, "/100/ksm_stat", ProcessLookupError(errno.ESRCH, "gone"))
    assert list_ksm_processes(BASIC) == {}


def test_page_size() -> None:
    size = page_size()
    assert size == os.sysconf("SC_PAGE_SIZE")
    assert size >= 4096
    assert size & (size - 1) == 0
