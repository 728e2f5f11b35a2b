"""Parsing /proc/<pid>/smaps into the mappings that decide whether KSM may merge."""

from __future__ import annotations

from pathlib import Path

from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.smaps import parse_smaps, read_smaps
from ksmtrace.top.regions import read_regions

SMAPS = """\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Rss:                  64 kB
Anonymous:            64 kB
AnonHugePages:         0 kB
KSM:                   8 kB
VmFlags: rd wr mr mw me ac mg
7f0000000000-7f0040000000 rw-s 00000000 00:01 4242                       /memfd:pc.ram (deleted)
Size:            1048576 kB
Anonymous:             0 kB
VmFlags: rd wr sh mr mw me ms sd
7f1000000000-7f1008000000 rw-p 00000000 00:10 77                         /dev/hugepages/guest
Size:             131072 kB
VmFlags: rd wr mr mw me de ht sd
7f2000000000-7f2000400000 rw-p 00000000 00:00 0
Size:               4096 kB
Anonymous:          4096 kB
AnonHugePages:      4096 kB
VmFlags: rd wr mr mw me ac hg mg
7f3000000000-7f3000001000 r--s 00000000 08:01 99                         /var/lib/db/data
Size:                  4 kB
VmFlags: rd sh mr mw me ms
"""


def test_parse_reads_flags_and_sizes_of_each_mapping() -> None:
    heap, memfd, huge, thp, db = parse_smaps(SMAPS)
    assert heap.name == "[heap]" and heap.mergeable and not heap.shared
    assert (heap.size, heap.anon_bytes, heap.ksm_bytes) == (0x21000, 64 * 1024, 8 * 1024)
    assert memfd.shared and not memfd.mergeable and memfd.size == 1 << 30
    assert memfd.name == "/memfd:pc.ram (deleted)"
    assert huge.hugetlb and huge.size == 128 << 20
    assert thp.name == "[anon]" and thp.mergeable and thp.anon_huge_bytes == 4 << 20
    assert db.shared


def test_read_regions_keeps_what_matters_to_ksm(tmp_path: Path) -> None:
    (tmp_path / "proc" / "42").mkdir(parents=True)
    (tmp_path / "proc" / "42" / "smaps").write_text(SMAPS)
    paths = HostPaths(tmp_path)
    assert len(read_smaps(paths, 42) or []) == 5
    regions = read_regions(paths, 42)
    assert regions is not None
    names = [v.name for v in regions.regions]
    assert names == ["[heap]", "/memfd:pc.ram (deleted)", "/dev/hugepages/guest", "[anon]"]
    assert regions.total("anon_huge_bytes", mergeable=True) == 4 << 20
    assert read_regions(paths, 43) is None
