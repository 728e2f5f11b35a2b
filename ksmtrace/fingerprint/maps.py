"""Mergeable regions of a process: the VMAs of /proc/<pid>/smaps whose VmFlags include "mg"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ksmtrace.errors import HostError

PAGE_SHIFT = 12


@dataclass(frozen=True, slots=True)
class Region:
    """One VM_MERGEABLE VMA.

    Attributes:
        start: First address.
        end: One past the last address.
        anon_huge_kb: ``AnonHugePages`` of the VMA (PMD-mapped THP), in KiB.
        name: The mapped file or pseudo-name ("[heap]", "" for anonymous memory).
    """

    start: int
    end: int
    anon_huge_kb: int = 0
    name: str = ""

    @property
    def pages(self) -> int:
        """Pages the region spans."""
        return (self.end - self.start) >> PAGE_SHIFT


def parse_smaps(text: str) -> list[Region]:
    """The VM_MERGEABLE VMAs described by the text of /proc/<pid>/smaps.

    Args:
        text: The whole file.

    Returns:
        Regions in address order.
    """
    regions: list[Region] = []
    start = end = huge = 0
    name = ""
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):
            lo, _, hi = head.partition("-")
            try:
                start, end = int(lo, 16), int(hi, 16)
            except ValueError:
                continue
            fields = rest.split(None, 4)
            name = fields[4] if len(fields) == 5 else ""
            huge = 0
        elif head == "AnonHugePages:":
            huge = int(rest.split()[0])
        elif head == "VmFlags:" and "mg" in rest.split():
            regions.append(Region(start, end, huge, name))
    return regions


def read_mergeable_regions(proc: Path, pid: int) -> list[Region] | None:
    """Mergeable regions of ``pid``, or None if the process is gone.

    Args:
        proc: Where procfs is mounted.
        pid: The process.
    """
    path = proc / str(pid) / "smaps"
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        raise HostError(
            f"cannot read {path}: permission denied; fingerprinting needs root with "
            f"CAP_SYS_PTRACE over process {pid}"
        ) from None
    return parse_smaps(text)
