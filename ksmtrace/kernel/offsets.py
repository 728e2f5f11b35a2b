"""Kernel struct offsets and constants for the BPF programs, from the running kernel's BTF."""

from __future__ import annotations

from dataclasses import dataclass

from ksmtrace.kernel.btf import Btf, BtfError


@dataclass(frozen=True, slots=True)
class KernelLayout:
    """Byte offsets (and sizes) of the kernel fields ksmtrace reads from BPF.

    Attributes:
        task_mm: ``task_struct.mm``.
        task_tgid: ``task_struct.tgid``.
        task_stack: ``task_struct.stack`` (base of the kernel stack).
        task_runtime: ``task_struct.se.sum_exec_runtime``.
        task_nvcsw: ``task_struct.nvcsw`` (voluntary context switches).
        task_nivcsw: ``task_struct.nivcsw`` (involuntary context switches).
        mm_owner: ``mm_struct.owner`` (needs CONFIG_MEMCG).
        mm_pgd: ``mm_struct.pgd``.
        rmap_address: ``ksm_rmap_item.address`` (low 12 bits are KSM flags).
        page_mapping: ``page.mapping`` (low 2 bits 3 = a KSM page).
        sizeof_page: ``sizeof(struct page)``.
        gfp_highmem: ``__GFP_HIGHMEM`` bit mask.
        gfp_movable: ``__GFP_MOVABLE`` bit mask.
        gfp_zero: ``__GFP_ZERO`` bit mask.
        mm_lock_owner: ``mm_struct.mmap_lock.owner`` (the writer's task_struct, low bits flags).
        pt_regs_orig_ax: ``pt_regs.orig_ax`` (x86-64: the system call number).
        mm_flags: ``mm_struct.flags`` (its first word holds MMF_VM_MERGEABLE).
    """

    task_mm: int
    task_tgid: int
    task_stack: int
    task_runtime: int
    task_nvcsw: int
    task_nivcsw: int
    mm_owner: int
    mm_pgd: int
    rmap_address: int
    page_mapping: int
    sizeof_page: int
    gfp_highmem: int
    gfp_movable: int
    gfp_zero: int
    mm_lock_owner: int
    pt_regs_orig_ax: int
    mm_flags: int


# Linux 6.10 ("mm: enumerate all gfp flags") turned the ___GFP_* #defines into an enum of
# bit numbers (___GFP_*_BIT), which BTF carries. Older kernels have only the #defines, whose
# values for these three flags were stable for years.
_GFP_FALLBACK = {"HIGHMEM": 0x02, "MOVABLE": 0x08, "ZERO": 0x100}


def _gfp_mask(btf: Btf, name: str) -> int:
    try:
        return 1 << btf.enum_value(f"___GFP_{name}_BIT")
    except BtfError:
        return _GFP_FALLBACK[name]


def resolve_layout(btf: Btf) -> KernelLayout:
    """Resolve every offset ksmtrace needs from BTF.

    Args:
        btf: the running kernel's BTF (``/sys/kernel/btf/vmlinux``).

    Returns:
        The offsets, ready to be rendered into the BPF program.

    Raises:
        BtfError: a field is missing; the message names it and what kernel option provides it.
    """
    if not btf.has_field("mm_struct", "owner"):
        raise BtfError(
            "this kernel's mm_struct has no 'owner' field (CONFIG_MEMCG is off), so ksmtrace "
            "cannot tell which process owns an mm; use a kernel built with CONFIG_MEMCG=y"
        )
    if not btf.has_type("ksm_rmap_item"):
        raise BtfError(
            "BTF has no 'struct ksm_rmap_item': this kernel predates the KSM struct renames "
            "of Linux 6.1 or was built without CONFIG_KSM"
        )
    return KernelLayout(
        task_mm=btf.offset_of("task_struct", "mm"),
        task_tgid=btf.offset_of("task_struct", "tgid"),
        task_stack=btf.offset_of("task_struct", "stack"),
        task_runtime=btf.offset_of("task_struct", "se.sum_exec_runtime"),
        task_nvcsw=btf.offset_of("task_struct", "nvcsw"),
        task_nivcsw=btf.offset_of("task_struct", "nivcsw"),
        mm_owner=btf.offset_of("mm_struct", "owner"),
        mm_pgd=btf.offset_of("mm_struct", "pgd"),
        rmap_address=btf.offset_of("ksm_rmap_item", "address"),
        page_mapping=btf.offset_of("page", "mapping"),
        sizeof_page=btf.sizeof("page"),
        gfp_highmem=_gfp_mask(btf, "HIGHMEM"),
        gfp_movable=_gfp_mask(btf, "MOVABLE"),
        gfp_zero=_gfp_mask(btf, "ZERO"),
        mm_lock_owner=btf.offset_of("mm_struct", "mmap_lock.owner"),
        pt_regs_orig_ax=btf.offset_of("pt_regs", "orig_ax"),
        mm_flags=btf.offset_of("mm_struct", "flags"),
    )
