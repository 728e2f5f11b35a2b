"""Recording Ticks to a trace file: filtering, privacy, knob changes, and a writer thread.

The probe loop only hands each Tick to a bounded queue; a writer thread filters it,
sanitizes kernel addresses, adds KNOB events for knob changes and commits it as one
transaction. The probe loop therefore never waits on the disk, and if the disk cannot keep
up the queue fills, the loop blocks, and the kernel side counts what it drops (Tick.lost):
never a silent loss.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ksmtrace import __version__
from ksmtrace.events import (
    ADVISOR_MODES,
    EVENT_DTYPE,
    KNOB_NAMES,
    EventBatch,
    EventKind,
    HostSample,
    ProcessIdentity,
    Tick,
)
from ksmtrace.privacy import sanitize
from ksmtrace.tracefile.schema import TraceHeader
from ksmtrace.tracefile.writer import TraceFullError, TraceWriter

#: Kinds kept by a --pid/--vm filter whatever their pid: they describe ksmd and the host.
GLOBAL_KINDS = (EventKind.SCAN_START, EventKind.SCAN_STOP, EventKind.ADVISOR, EventKind.KNOB)


def _knob_code(name: str, value: int | str) -> int | None:
    if name == "advisor_mode":
        return ADVISOR_MODES.index(str(value)) if value in ADVISOR_MODES else None
    return value if isinstance(value, int) and value >= 0 else None


def knob_events(previous: HostSample | None, sample: HostSample) -> EventBatch:
    """KNOB events for every KSM knob whose value differs between two samples.

    The change is stamped at the later sample's time: it happened in between.
    """
    if previous is None:
        return EventBatch()
    rows = []
    for index, name in enumerate(KNOB_NAMES):
        old, new = previous.ksm.get(name), sample.ksm.get(name)
        if old is None or new is None or old == new:
            continue
        old_code, new_code = _knob_code(name, old), _knob_code(name, new)
        if old_code is None or new_code is None:
            continue
        rows.append((sample.ts_ns, 0, index, new_code, old_code, 0, 0, 0, int(EventKind.KNOB), 0))
    return EventBatch(np.array(rows, dtype=EVENT_DTYPE)) if rows else EventBatch()


@dataclass(slots=True)
class ProcessFilter:
    """Which processes a recording keeps: --pid values and the processes of --vm names.

    A VM's process is recognised from its identity the first time it is seen, so a guest
    started after recording began is included too.
    """

    pids: set[int] = field(default_factory=set)
    vms: set[str] = field(default_factory=set)
    vms_seen: set[str] = field(default_factory=set)

    @property
    def active(self) -> bool:
        """Whether anything is filtered at all."""
        return bool(self.pids or self.vms)

    def update(self, identities: Mapping[int, ProcessIdentity]) -> None:
        """Add the processes of the wanted VMs among ``identities``."""
        if self.vms:
            matched = {p: i.vm for p, i in identities.items() if i.vm in self.vms}
            self.pids |= set(matched)
            self.vms_seen |= {vm for vm in matched.values() if vm}

    def apply(self, tick: Tick) -> Tick:
        """The Tick restricted to the wanted processes (global events and counters stay)."""
        if not self.active:
            return tick
        self.update(tick.identities)
        rec = tick.events.records
        wanted = np.fromiter(self.pids, dtype=np.uint32, count=len(self.pids))
        keep = np.isin(rec["pid"], wanted) | (rec["pid"] == 0)
        keep |= np.isin(rec["kind"], np.array([int(k) for k in GLOBAL_KINDS]))
        return dataclasses.replace(
            tick,
            events=EventBatch(rec[keep]),
            sample=self._sample(tick.sample),
            previous=self._sample(tick.previous) if tick.previous is not None else None,
            identities={p: i for p, i in tick.identities.items() if p in self.pids},
        )

    def _sample(self, s: HostSample) -> HostSample:
        procs = {p: v for p, v in s.processes.items() if p in self.pids}
        return dataclasses.replace(s, processes=procs)


def provenance(
    *,
    knobs: Mapping[str, int | str],
    probes: Mapping[str, Any],
    interval_s: float,
    page_size: int,
    filter_: ProcessFilter,
    sanitized: bool,
    note: str = "",
) -> TraceHeader:
    """The header of a new trace: this host, this kernel, the knobs and probes now."""
    uname = platform.uname()
    return TraceHeader(
        ksmtrace_version=__version__,
        hostname=uname.node,
        kernel_release=uname.release,
        kernel_version=uname.version,
        machine=uname.machine,
        page_size=page_size,
        started_wall_ns=time.time_ns(),
        started_mono_ns=time.monotonic_ns(),
        interval_s=interval_s,
        knobs=dict(knobs),
        probes=dict(probes),
        filter_pids=sorted(filter_.pids),
        filter_vms=sorted(filter_.vms),
        sanitized=sanitized,
        note=note,
    )


@dataclass(slots=True)
class RecordStats:
    """What a recording wrote so far."""

    ticks: int = 0
    events: int = 0
    lost: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    write_seconds: float = 0.0
    max_write_seconds: float = 0.0


class Recorder:
    """Writes submitted Ticks to a :class:`TraceWriter` from a writer thread.

    Args:
        writer: the open trace.
        salt: host salt for :func:`ksmtrace.privacy.sanitize`; None stores raw values.
        filter_: processes to keep.
        queue_ticks: Ticks that may wait for the disk before :meth:`submit` blocks.
    """

    def __init__(
        self,
        writer: TraceWriter,
        salt: bytes | None,
        filter_: ProcessFilter | None = None,
        queue_ticks: int = 8,
    ) -> None:
        self.writer = writer
        self.salt = salt
        self.filter = filter_ or ProcessFilter()
        self.stats = RecordStats()
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[Tick, dict[str, Any]] | None] = queue.Queue(queue_ticks)
        self._last_sample: HostSample | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ksmtrace-writer", daemon=True)
        self._thread.start()

    def submit(self, tick: Tick, meta: Mapping[str, Any] | None = None) -> None:
        """Queue one Tick (and ``meta`` header values to update with it).

        Raises:
            TraceFullError: an earlier Tick hit the size cap or a full disk.
            KsmtraceError: the writer failed otherwise.
        """
        self._raise_error()
        self._queue.put((tick, dict(meta or {})))

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is not None:
                continue  # drain: nothing more is written after a failure
            try:
                self._write(*item)
            except BaseException as exc:  # handed to the submitting thread
                self.error = exc

    def prepare(self, tick: Tick) -> Tick:
        """Filter, add KNOB events and sanitize one Tick, as it will be stored."""
        tick = self.filter.apply(tick)
        knobs = knob_events(tick.previous or self._last_sample, tick.sample)
        events = EventBatch.concat([tick.events, knobs]) if len(knobs) else tick.events
        if self.salt is not None:
            events = sanitize(events, self.salt)
        self._last_sample = tick.sample
        return dataclasses.replace(tick, events=events)

    def _write(self, tick: Tick, meta: dict[str, Any]) -> None:
        started = time.perf_counter()
        stored = self.prepare(tick)
        self.writer.write_tick(stored, {k: json.dumps(v, sort_keys=True) for k, v in meta.items()})
        took = time.perf_counter() - started
        st = self.stats
        st.ticks += 1
        st.events += len(stored.events)
        for k, n in stored.lost.items():
            st.lost[k] = st.lost.get(k, 0) + n
        st.write_seconds += took
        st.max_write_seconds = max(st.max_write_seconds, took)
        st.bytes = self.writer.size()

    def close(self, stop_reason: str) -> RecordStats:
        """Write what is queued, then close the trace with ``stop_reason``.

        Raises:
            TraceFullError: the size cap or a full disk stopped the recording early (the
                file is closed and complete up to there).
        """
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            if isinstance(self.error, TraceFullError):
                stop_reason = str(self.error)
            self.writer.close(stop_reason)
        self._raise_error()
        return self.stats
