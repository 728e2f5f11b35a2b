"""The snapshot file: round trip, provenance, truncation, foreign files and versions."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ksmtrace.errors import TraceFormatError
from ksmtrace.fingerprint.maps import parse_smaps
from ksmtrace.fingerprint.reader import F_KSM, ProcessPages
from ksmtrace.fingerprint.recorder import kpf_ksm_reliable
from ksmtrace.fingerprint.snapfile import MAGIC, SnapshotWriter, read_snapshot


def pages(
    pid: int, vpn: list[int], hashes: list[int], flags: list[int] | None = None
) -> ProcessPages:
    return ProcessPages(
        pid=pid,
        vpn=np.array(vpn, dtype=np.uint64),
        hash=np.array(hashes, dtype=np.uint64),
        flags=np.array(flags or [0] * len(vpn), dtype=np.uint8),
        mergeable_pages=len(vpn) + 2,
    )


def test_round_trip_keeps_every_page_and_the_header(tmp_path: Path) -> None:
    path = tmp_path / "s.ksmsnap"
    w = SnapshotWriter(path, {"kernel": "6.18", "salt_id": "abc"})
    big = pages(7, list(range(1000, 1000 + 5000)), list(range(5000)), [1] * 5000)
    w.frame(100, [big, pages(8, [5, 9], [2**64 - 1, 3])], {"identities": {"7": {"comm": "a"}}})
    w.counters([{"t_ns": 150, "ksm": {"run": 1}, "cow_ksm": 0, "ksmd_cpu_ns": 5}])
    w.frame(200, [pages(8, [5], [4])], {})
    w.close()
    assert path.stat().st_mode & 0o777 == 0o600
    snap = read_snapshot(path)
    assert snap.complete and snap.header["kernel"] == "6.18"
    assert [f.t_ns for f in snap.frames] == [100, 200]
    got = snap.frames[0].processes[7]
    assert np.array_equal(got.vpn, big.vpn) and np.array_equal(got.hash, big.hash)
    assert np.array_equal(got.flags, big.flags) and got.mergeable_pages == 5002
    assert snap.frames[0].processes[8].hash.tolist() == [2**64 - 1, 3]
    assert snap.counters[0]["ksmd_cpu_ns"] == 5
    assert snap.frames[0].meta["identities"]["7"]["comm"] == "a"


def test_an_interrupted_file_still_reads_its_complete_frames(tmp_path: Path) -> None:
    path = tmp_path / "s.ksmsnap"
    w = SnapshotWriter(path, {})
    w.frame(1, [pages(1, [1, 2], [3, 4])], {})
    w.frame(2, [pages(1, [1, 2], [3, 5])], {})
    w._f.close()  # no END record: as after a crash
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # and the last record cut short
    snap = read_snapshot(path)
    assert not snap.complete
    assert len(snap.frames) == 1
    assert snap.damage == (
        f"{path}: truncated after frame 1 (cut short at byte {len(data) - 10}); "
        "using the 1 readable frame"
    )


def five_frames(path: Path) -> list[int]:
    """A snapshot of 5 frames asked for with --count 5; returns where each record ends."""
    w = SnapshotWriter(path, {"count": 5})
    ends = []
    for k in range(5):
        w.frame(k, [pages(1, list(range(2000)), [k * 10_000 + i for i in range(2000)])], {})
        ends.append(path.stat().st_size)
    w.close()
    return ends


def test_a_snapshot_cut_anywhere_says_how_many_frames_it_still_has(tmp_path: Path) -> None:
    path = tmp_path / "s.ksmsnap"
    ends = five_frames(path)
    whole = path.read_bytes()
    assert read_snapshot(path).damage is None
    for cut in [*range(ends[0], len(whole), 997), *ends]:
        path.write_bytes(whole[:cut])
        snap = read_snapshot(path)
        n = sum(1 for e in ends if e <= cut)
        assert len(snap.frames) == n and not snap.complete
        if cut in ends:
            assert snap.damage is not None and "not closed after frame" in snap.damage
        else:
            assert snap.damage == (
                f"{path}: truncated after frame {n} of 5 (cut short at byte {cut}); "
                f"using the {n} readable frame{'s' if n > 1 else ''}"
            )


@pytest.mark.parametrize("cut", [5, 10, 20, 30, 5000])
def test_a_snapshot_cut_before_its_first_frame_is_refused_as_truncated(
    tmp_path: Path, cut: int
) -> None:
    path = tmp_path / "s.ksmsnap"
    ends = five_frames(path)
    assert ends[0] > 5000
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(TraceFormatError) as err:
        read_snapshot(path)
    msg = str(err.value)
    if cut < len(MAGIC):
        assert "not a ksmtrace snapshot" in msg
    else:
        assert msg.startswith(f"{path}: truncated ") and "no frame is readable" in msg
        assert "--count" not in msg and "\n" not in msg


def test_a_corrupt_frame_keeps_the_frames_before_it(tmp_path: Path) -> None:
    path = tmp_path / "s.ksmsnap"
    ends = five_frames(path)
    data = bytearray(path.read_bytes())
    at = ends[2] + 16 + 4  # inside the JSON description of the fourth frame
    data[at : at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    snap = read_snapshot(path)
    assert len(snap.frames) == 3
    assert snap.damage == (
        f"{path}: damaged after frame 3 of 5 (the record at byte {ends[2]} is corrupt); "
        "using the 3 readable frames"
    )


def test_foreign_files_and_other_versions_get_a_one_line_error(tmp_path: Path) -> None:
    other = tmp_path / "x"
    other.write_bytes(b"not a snapshot at all")
    with pytest.raises(TraceFormatError, match="not a ksmtrace snapshot"):
        read_snapshot(other)
    newer = tmp_path / "y"
    newer.write_bytes(MAGIC + struct.pack("<II", 99, 2) + b"{}")
    with pytest.raises(TraceFormatError, match="version 99"):
        read_snapshot(newer)
    with pytest.raises(TraceFormatError, match="cannot read"):
        read_snapshot(tmp_path / "missing")


SMAPS = """\
7f0000000000-7f0000004000 rw-p 00000000 00:00 0
Size:                 16 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac mg
7f0000004000-7f0000008000 rw-p 00000000 00:00 0
VmFlags: rd wr mr mw me ac
7f1000000000-7f1000400000 rw-p 00000000 00:00 0                          [heap]
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac hg mg
"""


def test_mergeable_regions_are_the_vmas_with_mg() -> None:
    regions = parse_smaps(SMAPS)
    assert [(r.start, r.pages, r.anon_huge_kb, r.name) for r in regions] == [
        (0x7F0000000000, 4, 0, ""),
        (0x7F1000000000, 1024, 2048, "[heap]"),
    ]


def test_kpf_ksm_for_every_anonymous_page_is_recognised_as_the_6_10_bug() -> None:
    flagged = pages(1, list(range(1000)), list(range(1000)), [F_KSM] * 1000)
    assert not kpf_ksm_reliable([flagged], merging_pages=0)
    assert kpf_ksm_reliable([flagged], merging_pages=1000)
    assert kpf_ksm_reliable([pages(1, [1], [1])], merging_pages=0)


def test_a_snapshot_written_over_an_existing_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "s.ksmsnap"
    path.write_bytes(b"old")
    path.chmod(0o644)
    SnapshotWriter(path, {}).close()
    assert path.stat().st_mode & 0o777 == 0o600
