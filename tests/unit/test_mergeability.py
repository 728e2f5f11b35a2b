"""Why a VM or process does not merge, from real QEMU smaps and command lines (fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmtrace.events import ProcessIdentity
from ksmtrace.identity import parse_vm
from ksmtrace.kernel.procfs import KsmStat
from ksmtrace.mergeability import Mapping, assess, describe, parse_smaps_flags
from ksmtrace.qemu_memory import parse_cloud_hypervisor_memory, parse_qemu_memory, parse_size
from ksmtrace.render.table import format_vm_notes

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vm-smaps"
# ksm_stat of these QEMU processes as the kernel printed it (6.18): the memfd-shared guest
# says "ksm_mergeable yes" because QEMU's ROM blocks are mergeable, not its guest RAM.
STAT = {
    "default": KsmStat(mergeable=True, merge_any=False),
    "mem-merge-off": KsmStat(mergeable=False, merge_any=False),
    "memfd-shared": KsmStat(mergeable=True, merge_any=False),
}


def fixture(name: str) -> tuple[ProcessIdentity, list[str], list[Mapping]]:
    argv = (FIXTURES / f"{name}.cmdline").read_text().split("\0")[:-1]
    vm, kind, uuid = parse_vm(argv, "qemu-system-x86")
    ident = ProcessIdentity(4242, "qemu-system-x86", vm=vm, vm_kind=kind, vm_uuid=uuid)
    return ident, argv, parse_smaps_flags((FIXTURES / f"{name}.smaps").read_text())


def test_smaps_flags_parse() -> None:
    maps = parse_smaps_flags((FIXTURES / "default.smaps").read_text())
    assert len(maps) == 30
    ram = [m for m in maps if m.size == 128 << 20]
    assert len(ram) == 1
    assert ram[0].flags >= {"rd", "wr", "mg", "hg"}
    assert ram[0].rss_bytes == 128 << 20
    assert any(m.name == "[heap]" for m in maps)


def test_default_qemu_guest_is_mergeable_with_a_thp_note() -> None:
    ident, argv, maps = fixture("default")
    m = assess(ident, argv, maps, STAT["default"])
    assert (m.name, m.vm_kind, m.mergeable, m.reasons) == ("vm-default", "qemu", True, ())
    assert m.guest_ram_bytes == 128 << 20
    assert any("transparent huge pages" in n for n in m.notes)
    no_thp = assess(ident, argv, maps, STAT["default"], thp_enabled=False)
    assert no_thp.mergeable and not any("huge pages" in n for n in no_thp.notes)
    assert format_vm_notes([m]) == []


def test_mem_merge_off_guest_is_not_mergeable_and_says_why() -> None:
    ident, argv, maps = fixture("mem-merge-off")
    m = assess(ident, argv, maps, STAT["mem-merge-off"])
    assert m.mergeable is False
    assert len(m.reasons) == 1 and "mem-merge=off" in m.reasons[0]
    assert m.verdict.startswith("NOT mergeable: QEMU was started with mem-merge=off")
    notes = format_vm_notes([m])
    assert notes[0].startswith("note: VM vm-nomerge [4242]: guest RAM cannot merge: QEMU was")
    assert all(len(line) <= 80 for line in notes)
    assert any("mem-merge=off" in line for line in notes), "options are never split"


def test_shared_memfd_guest_is_not_mergeable_although_ksm_stat_says_mergeable() -> None:
    ident, argv, maps = fixture("memfd-shared")
    m = assess(ident, argv, maps, STAT["memfd-shared"])
    assert m.mergeable is False
    assert m.mergeable_bytes > 0, "the ROM blocks are mergeable"
    assert "shared mapping (memory-backend-memfd 'guest-ram')" in m.reasons[0]
    assert "share=on by default" in m.reasons[0]
    assert describe(m).startswith("vm-memfd (qemu, pid 4242, 128.0M guest RAM): NOT mergeable")


def test_verdict_without_smaps_falls_back_on_the_command_line() -> None:
    ident, argv, _ = fixture("mem-merge-off")
    m = assess(ident, argv, None, None)
    assert m.mergeable is False and "mem-merge=off" in m.reasons[0]
    ident, argv, _ = fixture("default")
    assert assess(ident, argv, None, None).mergeable is None
    assert assess(ident, argv, None, KsmStat(mergeable=True)).mergeable is True


def test_plain_process_reasons() -> None:
    ident = ProcessIdentity(7, "python3")
    heap = Mapping(1 << 20, "[heap]", frozenset({"rd", "wr"}))
    m = assess(ident, ["python3"], [heap], KsmStat(mergeable=False, merge_any=False))
    assert m.mergeable is False and "madvise(MADV_MERGEABLE)" in m.reasons[0]
    assert assess(ident, ["python3"], [heap], KsmStat(merge_any=True)).mergeable is True
    marked = Mapping(1 << 20, "", frozenset({"rd", "wr", "mg"}))
    assert assess(ident, ["python3"], [heap, marked], None).mergeable_bytes == 1 << 20


def test_hugetlb_guest_ram() -> None:
    argv = ["qemu-system-x86_64", "-name", "big", "-m", "4G", "-mem-path", "/dev/hugepages",
            "-mem-prealloc"]  # fmt: skip
    ident = ProcessIdentity(9, "qemu-system-x86", vm="big", vm_kind="qemu")
    ram = Mapping(4 << 30, "/dev/hugepages/qemu_back_mem.pc.ram (deleted)",
                  frozenset({"rd", "wr", "sh", "ht"}))  # fmt: skip
    m = assess(ident, argv, [ram], KsmStat(mergeable=False))
    assert m.mergeable is False
    assert any("hugetlbfs" in r and "-mem-path /dev/hugepages" in r for r in m.reasons)


def test_firecracker_has_no_ksm_option() -> None:
    argv = ["firecracker", "--id", "fc1", "--api-sock", "/run/fc1.sock"]
    ident = ProcessIdentity(11, "firecracker", vm="fc1", vm_kind="firecracker")
    ram = Mapping(256 << 20, "", frozenset({"rd", "wr"}))
    m = assess(ident, argv, [ram], KsmStat(mergeable=False))
    assert m.mergeable is False and "Firecracker" in m.reasons[0]


def test_libvirt_json_memory_backend() -> None:
    argv = [
        "/usr/bin/qemu-system-x86_64", "-name", "guest=web1,debug-threads=on",
        "-machine", "pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-object", '{"qom-type":"memory-backend-file","id":"pc.ram","mem-path":'
        '"/dev/hugepages/libvirt/qemu/1-web1","share":true,"prealloc":true,"size":4294967296}',
        "-m", "size=4194304k",
    ]  # fmt: skip
    mem = parse_qemu_memory(argv)
    assert mem.ram_bytes == 4 << 30
    assert mem.shared and mem.hugepages and mem.prealloc and mem.mem_merge
    assert mem.backend == "memory-backend-file 'pc.ram'"


@pytest.mark.parametrize(
    ("args", "merge", "shared"),
    [
        ([], True, False),
        (["-machine", "mem-merge=off"], False, False),
        (["-M", "pc,mem-merge=no"], False, False),
        (["-machine", "q35", "-machine", "mem-merge=off"], False, False),
        (["-object", "memory-backend-memfd,id=m,size=1G", "-numa", "node,memdev=m"], True, True),
        (["-object", "memory-backend-memfd,id=m,size=1G,share=off"], True, False),
        (["-object", "memory-backend-ram,id=m,size=1G,share=on"], True, True),
        # A shared backend that is not guest RAM (an ivshmem region) does not count.
        (
            [
                "-object",
                "memory-backend-memfd,id=shm,size=1M",
                "-object",
                "memory-backend-ram,id=ram,size=1G",
                "-machine",
                "memory-backend=ram",
            ],
            True,
            False,
        ),  # fmt: skip
    ],
)
def test_qemu_memory_options(args: list[str], merge: bool, shared: bool) -> None:
    mem = parse_qemu_memory(["qemu-system-x86_64", *args])
    assert (mem.mem_merge, mem.shared) == (merge, shared)


def test_sizes_and_cloud_hypervisor() -> None:
    assert parse_size("128", default_unit="m") == 128 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("lots") is None
    assert parse_qemu_memory(["qemu", "-m", "2G"]).ram_bytes == 2 << 30
    assert parse_qemu_memory(["qemu"]).ram_bytes == 128 << 20
    ch = parse_cloud_hypervisor_memory(["cloud-hypervisor", "--memory", "size=1G,mergeable=on"])
    assert ch.mem_merge and ch.ram_bytes == 1 << 30
    assert not parse_cloud_hypervisor_memory(["cloud-hypervisor", "--memory", "size=1G"]).mem_merge
