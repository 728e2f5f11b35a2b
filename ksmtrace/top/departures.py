"""Which processes stopped being mergeable, when and how (for the "nothing registered" diagnosis).

A process counts as registered once its ``ksm_stat`` shows KSM state (mergeable, merge-any or
rmap items) or a ``ksm_enter`` event names it. It departs when ``ksm_exit`` fires, when its
``ksm_mergeable`` turns to "no" (after MADV_UNMERGEABLE or prctl(PR_SET_MEMORY_MERGE, 0), whose
UNMERGE events say which), or when it vanishes from the processes KSM knows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from ksmtrace.events import EventKind, ProcessIdentity, ProcessKsm, Tick, UnmergeKind
from ksmtrace.top.model import Departure

#: Departures remembered.
MAX_DEPARTURES = 50

_HOW = {
    UnmergeKind.MADVISE: "madvise(MADV_UNMERGEABLE)",
    UnmergeKind.PROCESS_MADVISE: "process_madvise(MADV_UNMERGEABLE)",
    UnmergeKind.PRCTL: "prctl(PR_SET_MEMORY_MERGE, 0)",
}


def _registered(st: ProcessKsm) -> bool:
    if st.mergeable is not None:
        return st.mergeable or bool(st.merge_any)
    return st.rmap_items > 0 or st.merging_pages > 0 or bool(st.merge_any)


class DepartureTracker:
    """Follows registrations across ticks and records each departure once."""

    def __init__(self) -> None:
        self.registered: set[int] = set()
        self.departed: deque[Departure] = deque(maxlen=MAX_DEPARTURES)
        self._last_unmerge: dict[int, str] = {}

    def add(self, tick: Tick, identities: Mapping[int, ProcessIdentity], t_s: float) -> None:
        """Account one tick (its events and the ksm_stat read at its end)."""
        rec = tick.events.records
        self.registered |= {int(p) for p in rec["pid"][rec["kind"] == EventKind.ENTER] if p}
        unm = rec[rec["kind"] == EventKind.UNMERGE]
        for pid, flags in zip(unm["pid"].tolist(), unm["flags"].tolist(), strict=True):
            if flags in _HOW:
                self._last_unmerge[int(pid)] = _HOW[UnmergeKind(flags)]
        exits = {int(p) for p in np.unique(rec["pid"][rec["kind"] == EventKind.EXIT])}
        procs = tick.sample.processes
        for pid in sorted(self.registered):
            st = procs.get(pid)
            if pid in exits:
                how = "exited (ksm_exit)"
            elif st is None:
                how = self._last_unmerge.get(pid, "left KSM (no ksm_stat state any more)")
            elif not _registered(st):
                how = self._last_unmerge.get(pid, "no mergeable mapping left")
            else:
                continue
            self._depart(pid, identities.get(pid), t_s, how)
        self.registered |= {p for p, st in procs.items() if _registered(st) and p not in exits}

    def _depart(self, pid: int, ident: ProcessIdentity | None, t_s: float, how: str) -> None:
        self.registered.discard(pid)
        self._last_unmerge.pop(pid, None)
        label = ident.group_key("process") if ident else f"?[{pid}]"
        self.departed.append(Departure(pid, label, t_s, how))

    def recent(self) -> tuple[Departure, ...]:
        """Departures, oldest first."""
        return tuple(self.departed)
