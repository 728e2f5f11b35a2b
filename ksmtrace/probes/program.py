"""Renders the BPF C sources in bpf/ with the constants resolved for the running kernel."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from ksmtrace.errors import ProbeError
from ksmtrace.events import EventFlag, EventKind, UnmergeKind
from ksmtrace.kernel.offsets import KernelLayout

# MMF_VM_MERGEABLE, bit 16 of mm_struct.flags since "ksm: the mm interface to ksm" (2.6.32).
# Linux 6.18 made the word a bitmap (mm_flags_t); its first word keeps the same bits. It is a
# #define, so BTF does not carry it.
MMF_VM_MERGEABLE = 16

# x86-64 system call numbers of the calls that unshare KSM pages on purpose.
NR_MADVISE = 28
NR_PRCTL = 157
NR_PROCESS_MADVISE = 440
UNMERGE_BY_SYSCALL = {
    NR_MADVISE: UnmergeKind.MADVISE,
    NR_PRCTL: UnmergeKind.PRCTL,
    NR_PROCESS_MADVISE: UnmergeKind.PROCESS_MADVISE,
}


class Stat(IntEnum):
    """Indices of the BPF ``stats`` array (self-metrics of the probe set)."""

    MERGED_FULL = 0
    """Merges whose time could not be remembered (the lifetime map was full)."""
    CALIB_TRIES = 1
    """Attempts to recognise ksmd's scan site on its stack."""
    UNCAL_LOCKS = 2
    """ksmd mmap_lock acquisitions seen before the scan site was recognised."""
    CALIBRATED = 3
    """Times the scan site was (re)learned."""
    SCAN_LOCKS = 4
    """ksmd scan-site locks: pages given to cmp_and_merge_page, plus one per mm per pass."""
    OTHER_LOCKS = 5
    """ksmd lock acquisitions at other sites (unstable tree lookups, merges, undo)."""


@dataclass(frozen=True, slots=True)
class PageTables:
    """How to walk a user page table from BPF (found by :mod:`ksmtrace.probes.calibrate`).

    Attributes:
        page_offset_base: virtual address of physical address 0 in the direct map.
        vmemmap_base: virtual address of the struct page of pfn 0.
        zero_pfn: frame number of the shared zero page.
        pfn_mask: bits of a page-table entry that hold the physical address.
        levels: 4 or 5.
    """

    page_offset_base: int
    vmemmap_base: int
    zero_pfn: int
    pfn_mask: int
    levels: int


@dataclass(frozen=True, slots=True)
class ProgramConfig:
    """Everything that varies between hosts or runs in the main BPF program.

    Attributes:
        ksmd_pid: pid of the ksmd kernel thread.
        layout: struct offsets from BTF.
        lock_helper: [start, end) of ``__mmap_lock_do_trace_acquire_returned`` in kallsyms.
        page_tables: page-table walk constants, or None to fall back to merge-map lookups.
        merged_max: capacity of the merge-lifetime map (entries).
        ringbuf_pages: ring buffer size in pages (a power of two).
        flush_pages: longest run of scanned pages reported as one SCAN event.
        thread_size: kernel stack size.
        stack_window_words: how many words below the stack top to search for the scan site.
    """

    ksmd_pid: int
    layout: KernelLayout
    lock_helper: tuple[int, int]
    page_tables: PageTables | None
    merged_max: int = 262144
    ringbuf_pages: int = 2048
    flush_pages: int = 4096
    thread_size: int = 16384
    stack_window_words: int = 512


def bpf_source_dir() -> Path:
    """The folder holding ``ksmtrace.bpf.c``: the checkout's ``bpf/`` or the installed copy."""
    here = Path(__file__).resolve().parent.parent.parent / "bpf"
    if (here / "ksmtrace.bpf.c").is_file():
        return here
    installed = Path(sys.prefix) / "share" / "ksmtrace" / "bpf"
    if (installed / "ksmtrace.bpf.c").is_file():
        return installed
    raise ProbeError(
        f"cannot find the BPF sources (looked in {here} and {installed}); reinstall ksmtrace"
    )


