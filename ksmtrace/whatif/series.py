"""One simulated run as time series, and the figures a what-if reports about it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ksmtrace.engine import layout as L
from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.knobs import Knobs
from ksmtrace.engine.model import Engine
from ksmtrace.engine.workload import Workload

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Series:
    """Kernel counters sampled every ``step`` of simulated time (index 0 = time 0).

    Attributes:
        knobs: The setting simulated.
        t_s: Sample times in seconds.
        shared, sharing, unshared, volatile, zero_pages, full_scans, scanned: the
            /sys/kernel/mm/ksm counters.
        cpu_ns: ksmd's cumulative CPU (predicted).
        cow_ksm: /proc/vmstat cow_ksm.
        merges: Pages merged so far (all processes).
        page_size: Bytes per page.
    """

    knobs: Knobs
    t_s: F64
    shared: I64
    sharing: I64
    unshared: I64
    volatile: I64
    zero_pages: I64
    full_scans: I64
    scanned: I64
    cpu_ns: I64
    cow_ksm: I64
    merges: I64
    page_size: int = 4096

    @property
    def saved_bytes(self) -> F64:
        """Memory saved at each sample: (pages_sharing + ksm_zero_pages) x page size."""
        out: F64 = (self.sharing + self.zero_pages).astype(np.float64) * self.page_size
        return out

    @property
    def final_saved(self) -> float:
        """Saving at the end of the run."""
        return float(self.saved_bytes[-1])

    def time_to(self, fraction: float, reference: float | None = None) -> float | None:
        """Seconds until the saving first reached ``fraction`` of ``reference``.

        Args:
            fraction: e.g. 0.9.
            reference: Bytes (default: this run's final saving).

        Returns:
            The time, interpolated between samples; None if never reached.
        """
        ref = self.final_saved if reference is None else reference
        if ref <= 0:
            return None
        target = fraction * ref
        saved = self.saved_bytes
        hit = np.flatnonzero(saved >= target)
        if not len(hit):
            return None
        i = int(hit[0])
        if i == 0:
            return float(self.t_s[0])
        s0, s1 = saved[i - 1], saved[i]
        frac = (target - s0) / (s1 - s0) if s1 > s0 else 1.0
        return float(self.t_s[i - 1] + frac * (self.t_s[i] - self.t_s[i - 1]))

    def cpu_percent(self, since_fraction: float = 0.0) -> float:
        """CPU of ksmd in % of one CPU, over the run (or its last part: 0.75 = last 25 %)."""
        i = int(since_fraction * (len(self.t_s) - 1))
        dt = self.t_s[-1] - self.t_s[i]
        return 0.0 if dt <= 0 else 100.0 * (self.cpu_ns[-1] - self.cpu_ns[i]) / 1e9 / dt

    def rate(self, counter: I64, since_fraction: float = 0.0) -> float:
        """Average increase per second of a cumulative counter."""
        i = int(since_fraction * (len(self.t_s) - 1))
        dt = self.t_s[-1] - self.t_s[i]
        return 0.0 if dt <= 0 else float(counter[-1] - counter[i]) / dt


def simulate(
    workload: Workload, knobs: Knobs, cost: CostProfile, duration_s: float, step_s: float
) -> Series:
    """Run the engine for ``duration_s`` simulated seconds, sampling every ``step_s``."""
    engine = Engine(workload, knobs, cost, record_events=False)
    n = int(np.ceil(duration_s / step_s)) + 1
    cols = {
        k: np.zeros(n, dtype=np.int64)
        for k in ("sh", "sg", "un", "vo", "z", "fs", "sc", "cpu", "cow", "mg")
    }
    t = np.arange(n, dtype=np.float64) * step_s
    t[-1] = min(t[-1], duration_s)
    for i in range(n):
        engine.run_to(int(t[i] * 1e9))
        c = engine.counters()
        g = engine.g
        cols["sh"][i] = g[L.SHARED]
        cols["sg"][i] = g[L.SHARING]
        cols["un"][i] = g[L.UNSHARED]
        cols["vo"][i] = int(c["pages_volatile"])
        cols["z"][i] = g[L.ZERO_PAGES]
        cols["fs"][i] = g[L.SEQNR]
        cols["sc"][i] = g[L.SCANNED]
        cols["cpu"][i] = g[L.CPU_NS]
        cols["cow"][i] = g[L.COW_KSM]
        cols["mg"][i] = int(engine.mm_column(L.MM_MERGES).sum())
    return Series(
        knobs, t, cols["sh"], cols["sg"], cols["un"], cols["vo"], cols["z"], cols["fs"],
        cols["sc"], cols["cpu"], cols["cow"], cols["mg"], workload.page_size,
    )  # fmt: skip
