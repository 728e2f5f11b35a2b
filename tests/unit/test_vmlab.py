"""The guest lab's pure parts: specs, QEMU command lines, the readiness line, the cpio writer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksmtrace.errors import UsageError
from ksmtrace.guest_image import GuestImage, NewcWriter, _is_static_elf
from ksmtrace.identity import parse_vm
from ksmtrace.vmlab import GuestReady, GuestSpec

IMAGE = GuestImage(Path("/k/vmlinuz"), Path("/k/initramfs.cpio"), "test")


def test_qemu_argv_names_the_guest_and_uses_tcg() -> None:
    argv = GuestSpec("vm-a", memory_mib=160, fill_mib=64, seed=9).qemu_argv(
        IMAGE, Path("/w/vm-a.serial.log")
    )
    assert argv[argv.index("-accel") + 1].startswith("tcg")
    assert argv[argv.index("-m") + 1] == "160M"
    assert argv[argv.index("-serial") + 1] == "file:/w/vm-a.serial.log"
    assert "-no-reboot" in argv and "-nographic" in argv
    append = argv[argv.index("-append") + 1]
    assert "memfill.name=vm-a" in append and "memfill.mib=64" in append
    assert "memfill.seed=9" in append
    assert argv[argv.index("-machine") + 1] == "pc"
    # identity.py recognises the process and names the VM from this command line.
    assert parse_vm(argv, "qemu-system-x86") == ("vm-a", "qemu", None)


def test_mem_merge_off_and_shared_ram_options() -> None:
    argv = GuestSpec("nm", mem_merge=False, shared_ram=True).qemu_argv(IMAGE, Path("/s"))
    machine = argv[argv.index("-machine") + 1].split(",")
    assert "mem-merge=off" in machine and "memory-backend=guest-ram" in machine
    backend = argv[argv.index("-object") + 1]
    assert backend == "memory-backend-memfd,id=guest-ram,size=128M,share=on"


@pytest.mark.parametrize(
    "spec",
    [
        GuestSpec("bad name"),
        GuestSpec("a,b"),
        GuestSpec("ok", fill_mib=100),
        GuestSpec("ok", shared=0.7, zero=0.4),
        GuestSpec("ok", churn=1.5),
        GuestSpec("ok", churn_rate=-1),
        GuestSpec("ok", memory_mib=32),
    ],
)
def test_invalid_specs_are_refused_with_a_reason(spec: GuestSpec) -> None:
    with pytest.raises(UsageError, match=spec.name.split(",")[0].split()[0]):
        spec.validate()


def test_ready_line_parses() -> None:
    line = (
        "memfill: ready name=vm-a pages=12288 shared=7372 zero=1228 unique=3688 churn=737 "
        "rate=200 fill_s=0.14"
    )
    assert GuestReady.parse(line) == GuestReady(12288, 7372, 1228, 3688, 737, 200, 0.14)


def test_newc_archive_lists_with_busybox_cpio(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    cpio = NewcWriter(archive)
    cpio.directory("bin")
    cpio.file("bin/tool", b"#!/bin/sh\necho hi\n")
    cpio.symlink("bin/sh", "tool")
    cpio.char_device("console", 5, 1)
    cpio.file("odd", b"x" * 5, perm=0o644)
    cpio.close()
    data = archive.read_bytes()
    listing = (
        subprocess.run(["busybox", "cpio", "-t", "-v"], input=data, capture_output=True, check=True)
        .stdout.decode()
        .splitlines()
    )
    assert [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing] == [
        "bin",
        "bin/tool",
        "bin/sh",
        "console",
        "odd",
    ]
    assert listing[0].startswith("d") and listing[2].startswith("l")
    assert listing[3].startswith("c") and listing[4].startswith("-rw-r--r--")
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["busybox", "cpio", "-i", "-d"], input=data, cwd=out, check=True)
    assert (out / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "odd").read_bytes() == b"xxxxx"


def test_static_elf_check() -> None:
    assert _is_static_elf(Path("/bin/busybox").read_bytes())
    assert not _is_static_elf(Path("/bin/ls").read_bytes())
    assert not _is_static_elf(b"#!/bin/sh\n")
