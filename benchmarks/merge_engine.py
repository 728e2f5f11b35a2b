"""Merge engine speed and memory: simulated page visits per second on one core, state bytes.

Workloads from the synthetic generator (seeded): 1 M pages in 4 processes, 40 % duplicate
(5,000 shared contents), 10 % zero, 50 % unique, 1 % of the pages written per second.
ksmd runs with pages_to_scan=20000 and sleep_millisecs=0 so that the simulation is all
scanning. A visit is a page the walker handed to cmp_and_merge_page or skipped (smart
scan); the figure is visits per wall-clock second in the compiled loop (the first,
compiling run is not timed). State bytes are the engine's mutable arrays divided by the
tracked pages (see ksmtrace/engine/state.py for what is counted).
"""

from __future__ import annotations

import time

import numpy as np

from ksmtrace.engine import CostProfile, Engine, Knobs
from ksmtrace.engine.synthetic import SyntheticProcess, generate
from ksmtrace.engine.workload import Workload

COST = CostProfile(
    ksm_page_ns=300, page_ns=6000, merge_ns=11000, skip_ns=200, pass_ns=1.5e6, batch_ns=0,
    volatile_ns=2300,
)  # fmt: skip


def _workload(dup: float, zero: float, pool: int, pages: int = 250_000) -> Workload:
    procs = [
        SyntheticProcess(f"p{i}", pages, duplicate_fraction=dup, zero_fraction=zero, pool=pool,
                         write_rate=0.01, hot_fraction=1.0)
        for i in range(4)
    ]  # fmt: skip
    return generate(procs, 120.0, np.random.default_rng(42))


def _measure(w: Workload, smart: int, seconds: float) -> tuple[float, dict[str, int]]:
    knobs = Knobs(pages_to_scan=20_000, sleep_millisecs=0, smart_scan=smart)
    Engine(w, knobs, COST, record_events=False).run_to(10_000_000)  # compile / warm up
    e = Engine(w, knobs, COST, record_events=False)
    t = time.perf_counter()
    e.run_to(int(seconds * 1e9))
    wall = time.perf_counter() - t
    c = e.counters()
    visits = int(c["pages_scanned"]) + int(c["pages_skipped"])
    return visits / wall, e.state_bytes()


def run() -> list[str]:
    out = []
    cases = [
        ("typical: 40% dup, 10% zero", 0.4, 0.1, 5000),
        ("all unique", 0.0, 0.0, 1),
        ("all duplicate pairs-ish (pool 500k)", 1.0, 0.0, 500_000),
    ]
    for name, dup, zero, pool in cases:
        w = _workload(dup, zero, pool)
        for smart in (0, 1):
            rate, mem = _measure(w, smart, 20.0)
            total = mem["pages"] + mem["contents"] + mem["nodes"]
            out.append(
                f"{name}, smart_scan={smart}: {rate / 1e6:.1f} M visits/s; state "
                f"{total / w.n_pages:.1f} B/page ({mem['per_page_bytes']} per page + "
                f"{mem['contents'] / w.n_pages:.1f} contents + {mem['nodes'] / w.n_pages:.1f} "
                f"KSM nodes)"
            )
    return out
