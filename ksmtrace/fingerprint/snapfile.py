"""The snapshot file: magic, version, provenance header, then frames of page fingerprints.

Layout (all integers little-endian; docs/SNAPSHOT-FORMAT.md has the full description)::

    magic    8 bytes  "KSMSNAP" and a newline
    version  u32      FORMAT_VERSION
    hdr_len  u32      length of the header JSON
    header   JSON     provenance: host, kernel, HZ, page size, salt id, knobs, cost profile...
    records  repeated: u32 type, u32 zero, u64 length, payload

A FRAME record's payload is a u32 length, a JSON description of the frame (time, and per
process: pid, page count, byte lengths), then for each process in order: the virtual page
numbers (delta-encoded u64, zlib), the fingerprints (raw u64) and the flags (u8, zlib).
A COUNTERS record's payload is JSON: /sys/kernel/mm/ksm samples taken between frames. An
END record closes a complete file; a file without one (interrupted run, or cut short) still
reads up to its last complete frame, and says so in ``Snapshot.damage``.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from ksmtrace.errors import TraceFormatError
from ksmtrace.fingerprint.reader import ProcessPages
from ksmtrace.private_files import open_private

MAGIC = b"KSMSNAP\n"
FORMAT_VERSION = 1
REC_FRAME = 1
REC_COUNTERS = 2
REC_END = 9
_REC = struct.Struct("<IIQ")
_HEAD = struct.Struct("<II")


@dataclass(slots=True)
class Frame:
    """One fingerprint frame: every selected process at (about) one moment.

    Attributes:
        index: Frame number from 0.
        t_ns: CLOCK_MONOTONIC of the frame (middle of its reads).
        processes: Fingerprints by pid.
        meta: The frame's JSON description (per-process counts, ksm_stat, identities).
    """

    index: int
    t_ns: int
    processes: dict[int, ProcessPages]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Snapshot:
    """A whole snapshot file in memory.

    Attributes:
        complete: The file ends with its END record (it was closed cleanly).
        damage: When it does not: one line saying where it is truncated or damaged and how
            many frames were readable (None for a complete file).
    """

    path: Path
    header: dict[str, Any]
    frames: list[Frame]
    counters: list[dict[str, Any]]
    complete: bool
    damage: str | None = None


def _encode(pp: ProcessPages) -> tuple[list[bytes], dict[str, Any]]:
    deltas = np.diff(pp.vpn, prepend=np.uint64(0)).astype("<u8")
    blocks = [
        zlib.compress(deltas.tobytes(), 1),
        pp.hash.astype("<u8").tobytes(),
        zlib.compress(pp.flags.astype(np.uint8).tobytes(), 1),
    ]
    info = {
        "pid": pp.pid,
        "pages": pp.pages,
        "bytes": [len(b) for b in blocks],
        "zero_pfn_pages": pp.zero_pfn_pages,
        "swapped_pages": pp.swapped_pages,
        "file_pages": pp.file_pages,
        "mergeable_pages": pp.mergeable_pages,
        "t_start_ns": pp.t_start_ns,
        "t_end_ns": pp.t_end_ns,
    }
    return blocks, info


def _decode(info: dict[str, Any], data: memoryview) -> ProcessPages:
    n = int(info["pages"])
    a, b, c = (int(x) for x in info["bytes"])
    vpn = np.cumsum(np.frombuffer(zlib.decompress(data[:a]), dtype="<u8"), dtype=np.uint64)
    hashes = np.frombuffer(data[a : a + b], dtype="<u8").astype(np.uint64)
    flags = np.frombuffer(zlib.decompress(data[a + b : a + b + c]), dtype=np.uint8).copy()
    if len(vpn) != n or len(hashes) != n or len(flags) != n:
        raise TraceFormatError("snapshot frame is corrupt (array lengths disagree)")
    return ProcessPages(
        pid=int(info["pid"]),
        vpn=vpn,
        hash=hashes,
        flags=flags,
        zero_pfn_pages=int(info.get("zero_pfn_pages", 0)),
        swapped_pages=int(info.get("swapped_pages", 0)),
        file_pages=int(info.get("file_pages", 0)),
        mergeable_pages=int(info.get("mergeable_pages", 0)),
        t_start_ns=int(info.get("t_start_ns", 0)),
        t_end_ns=int(info.get("t_end_ns", 0)),
    )


class SnapshotWriter:
    """Appends frames to a new snapshot file (mode 0600), flushing each record."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        """Create the file and write the magic, version and header.

        Raises:
            TraceFormatError: the file cannot be created.
        """
        self.path = path
        try:
            self._f: IO[bytes] = open_private(path)
        except OSError as exc:
            raise TraceFormatError(f"cannot create {path}: {exc.strerror}") from None
        head = json.dumps({"format": "ksmtrace-snapshot", **header}).encode()
        self._f.write(MAGIC + _HEAD.pack(FORMAT_VERSION, len(head)) + head)
        self._f.flush()
        self.frames = 0

    def _record(self, kind: int, payload: bytes) -> None:
        self._f.write(_REC.pack(kind, 0, len(payload)) + payload)
        self._f.flush()

    def frame(self, t_ns: int, processes: list[ProcessPages], meta: dict[str, Any]) -> None:
        """Append one frame."""
        infos, blocks = [], []
        for pp in processes:
            b, info = _encode(pp)
            infos.append(info)
            blocks.extend(b)
        desc = json.dumps({"index": self.frames, "t_ns": t_ns, **meta, "processes": infos})
        raw = desc.encode()
        self._record(REC_FRAME, struct.pack("<I", len(raw)) + raw + b"".join(blocks))
        self.frames += 1

    def counters(self, samples: list[dict[str, Any]]) -> None:
        """Append counter samples (taken since the previous call)."""
        if samples:
            self._record(REC_COUNTERS, json.dumps(samples).encode())

    def close(self, summary: dict[str, Any] | None = None) -> None:
        """Write the END record and close."""
        if self._f.closed:
            return
        self._record(REC_END, json.dumps(summary or {"frames": self.frames}).encode())
        self._f.close()


def read_header(f: IO[bytes], path: Path) -> dict[str, Any]:
    """Check magic and version, return the header.

    Raises:
        TraceFormatError: not a snapshot, a version this ksmtrace cannot read, or the file
            ends inside the header.
    """
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise TraceFormatError(
            f"{path} is not a ksmtrace snapshot (record one with 'ksmtrace snapshot')"
        )
    head = f.read(_HEAD.size)
    if len(head) < _HEAD.size:
        raise _no_frame(path, f"truncated inside its header (at byte {f.tell()})")
    version, length = _HEAD.unpack(head)
    if version != FORMAT_VERSION:
        raise TraceFormatError(
            f"{path} is snapshot format version {version}; this ksmtrace reads version "
            f"{FORMAT_VERSION}: use a matching ksmtrace"
        )
    data = f.read(length)
    if len(data) < length:
        raise _no_frame(path, f"truncated inside its header (at byte {f.tell()})")
    try:
        header: dict[str, Any] = json.loads(data)
    except ValueError:
        raise TraceFormatError(f"{path}: the snapshot header is corrupt") from None
    return header


def _no_frame(path: Path, damage: str) -> TraceFormatError:
    return TraceFormatError(
        f"{path}: {damage}, so no frame is readable; copy the whole file again, or record "
        "a new snapshot"
    )


def _frames(n: int) -> str:
    return f"{n} readable frame" + ("" if n == 1 else "s")


def read_snapshot(path: Path) -> Snapshot:
    """Read a whole snapshot file.

    A file cut short, or damaged after some frames, yields the frames before the damage,
    with ``damage`` saying what happened (only a file without any readable frame fails).

    Raises:
        TraceFormatError: unreadable, not a snapshot, unknown version, or no frame readable.
    """
    try:
        f = path.open("rb")
        size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise TraceFormatError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        header = read_header(f, path)
        frames: list[Frame] = []
        counters: list[dict[str, Any]] = []
        complete = False
        state = detail = ""  # how and where the records end early, if they do
        while not complete:
            at = f.tell()
            head = f.read(_REC.size)
            if not head:
                state = "not closed"
                detail = "no END record: the recording was interrupted or the file cut short"
                break
            # The length is checked before reading: a damaged one can be huge.
            if len(head) < _REC.size or _REC.unpack(head)[2] > size - f.tell():
                state, detail = "truncated", f"cut short at byte {size}"
                break
            kind, _, length = _REC.unpack(head)
            payload = f.read(length)
            try:
                if kind == REC_FRAME:
                    frames.append(_frame(payload))
                elif kind == REC_COUNTERS:
                    counters.extend(json.loads(payload))
                elif kind == REC_END:
                    complete = True
            except (TraceFormatError, ValueError):
                state, detail = "damaged", f"the record at byte {at} is corrupt"
                break
    damage = None
    if not complete:
        if not frames:
            raise _no_frame(path, f"{state} before its first frame ended ({detail})")
        planned = header.get("count")
        of = f" of {planned}" if isinstance(planned, int) and planned >= len(frames) else ""
        damage = (
            f"{path}: {state} after frame {len(frames)}{of} ({detail}); "
            f"using the {_frames(len(frames))}"
        )
    return Snapshot(path, header, frames, counters, complete, damage)


def _frame(payload: bytes) -> Frame:
    """Decode one FRAME record.

    Raises:
        TraceFormatError: the record is corrupt.
    """
    try:
        (n,) = struct.unpack_from("<I", payload)
        meta = json.loads(payload[4 : 4 + n])
        data = memoryview(payload)[4 + n :]
        procs: dict[int, ProcessPages] = {}
        offset = 0
        for info in meta["processes"]:
            size = sum(int(x) for x in info["bytes"])
            pp = _decode(info, data[offset : offset + size])
            procs[pp.pid] = pp
            offset += size
        return Frame(int(meta["index"]), int(meta["t_ns"]), procs, meta)
    except (KeyError, TypeError, ValueError, struct.error, zlib.error) as exc:
        raise TraceFormatError(f"snapshot frame is corrupt ({exc})") from None


def vpn_hash_arrays(
    frame: Frame, pid: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The page numbers and fingerprints of one process in a frame (empty if absent)."""
    pp = frame.processes.get(pid)
    if pp is None:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    return pp.vpn, pp.hash
