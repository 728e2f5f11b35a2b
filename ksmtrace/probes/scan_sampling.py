"""Sampled scan cost: per-process shares learned in traced intervals, applied in the others.

Attributing ksmd's pages and CPU to processes needs a probe on every mmap_lock acquisition
of the host, which costs ksmd (and every mmap-heavy program) a measurable share of its
time. In "sampled" mode that probe is attached one interval in every few; in between, the
kernel's exact totals for the interval (pages_scanned, ksmd's CPU) are split by the shares
the last traced interval measured, and the resulting SCAN events carry
``EventFlag.ESTIMATED``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ksmtrace.events import Event, EventBatch, EventFlag, EventKind, HostSample

#: How the live probe set attributes ksmd's scanning to processes.
SCAN_COST_MODES = ("exact", "sampled", "off")


@dataclass(slots=True)
class ScanShares:
    """Who took which part of ksmd's scanning in the last traced interval.

    Attributes:
        pages: pages scanned per pid.
        cpu_ns: ksmd CPU per pid (pid 0: between passes).
        mm: an mm of each pid, for the estimated events.
    """

    pages: dict[int, int] = field(default_factory=dict)
    cpu_ns: dict[int, int] = field(default_factory=dict)
    mm: dict[int, int] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether a traced interval with scanning has been seen."""
        return bool(self.pages) and sum(self.pages.values()) > 0

    def learn(self, batch: EventBatch) -> None:
        """Take the shares from the real SCAN events of a traced interval (if it scanned)."""
        scan = batch.of_kind(EventKind.SCAN)
        real = scan[(scan["flags"] & int(EventFlag.ESTIMATED)) == 0]
        if not len(real) or int(real["value"].sum()) == 0:
            return
        pages: dict[int, int] = {}
        cpu: dict[int, int] = {}
        mm: dict[int, int] = {}
        for pid in np.unique(real["pid"]).tolist():
            rows = real[real["pid"] == pid]
            pages[pid] = int(rows["value"].sum())
            cpu[pid] = int(rows["value2"].sum())
            mm[pid] = int(rows["mm"][-1])
        self.pages, self.cpu_ns, self.mm = pages, cpu, mm

    def estimate(self, prev: HostSample, cur: HostSample) -> list[Event]:
        """SCAN events splitting the interval's kernel totals by the learned shares.

        Processes that have left KSM since (no ksm_stat any more) get nothing; the others'
        shares grow to fill the totals.
        """
        alive = set(cur.processes) | {0}
        self.pages = {p: n for p, n in self.pages.items() if p in alive}
        self.cpu_ns = {p: n for p, n in self.cpu_ns.items() if p in alive}
        if not self.known:
            return []
        d_pages = cur.counter("pages_scanned") - prev.counter("pages_scanned")
        d_cpu = cur.ksmd_cpu_ns - prev.ksmd_cpu_ns if prev.ksmd_cpu_ns >= 0 else 0
        if d_pages <= 0 and d_cpu <= 0:
            return []
        total_pages = sum(self.pages.values())
        total_cpu = sum(self.cpu_ns.values()) or 1
        out = []
        for pid in sorted(set(self.pages) | set(self.cpu_ns)):
            pages = round(max(d_pages, 0) * self.pages.get(pid, 0) / total_pages)
            cpu = round(max(d_cpu, 0) * self.cpu_ns.get(pid, 0) / total_cpu)
            if pages or cpu:
                out.append(
                    Event(
                        kind=EventKind.SCAN,
                        ts_ns=cur.ts_ns,
                        pid=pid,
                        mm=self.mm.get(pid, 0),
                        value=pages,
                        value2=cpu,
                        flags=int(EventFlag.ESTIMATED),
                    )
                )
        return out
