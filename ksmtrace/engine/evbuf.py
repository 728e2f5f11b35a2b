"""The compiled engine's event buffer: one int64 row per event, converted to EventBatch later."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.jit import inlined
from ksmtrace.engine.layout import (
    EV_ADDR,
    EV_COUNT,
    EV_ERR,
    EV_FLAGS,
    EV_KIND,
    EV_LOST,
    EV_MM,
    EV_TS,
    EV_VALUE,
    EV_VALUE2,
    NOW,
    RECORD,
    SPENT,
)
from ksmtrace.events import EventFlag, EventKind, UnmergeKind

K_MERGE = int(EventKind.MERGE)
K_ZERO_MERGE = int(EventKind.ZERO_MERGE)
K_COW = int(EventKind.COW)
K_ZERO_COW = int(EventKind.ZERO_COW)
K_SCAN_START = int(EventKind.SCAN_START)
K_SCAN_STOP = int(EventKind.SCAN_STOP)
K_ENTER = int(EventKind.ENTER)
K_EXIT = int(EventKind.EXIT)
K_REMOVE_KSM_PAGE = int(EventKind.REMOVE_KSM_PAGE)
K_REMOVE_RMAP_ITEM = int(EventKind.REMOVE_RMAP_ITEM)
K_ADVISOR = int(EventKind.ADVISOR)
K_KNOB = int(EventKind.KNOB)
K_UNMERGE = int(EventKind.UNMERGE)
U_RUN2 = int(UnmergeKind.RUN2)
F_PAIR_FIRST = int(EventFlag.PAIR_FIRST)
F_PAIR_SECOND = int(EventFlag.PAIR_SECOND)
F_STABLE = int(EventFlag.STABLE)
F_ADOPT = int(EventFlag.ADOPT)
F_FORK = int(EventFlag.FORK)

Int64Array = npt.NDArray[np.int64]


@inlined
def emit(
    g: Int64Array,
    ev: Int64Array,
    kind: int,
    mm: int,
    addr: int,
    value: int,
    value2: int,
    flags: int = 0,
    err: int = 0,
) -> None:
    """Append one event stamped with the current simulated time (dropped when full)."""
    if g[RECORD] == 0:
        return
    i = g[EV_COUNT]
    if i >= ev.shape[0]:
        g[EV_LOST] += 1
        return
    ev[i, EV_TS] = g[NOW] + g[SPENT]
    ev[i, EV_MM] = mm
    ev[i, EV_ADDR] = addr
    ev[i, EV_VALUE] = value
    ev[i, EV_VALUE2] = value2
    ev[i, EV_KIND] = kind
    ev[i, EV_FLAGS] = flags
    ev[i, EV_ERR] = err
    g[EV_COUNT] = i + 1
