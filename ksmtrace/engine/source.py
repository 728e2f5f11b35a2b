"""The merge engine as a TickSource: simulated Ticks for the report, exporter and TUI views."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ksmtrace.engine import layout as L
from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.knobs import Knobs
from ksmtrace.engine.model import Engine
from ksmtrace.engine.workload import Workload
from ksmtrace.events import EVENT_DTYPE, EventBatch, EventKind, HostSample, ProcessIdentity, Tick


class EngineSource:
    """Ticks of a simulated ksmd over a workload (implements ``events.TickSource``).

    Per-page events (MERGE, COW, ZERO_MERGE, REMOVE_*, SCAN_START/STOP, ENTER/EXIT,
    ADVISOR, KNOB) come from the engine as they happen; SCAN events (pages scanned and
    predicted ksmd CPU per process) are summed per tick, plus one SCAN event with mm 0 for
    the pass overhead, like the live tracer's.
    """

    def __init__(
        self,
        workload: Workload,
        knobs: Knobs,
        cost: CostProfile,
        *,
        t0_ns: int = 0,
        record_events: bool = True,
    ) -> None:
        """Prepare the engine.

        Args:
            workload: What to replay.
            knobs: The KSM setting.
            cost: Measured ksmd cost profile.
            t0_ns: Timestamp of simulated time 0 in the Ticks (e.g. the recording's start).
            record_events: Emit per-page events (False: counters and SCAN events only).
        """
        self.engine = Engine(workload, knobs, cost, record_events=record_events)
        self.t0_ns = t0_ns
        self.identities: Mapping[int, ProcessIdentity] = {
            p.pid: p.identity for p in workload.processes
        }
        self._scanned = np.zeros(self.engine.n_mm, dtype=np.int64)
        self._cpu = np.zeros(self.engine.n_mm, dtype=np.int64)
        self._total_cpu = 0

    def sample(self) -> HostSample:
        """The simulated counters now."""
        e = self.engine
        return HostSample(
            ts_ns=self.t0_ns + e.now_ns,
            ksm=e.counters(),
            vmstat={"cow_ksm": e.cow_ksm, "ksm_swpin_copy": 0},
            ksmd_cpu_ns=e.cpu_ns,
            processes=e.process_stats(),
            page_size=e.workload.page_size,
        )

    def _scan_events(self, ts: int) -> EventBatch:
        e = self.engine
        scanned = e.mm_column(L.MM_SCANNED)
        cpu = e.mm_column(L.MM_CPU)
        d_pages, d_cpu = scanned - self._scanned, cpu - self._cpu
        self._scanned, self._cpu = scanned, cpu
        overhead = e.cpu_ns - self._total_cpu - int(d_cpu.sum())
        self._total_cpu = e.cpu_ns
        rows = np.flatnonzero(d_pages | d_cpu)
        out = np.zeros(len(rows) + 1, dtype=EVENT_DTYPE)
        out["ts_ns"] = ts
        out["kind"] = int(EventKind.SCAN)
        out["mm"][:-1] = rows + 1
        out["pid"][:-1] = [e.workload.processes[i].pid for i in rows]
        out["tid"] = out["pid"]
        out["value"][:-1] = d_pages[rows]
        out["value2"][:-1] = d_cpu[rows]
        out["value2"][-1] = max(0, overhead)
        return EventBatch(out)

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        """Yield one Tick per ``interval_s`` of simulated time.

        Args:
            interval_s: Simulated seconds per Tick.
            duration_s: Simulated seconds in all (default: the workload's duration).
        """
        e = self.engine
        step = max(1, int(interval_s * 1e9))
        end = int((duration_s if duration_s is not None else e.workload.duration_ns / 1e9) * 1e9)
        prev = self.sample()
        t = e.now_ns
        while t < end:
            t = min(end, t + step)
            e.run_to(t)
            events = e.take_events()
            events.records["ts_ns"] += np.uint64(self.t0_ns)
            batch = EventBatch.concat([events, self._scan_events(self.t0_ns + t)])
            sample = self.sample()
            lost = {0: e.events_lost} if e.events_lost else {}
            yield Tick(prev.ts_ns, sample.ts_ns, batch, sample, lost, self.identities, prev)
            prev = sample

    def close(self) -> None:
        """Nothing to release (the engine is plain memory)."""
