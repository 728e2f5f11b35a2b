"""``/proc/<pid>/smaps``: each mapping with the flags that decide whether KSM may merge it.

fs/proc/task_mmu.c ``show_smap`` prints one header line per VMA, then ``Key: N kB`` lines,
and ``VmFlags:`` with two-letter codes: ``mg`` VM_MERGEABLE (madvise(MADV_MERGEABLE) or
prctl(PR_SET_MEMORY_MERGE)), ``sh`` VM_SHARED, ``ht`` VM_HUGETLB. KSM never merges shared
or hugetlb mappings (mm/ksm.c ``vma_ksm_compatible``). ``KSM:`` exists on 6.6+.
"""

from __future__ import annotations

from dataclasses import dataclass

from ksmtrace.hostpaths import HostPaths

#: smaps ``Key: N kB`` lines kept, by the Vma attribute they fill.
_KB_FIELDS = {"Anonymous": "anon_bytes", "AnonHugePages": "anon_huge_bytes", "KSM": "ksm_bytes"}


@dataclass(frozen=True, slots=True)
class Vma:
    """One mapping (``struct vm_area_struct``) as smaps shows it.

    Attributes:
        start: first address (host-internal: never leaves the host).
        end: address after the last byte.
        name: the path or pseudo-name ("[heap]", "[anon]", "/memfd:... (deleted)").
        mergeable: VmFlags ``mg`` (VM_MERGEABLE).
        shared: VmFlags ``sh`` (VM_SHARED).
        hugetlb: VmFlags ``ht`` (VM_HUGETLB).
        anon_bytes: ``Anonymous`` (private anonymous resident memory).
        anon_huge_bytes: ``AnonHugePages`` (anonymous memory in transparent huge pages).
        ksm_bytes: ``KSM`` (resident KSM pages, 6.6+; 0 on older kernels).
    """

    start: int
    end: int
    name: str
    mergeable: bool = False
    shared: bool = False
    hugetlb: bool = False
    anon_bytes: int = 0
    anon_huge_bytes: int = 0
    ksm_bytes: int = 0

    @property
    def size(self) -> int:
        """Length of the mapping in bytes."""
        return self.end - self.start


def _header(line: str) -> dict[str, object] | None:
    parts = line.split(maxsplit=5)
    if len(parts) < 5 or "-" not in parts[0]:
        return None
    lo, _, hi = parts[0].partition("-")
    try:
        start, end = int(lo, 16), int(hi, 16)
    except ValueError:
        return None
    return {"start": start, "end": end, "name": parts[5].strip() if len(parts) > 5 else "[anon]"}


def parse_smaps(text: str) -> list[Vma]:
    """Parse the text of ``/proc/<pid>/smaps`` into mappings (malformed lines are skipped)."""
    vmas: list[Vma] = []
    cur: dict[str, object] | None = None
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key == "VmFlags" and cur is not None:
            flags = set(rest.split())
            cur.update(mergeable="mg" in flags, shared="sh" in flags, hugetlb="ht" in flags)
            vmas.append(Vma(**cur))  # type: ignore[arg-type]
            cur = None
        elif sep and key in _KB_FIELDS and cur is not None:
            value = rest.split()
            if value and value[0].isdigit():
                cur[_KB_FIELDS[key]] = int(value[0]) * 1024
        elif (head := _header(line)) is not None:
            cur = head
    return vmas


def read_smaps(paths: HostPaths, pid: int) -> list[Vma] | None:
    """Read and parse ``/proc/<pid>/smaps``.

    Args:
        paths: where the host's /proc is.
        pid: the process.

    Returns:
        Its mappings, or None when the process is gone or its smaps cannot be read.
    """
    try:
        text = (paths.pid_dir(pid) / "smaps").read_text(errors="replace")
    except OSError:
        return None
    return parse_smaps(text)
