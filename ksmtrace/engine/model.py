"""The merge engine: a model of ksmd driven by a :class:`Workload`, in simulated time.

Python owns the arrays and the time line; the compiled loop (:mod:`ksmtrace.engine.loop`)
does the work. Read the kernel's counters with :meth:`Engine.counters`, per-process
``ksm_stat`` with :meth:`Engine.process_stats`, and per-page events with
:meth:`Engine.take_events`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ksmtrace.engine import layout as L
from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.knobs import SLOTS, Knobs
from ksmtrace.engine.loop import EVENTS_FULL, NODES_FULL, run_until
from ksmtrace.engine.state import (
    Stream,
    grow_nodes,
    new_globals,
    new_mm_table,
    new_nodes,
    new_pages,
    new_tables,
    state_bytes,
)
from ksmtrace.engine.workload import Workload, renumber_for_engine
from ksmtrace.events import EVENT_DTYPE, KNOB_NAMES, EventBatch, EventKind, ProcessKsm

#: Bytes an rmap_item costs (``struct ksm_rmap_item``), as in general_profit.
RMAP_ITEM_BYTES = 64
#: Simulated time per call into the compiled loop: well under a second of real time even
#: with ksmd at full speed (about 1.5 M page visits per simulated second).
SLICE_NS = 5_000_000_000


def _knob_op(name: str, knobs: Knobs, value: int | str) -> tuple[int, int]:
    """(op_arg, op_val) of a knob change: slot | knob-name index << 16, and the value."""
    slot = SLOTS[name]
    val = (1 if value == "scan-time" else 0) if name == "advisor_mode" else int(value)
    return slot | (KNOB_NAMES.index(name) << 16), val


def build_stream(workload: Workload, knobs: Knobs) -> Stream:
    """The engine's input stream: page changes plus process and knob operations in time order."""
    ops: list[tuple[int, int, int, int, int, int]] = []  # t, order, kind, mm, arg, val
    for i, spec in enumerate(workload.processes):
        if spec.register_ns is not None:
            if spec.fork_parent is not None:
                ops.append((spec.register_ns, len(ops), L.OP_FORK, i, spec.fork_parent, 0))
            else:
                ops.append((spec.register_ns, len(ops), L.OP_REGISTER, i, 0, 0))
        if spec.exit_ns is not None:
            ops.append((spec.exit_ns, len(ops), L.OP_EXIT, i, 0, 0))
    for t, name, value in workload.knob_changes:
        arg, val = _knob_op(name, knobs, value)
        ops.append((t, len(ops), L.OP_KNOB, 0, arg, val))
    ops.sort()
    arr = np.array(ops, dtype=np.int64).reshape(-1, 6)
    return Stream(
        ch_t=np.ascontiguousarray(workload.change_t, dtype=np.int64),
        ch_page=np.ascontiguousarray(workload.change_page, dtype=np.int32),
        ch_val=np.ascontiguousarray(workload.change_value, dtype=np.uint32),
        op_t=np.ascontiguousarray(arr[:, 0]),
        op_kind=arr[:, 2].astype(np.int32),
        op_mm=arr[:, 3].astype(np.int32),
        op_arg=np.ascontiguousarray(arr[:, 4]),
        op_val=np.ascontiguousarray(arr[:, 5]),
    )


