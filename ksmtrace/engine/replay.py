"""Snapshots to a :class:`Workload`: page universe, content ids, changes between frames, knobs.

Each file is aligned on its first frame (time 0). Processes present in the first frame
register at time 0 in order of their start time (an older process registered first);
later ones register between the frame that first shows them and the one before, and a
process missing from a frame exits between that frame and the previous one. A page whose
fingerprint differs between two frames changes once, at a time drawn uniformly between
them (or exactly at the later frame with ``timing="frame"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.layout import NOT_PRESENT
from ksmtrace.engine.workload import ProcessSpec, Workload
from ksmtrace.errors import UsageError
from ksmtrace.events import KNOB_NAMES, ProcessIdentity
from ksmtrace.fingerprint.reader import F_THP, F_ZERO, F_ZERO_PFN
from ksmtrace.fingerprint.snapfile import Snapshot

_IDENTITY_FIELDS = set(ProcessIdentity.__slots__)


@dataclass(slots=True)
class _Proc:
    key: tuple[int, int, int]  # file index, pid, start_time
    identity: ProcessIdentity
    uid: int | None
    frames: list[int] = field(default_factory=list)  # frame indices where present
    vpn: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))


@dataclass(slots=True)
class Recording:
    """What a set of snapshots says beyond the workload: the kernel's side, for comparison.

    Attributes:
        knobs: /sys/kernel/mm/ksm knobs at the start of the first file.
        hz: CONFIG_HZ of the recorded host.
        cost: The cost profile embedded in the first file, if any.
        samples: Counter samples of the first file, times relative to its first frame.
        uids: uid of each workload process (same order), None if unknown.
        hashes: The fingerprint of each content id of the workload.
    """

    knobs: dict[str, int | str]
    hz: int
    cost: CostProfile | None
    samples: list[dict[str, Any]]
    uids: list[int | None]
    hashes: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))


def _identity(data: dict[str, Any], pid: int) -> ProcessIdentity:
    picked = {k: v for k, v in data.items() if k in _IDENTITY_FIELDS}
    picked["pid"] = pid
    return ProcessIdentity(**picked)


def _processes(snaps: list[Snapshot]) -> list[_Proc]:
    procs: dict[tuple[int, int, int], _Proc] = {}
    for fi, snap in enumerate(snaps):
        idents: dict[int, dict[str, Any]] = {}
        for frame in snap.frames:
            for pid_text, data in frame.meta.get("identities", {}).items():
                idents[int(pid_text)] = data
            for pid, pp in frame.processes.items():
                data = idents.get(pid, {})
                key = (fi, pid, int(data.get("start_time", 0)))
                proc = procs.get(key)
                if proc is None:
                    proc = procs[key] = _Proc(key, _identity(data, pid), data.get("uid"))
                proc.frames.append(frame.index)
                proc.vpn = np.union1d(proc.vpn, pp.vpn)
    return sorted(procs.values(), key=lambda p: (p.frames[0], p.key[0], p.key[2], p.key[1]))


def _content_ids(snaps: list[Snapshot]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    hashes = [pp.hash for s in snaps for f in s.frames for pp in f.processes.values()]
    zero = [
        pp.hash[(pp.flags & F_ZERO) != 0]
        for s in snaps
        for f in s.frames
        for pp in f.processes.values()
    ]
    uniq = np.unique(np.concatenate(hashes)) if hashes else np.zeros(0, np.uint64)
    zero_hashes = np.unique(np.concatenate(zero)) if zero else np.zeros(0, np.uint64)
    is_zero = np.isin(uniq, zero_hashes).astype(np.uint8)
    return uniq, is_zero


def _knob_changes(samples: list[dict[str, Any]]) -> list[tuple[int, str, int | str]]:
    out: list[tuple[int, str, int | str]] = []
    last: dict[str, Any] = {}
    for s in samples:
        for name in KNOB_NAMES:
            value = s["ksm"].get(name)
            if value is None:
                continue
            if name in last and last[name] != value and int(s["t_ns"]) > 0:
                out.append((int(s["t_ns"]), name, value))
            last[name] = value
    return out


def workload_from_snapshots(
    snaps: list[Snapshot], rng: np.random.Generator, timing: str = "uniform"
) -> tuple[Workload, Recording]:
    """Build the workload (and the recorded side) from one or more snapshot files.

    Args:
        snaps: Snapshot files; all must share one salt id.
        rng: Draws the change times between frames (``timing="uniform"``).
        timing: "uniform" or "frame".

    Raises:
        UsageError: no frames, or files with different salts.
    """
    if not snaps or not any(s.frames for s in snaps):
        raise UsageError("the snapshot holds no frames: record at least one with --count 1")
    salts = {s.header.get("salt_id") for s in snaps}
    if len(salts) > 1:
        raise UsageError(
            "these snapshots were salted differently, so equal pages look different: record "
            "them with the same --salt-file"
        )
    t0 = [s.frames[0].t_ns if s.frames else 0 for s in snaps]
    procs = _processes(snaps)
    uniq, is_zero = _content_ids(snaps)
    sizes = np.array([len(p.vpn) for p in procs], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    content = np.full(int(sizes.sum()), NOT_PRESENT, dtype=np.uint32)
    thp = np.zeros(int(sizes.sum()), dtype=np.uint8)
    ch_t: list[npt.NDArray[np.int64]] = []
    ch_p: list[npt.NDArray[np.int64]] = []
    ch_v: list[npt.NDArray[np.uint32]] = []
    specs: list[ProcessSpec] = []
    for i, proc in enumerate(procs):
        fi, pid, _ = proc.key
        frames = snaps[fi].frames
        times = np.array([f.t_ns - t0[fi] for f in frames], dtype=np.int64)
        prev = np.full(len(proc.vpn), NOT_PRESENT, dtype=np.uint32)
        written = np.zeros(len(proc.vpn), dtype=bool)
        first = proc.frames[0]
        for k in range(first, len(frames)):
            cur = np.full(len(proc.vpn), NOT_PRESENT, dtype=np.uint32)
            pp = frames[k].processes.get(pid)
            if pp is not None:
                idx = np.searchsorted(proc.vpn, pp.vpn)
                cur[idx] = np.searchsorted(uniq, pp.hash).astype(np.uint32)
                # A zero-page mapping counts as a (zero) page only where the page was
                # written before: KSM put the zero page there (use_zero_pages). Never
                # written memory that was only read maps it too, and ksmd skips it.
                zero_pfn = (pp.flags & F_ZERO_PFN) != 0
                unwritten = idx[zero_pfn & ~written[idx]]
                cur[unwritten] = NOT_PRESENT
                written[idx[~zero_pfn]] = True
                if k == first:
                    thp[starts[i] + idx] = (pp.flags & F_THP) != 0
            if k == first:
                content[starts[i] : ends[i]] = cur
            else:
                changed = np.flatnonzero(cur != prev)
                lo, hi = times[k - 1], times[k]
                when = (
                    np.full(len(changed), hi, dtype=np.int64)
                    if timing == "frame"
                    else rng.integers(lo + 1, hi + 1, size=len(changed), dtype=np.int64)
                )
                ch_t.append(when)
                ch_p.append(changed + starts[i])
                ch_v.append(cur[changed])
            prev = cur
        last = proc.frames[-1]
        gone = last + 1 < len(frames)
        exit_ns = int(rng.integers(times[last] + 1, times[last + 1] + 1)) if gone else None
        reg = 0 if first == 0 else int(rng.integers(times[first - 1] + 1, times[first] + 1))
        specs.append(ProcessSpec(pid, proc.identity, reg, exit_ns, None, ""))
    t_all = np.concatenate(ch_t) if ch_t else np.zeros(0, np.int64)
    order = np.argsort(t_all, kind="stable")
    first_snap = snaps[0]
    samples = [{**s, "t_ns": int(s["t_ns"]) - t0[0]} for s in first_snap.counters]
    duration = max(f.t_ns - t0[fi] for fi, s in enumerate(snaps) for f in s.frames)
    workload = Workload(
        processes=specs,
        starts=starts,
        ends=ends,
        addr=np.concatenate([p.vpn for p in procs]) if procs else np.zeros(0, np.uint64),
        content=content,
        thp=thp,
        is_zero=is_zero,
        change_t=t_all[order],
        change_page=np.concatenate(ch_p)[order].astype(np.int32) if ch_p else np.zeros(0, np.int32),
        change_value=np.concatenate(ch_v)[order] if ch_v else np.zeros(0, np.uint32),
        knob_changes=_knob_changes(samples),
        duration_ns=int(duration),
        page_size=int(first_snap.header.get("page_size", 4096)),
        origin=", ".join(str(s.path) for s in snaps),
    )
    cost = first_snap.header.get("cost_profile")
    knobs = dict(first_snap.header.get("knobs", {}))
    for sample in samples:
        if sample["t_ns"] <= 0:
            knobs.update({k: v for k, v in sample["ksm"].items() if k in KNOB_NAMES})
    recording = Recording(
        knobs=knobs,
        hz=int(first_snap.header.get("hz", 250)),
        cost=CostProfile(**cost) if cost else None,
        samples=samples,
        uids=[p.uid for p in procs],
        hashes=uniq,
    )
    return workload, recording