def read_source(name: str) -> str:
    """Text of one file of the bpf/ folder."""
    path = bpf_source_dir() / name
    try:
        return path.read_text()
    except OSError as exc:
        raise ProbeError(f"cannot read BPF source {path}: {exc.strerror}") from exc


def enum_defines(prefix: str, enum: type[IntEnum] | type[EventFlag]) -> list[str]:
    """``#define PREFIX_NAME value`` for every member of an enum (one source of truth)."""
    return [f"#define {prefix}_{m.name} {int(m.value)}" for m in enum]


def _defines(cfg: ProgramConfig) -> list[str]:
    lay = cfg.layout
    lines = [
        *enum_defines("KIND", EventKind),
        *enum_defines("UNMERGE", UnmergeKind),
        *[f"#define FLAG_{m.name} {int(m.value)}" for m in EventFlag if m.name and m.value],
        *enum_defines("ST", Stat),
        f"#define N_KINDS {max(EventKind) + 1}",
        f"#define N_STATS {len(Stat)}",
        f"#define KSMD_PID {cfg.ksmd_pid}",
        f"#define OFF_TASK_MM {lay.task_mm}",
        f"#define OFF_TASK_TGID {lay.task_tgid}",
        f"#define OFF_TASK_STACK {lay.task_stack}",
        f"#define OFF_TASK_RUNTIME {lay.task_runtime}",
        f"#define OFF_TASK_NVCSW {lay.task_nvcsw}",
        f"#define OFF_TASK_NIVCSW {lay.task_nivcsw}",
        f"#define OFF_MM_OWNER {lay.mm_owner}",
        f"#define OFF_MM_PGD {lay.mm_pgd}",
        f"#define OFF_RMAP_ADDRESS {lay.rmap_address}",
        f"#define OFF_PAGE_MAPPING {lay.page_mapping}",
        f"#define SIZEOF_PAGE {lay.sizeof_page}",
        f"#define GFP_HIGHMEM {lay.gfp_highmem:#x}",
        f"#define GFP_MOVABLE {lay.gfp_movable:#x}",
        f"#define GFP_ZERO {lay.gfp_zero:#x}",
        f"#define LOCK_HELPER_START {cfg.lock_helper[0]:#x}ULL",
        f"#define LOCK_HELPER_END {cfg.lock_helper[1]:#x}ULL",
        f"#define MERGED_MAX {cfg.merged_max}",
        f"#define RINGBUF_PAGES {cfg.ringbuf_pages}",
        f"#define FLUSH_PAGES {cfg.flush_pages}",
        f"#define THREAD_SIZE {cfg.thread_size}",
        f"#define STACK_WINDOW_WORDS {cfg.stack_window_words}",
        f"#define OFF_MM_LOCK_OWNER {lay.mm_lock_owner}",
        f"#define OFF_PT_REGS_ORIG_AX {lay.pt_regs_orig_ax}",
        f"#define OFF_MM_FLAGS {lay.mm_flags}",
        f"#define MMF_VM_MERGEABLE {MMF_VM_MERGEABLE}",
    ]
    pt = cfg.page_tables
    if pt is None:
        lines.append("#define HAVE_PTWALK 0")
    else:
        lines += [
            "#define HAVE_PTWALK 1",
            f"#define PAGE_OFFSET_BASE {pt.page_offset_base:#x}ULL",
            f"#define VMEMMAP_BASE {pt.vmemmap_base:#x}ULL",
            f"#define ZERO_PFN {pt.zero_pfn:#x}ULL",
            f"#define PTE_PFN_MASK {pt.pfn_mask:#x}ULL",
            f"#define PGTABLE_LEVELS {pt.levels}",
        ]
    return lines


def render_main(cfg: ProgramConfig) -> str:
    """The main probe set (``bpf/ksmtrace.bpf.c``) with its constants filled in."""
    return read_source("ksmtrace.bpf.c").replace("__DEFINES__", "\n".join(_defines(cfg)))