class Engine:
    """A simulated ksmd over one workload at one knob setting."""

    def __init__(
        self,
        workload: Workload,
        knobs: Knobs,
        cost: CostProfile,
        *,
        record_events: bool = True,
        event_capacity: int = 1 << 18,
    ) -> None:
        """Set up the state at time 0 (nothing registered yet, cursor between passes).

        Args:
            workload: What to replay.
            knobs: The KSM setting (applied at time 0).
            cost: ksmd CPU per page class, measured on a live host.
            record_events: Keep per-page events (merges, COWs...) for :meth:`take_events`.
            event_capacity: Events buffered between two :meth:`take_events` calls.
        """
        workload.validate()
        workload, n_shareable = renumber_for_engine(workload)
        self.workload = workload
        self.knobs = knobs
        self.cost_profile = cost
        self.n_mm = len(workload.processes)
        thp = np.where(workload.thp != 0, np.uint8(L.THP), np.uint8(0))
        self.P = new_pages(workload.content, workload.addr, thp)
        self.N = new_nodes(max(1024, workload.n_pages // 16))
        self.T = new_tables(workload.is_zero[:n_shareable])
        self.g = new_globals()
        self.mmst = new_mm_table(workload.starts, workload.ends)
        self.g[L.CUR_SLOT] = self.n_mm
        self.g[L.JIFFY_NS] = 1_000_000_000 // knobs.hz
        self.g[L.RECORD] = int(record_events)
        self.g[L.PRE_611] = int(knobs.ordering == "6.7")
        self.g[L.RNG] = 0x9E3779B97F4A7C15 & 0x7FFFFFFFFFFFFFFF
        for name, slot in SLOTS.items():
            self.g[slot] = knobs.slot_value(name)
        self.cost = cost.as_array()
        self.S = build_stream(workload, knobs)
        self.ev = np.zeros((event_capacity if record_events else 1, L.EV_COLS), dtype=np.int64)
        self._pending: list[npt.NDArray[np.void]] = []
        self._pids = np.array([p.pid for p in workload.processes] + [0], dtype=np.uint32)

    @property
    def now_ns(self) -> int:
        """Simulated time (ns since the workload's start)."""
        return int(self.g[L.NOW])

    def run_to(self, t_ns: int) -> None:
        """Advance the simulation to ``t_ns`` (no-op if already there).

        The compiled loop runs at most :data:`SLICE_NS` of simulated time per call, so
        control comes back to Python often enough for Ctrl-C and SIGTERM to be handled.
        """
        margin = 4 * int(self.g[L.PAGES_TO_SCAN]) + 4096
        while True:
            until = min(int(t_ns), int(self.g[L.NOW]) + SLICE_NS)
            status = run_until(
                self.P, self.N, self.T, self.g, self.mmst, self.ev, self.S, self.cost,
                until, margin,
            )  # fmt: skip
            if status == EVENTS_FULL:
                if self.ev.shape[0] < margin * 2:
                    self.ev = np.zeros((margin * 2, L.EV_COLS), dtype=np.int64)
                self._pending.append(self._convert_events())
            elif status == NODES_FULL:
                self.N = grow_nodes(self.N, self.g, 2 * len(self.N.content))
            elif until >= t_ns:
                return

    def counters(self) -> dict[str, int | str]:
        """What /sys/kernel/mm/ksm would show now (counters and knobs)."""
        g = self.g
        shared, sharing = int(g[L.SHARED]), int(g[L.SHARING])
        unshared, rmap = int(g[L.UNSHARED]), int(g[L.RMAP_ITEMS])
        zero = int(g[L.ZERO_PAGES])
        out: dict[str, int | str] = {
            "pages_shared": shared,
            "pages_sharing": sharing,
            "pages_unshared": unshared,
            "pages_volatile": max(0, rmap - shared - sharing - unshared),
            "pages_scanned": int(g[L.SCANNED]),
            "pages_skipped": int(g[L.SKIPPED]),
            "full_scans": int(g[L.SEQNR]),
            "ksm_zero_pages": zero,
            "general_profit": (sharing + zero) * self.workload.page_size - rmap * RMAP_ITEM_BYTES,
            "stable_node_chains": int(g[L.CHAINS]),
            "stable_node_dups": int(g[L.DUPS]),
        }
        for name, slot in SLOTS.items():
            value = int(g[slot])
            out[name] = ("scan-time" if value else "none") if name == "advisor_mode" else value
        return out

    @property
    def rmap_items(self) -> int:
        """``ksm_rmap_items``: rmap_items allocated now."""
        return int(self.g[L.RMAP_ITEMS])

    @property
    def cow_ksm(self) -> int:
        """/proc/vmstat ``cow_ksm`` as the workload caused it."""
        return int(self.g[L.COW_KSM])

    @property
    def cpu_ns(self) -> int:
        """Ksmd's cumulative CPU time, predicted from the cost profile."""
        return int(self.g[L.CPU_NS])

    def process_stats(self) -> dict[int, ProcessKsm]:
        """``/proc/<pid>/ksm_stat`` of every process that has KSM state now."""
        out: dict[int, ProcessKsm] = {}
        page = self.workload.page_size
        for i, spec in enumerate(self.workload.processes):
            row = self.mmst[i]
            rmap, merging, zero = int(row[L.MM_RMAP]), int(row[L.MM_MERGING]), int(row[L.MM_ZERO])
            if not (row[L.MM_REGISTERED] or rmap or merging or zero):
                continue
            out[spec.pid] = ProcessKsm(
                pid=spec.pid,
                rmap_items=rmap,
                zero_pages=zero,
                merging_pages=merging,
                process_profit=(merging + zero) * page - rmap * RMAP_ITEM_BYTES,
                mergeable=bool(row[L.MM_ALIVE]),
            )
        return out

    def mm_column(self, column: int) -> npt.NDArray[np.int64]:
        """One per-mm statistic (an ``L.MM_*`` column) for every process."""
        col: npt.NDArray[np.int64] = self.mmst[: self.n_mm, column].copy()
        return col

    def _convert_events(self) -> npt.NDArray[np.void]:
        n = int(self.g[L.EV_COUNT])
        rows = self.ev[:n]
        out = np.zeros(n, dtype=EVENT_DTYPE)
        out["ts_ns"] = rows[:, L.EV_TS]
        out["mm"] = rows[:, L.EV_MM]
        out["addr"] = rows[:, L.EV_ADDR]
        out["value"] = rows[:, L.EV_VALUE].astype(np.uint64)
        out["value2"] = rows[:, L.EV_VALUE2].astype(np.uint64)
        out["kind"] = rows[:, L.EV_KIND]
        out["flags"] = rows[:, L.EV_FLAGS]
        out["err"] = rows[:, L.EV_ERR]
        mm = rows[:, L.EV_MM]
        out["pid"] = np.where(mm > 0, self._pids[np.clip(mm - 1, 0, self.n_mm)], 0)
        out["tid"] = out["pid"]
        enter = rows[:, L.EV_KIND] == int(EventKind.ENTER)
        out["value"][enter] = out["pid"][enter]  # registered in its own context
        page_addr = rows[:, L.EV_ADDR].astype(np.uint64) * np.uint64(self.workload.page_size)
        per_page = (mm > 0) & (rows[:, L.EV_KIND] != int(EventKind.UNMERGE))
        out["addr"][per_page] = page_addr[per_page]
        self.g[L.EV_COUNT] = 0
        return out

    def take_events(self) -> EventBatch:
        """Every event since the last call, in time order (mm = process index + 1)."""
        parts = [*self._pending, self._convert_events()]
        self._pending = []
        rec = np.concatenate(parts) if parts else np.zeros(0, dtype=EVENT_DTYPE)
        return EventBatch(rec)

    @property
    def events_lost(self) -> int:
        """Events dropped because the buffer was full (should stay 0)."""
        return int(self.g[L.EV_LOST])

    def state_bytes(self) -> dict[str, int]:
        """Memory held as engine state (see :func:`ksmtrace.engine.state.state_bytes`)."""
        return state_bytes(self.P, self.N, self.T, int(self.g[L.N_NODES_LIVE]))
