"""Where this boot's kernel put its direct map and struct page array, for page-table walks.

KASLR randomises ``page_offset_base`` and ``vmemmap_base`` at every boot, and neither is in
/proc/kallsyms without CONFIG_KALLSYMS_ALL. ksmtrace learns both once per boot by looking
at a page of its own: the BPF side sees the page being allocated (its struct page address)
and searches the 1 GiB-aligned candidates for the random marker written into it; the frame
number comes from /proc/self/pagemap. The result is proven by walking the page table for
that page from BPF, and cached in /run/ksmtrace keyed by the boot id.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import platform
import secrets
import struct
import threading
from dataclasses import asdict
from pathlib import Path

from ksmtrace.errors import KsmtraceError
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.offsets import KernelLayout
from ksmtrace.private_files import make_private_dir, open_private
from ksmtrace.probes.bcc_adapter import BccProgram
from ksmtrace.probes.program import PageTables, read_source

CACHE_DIR = Path("/run/ksmtrace")
_GIB = 1 << 30


class CalibrationError(KsmtraceError):
    """Page-table calibration failed; ksmtrace falls back to merge-map lookups."""


def boot_id(paths: HostPaths) -> str:
    """``/proc/sys/kernel/random/boot_id``: changes at every boot."""
    try:
        return (paths.proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def physical_address_bits(paths: HostPaths) -> int:
    """Physical address width from /proc/cpuinfo ("address sizes : 48 bits physical")."""
    try:
        for line in (paths.proc / "cpuinfo").read_text().splitlines():
            if line.startswith("address sizes"):
                return int(line.split(":")[1].split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return 52


def max_physical_gib(paths: HostPaths) -> int:
    """Highest "System RAM" address in /proc/iomem, in GiB, rounded up (at least 64)."""
    top = 0
    try:
        for line in (paths.proc / "iomem").read_text().splitlines():
            if "System RAM" in line:
                top = max(top, int(line.split(":")[0].strip().split("-")[1], 16))
    except (OSError, ValueError, IndexError):
        return 4096
    return max(64, -(-top // _GIB) + 2)


def page_table_levels() -> int:
    """4 or 5: whether the kernel honours mmap hints above the 47-bit user address space."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    prot_read, map_private_anon = 0x1, 0x22
    addr = libc.mmap(1 << 52, 4096, prot_read, map_private_anon, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        return 4
    libc.munmap(addr, 4096)
    return 5 if addr >= (1 << 47) else 4


def _pagemap_pfn(vaddr: int) -> int:
    with open("/proc/self/pagemap", "rb") as f:
        f.seek((vaddr // mmap.PAGESIZE) * 8)
        (entry,) = struct.unpack("<Q", f.read(8))
    if not entry >> 63 & 1:
        raise CalibrationError("the calibration page is not present in /proc/self/pagemap")
    pfn = int(entry & ((1 << 55) - 1))
    if pfn == 0:
        raise CalibrationError("/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)")
    return pfn


def _defines(layout: KernelLayout, tid: int, candidates: int, pfn_mask: int, levels: int) -> str:
    return "\n".join(
        [
            f"#define CALIB_TID {tid}",
            f"#define OFF_TASK_MM {layout.task_mm}",
            f"#define OFF_MM_PGD {layout.mm_pgd}",
            f"#define N_CANDIDATES {candidates}",
            f"#define PTE_PFN_MASK {pfn_mask:#x}ULL",
            f"#define PGTABLE_LEVELS {levels}",
            "#define GETPPID_NR 110",
        ]
    )


def measure_page_tables(
    paths: HostPaths, layout: KernelLayout, kernel_source: Path | None
) -> PageTables:
    """Run the calibration program once and return the page-table constants.

    Raises:
        CalibrationError: the host is not x86-64, frame numbers are hidden, or no candidate
            matched.
        ProbeError: the calibration program could not be loaded.
    """
    if platform.machine() != "x86_64":
        raise CalibrationError(f"page-table walks are implemented for x86_64 only, not "
                               f"{platform.machine()}")  # fmt: skip
    levels = page_table_levels()
    pfn_mask = ((1 << physical_address_bits(paths)) - 1) & ~0xFFF
    tid = threading.get_native_id()
    text = read_source("calibrate.bpf.c").replace(
        "__DEFINES__", _defines(layout, tid, min(max_physical_gib(paths), 4096), pfn_mask, levels)
    )
    prog = BccProgram(text, kernel_source=kernel_source)
    try:
        area = mmap.mmap(-1, 2 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        marker = secrets.token_bytes(16)
        area[0:16] = marker  # allocates the page in this thread: mm_page_alloc sees it
        _ = area[mmap.PAGESIZE]  # read fault: maps the shared zero page
        vaddr = ctypes.addressof(ctypes.c_char.from_buffer(area))
        pfn = _pagemap_pfn(vaddr)
        zero_pfn = _pagemap_pfn(vaddr + mmap.PAGESIZE)
        prog.set_array_struct(
            "cin",
            {"pfn": pfn, "vaddr": vaddr, "marker": list(struct.unpack("<QQ", marker))},
        )
        os.getppid()
        out = prog.array_struct("cout")
    finally:
        prog.close()
    return _conclude(out, pfn, zero_pfn, pfn_mask, levels, layout.sizeof_page)


def _conclude(
    out: dict[str, object], pfn: int, zero_pfn: int, pfn_mask: int, levels: int, page_size: int
) -> PageTables:
    pob = int(out["page_offset_base"])  # type: ignore[call-overload]
    if not pob:
        raise CalibrationError("the calibration marker was not found in the direct map")
    pte = int(out["walked_pte"])  # type: ignore[call-overload]
    if not pte & 1 or (pte & pfn_mask) >> 12 != pfn:
        raise CalibrationError("a page-table walk of the calibration page did not find it")
    pages = [int(p) for p in out["pages"]][: int(out["npages"])]  # type: ignore[attr-defined,call-overload]
    bases = {p - pfn * page_size for p in pages if (p - pfn * page_size) % _GIB == 0}
    if len(bases) != 1:
        raise CalibrationError("could not tell where the struct page array starts")
    return PageTables(pob, bases.pop(), zero_pfn, pfn_mask, levels)


def _cache_path() -> Path:
    return CACHE_DIR / "pagetables.json"


def load_cached(paths: HostPaths) -> PageTables | None:
    """Constants measured earlier in this boot, if cached."""
    try:
        data = json.loads(_cache_path().read_text())
        if data.pop("boot_id") != boot_id(paths):
            return None
        return PageTables(**{k: int(v) for k, v in data.items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_cached(paths: HostPaths, tables: PageTables) -> None:
    """Remember the constants for this boot (root-only file in /run)."""
    try:
        make_private_dir(CACHE_DIR)
        data = {"boot_id": boot_id(paths), **asdict(tables)}
        with open_private(_cache_path(), "w") as f:
            json.dump(data, f)
    except OSError:
        pass


def page_tables(paths: HostPaths, layout: KernelLayout, kernel_source: Path | None) -> PageTables:
    """Cached or freshly measured page-table constants."""
    cached = load_cached(paths)
    if cached is not None:
        return cached
    tables = measure_page_tables(paths, layout, kernel_source)
    save_cached(paths, tables)
    return tables
