"""Knob grids: run every setting, find the savings-versus-CPU frontier, recommend one."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.knobs import Knobs
from ksmtrace.engine.workload import Workload
from ksmtrace.render.units import fmt_bytes, fmt_seconds
from ksmtrace.whatif.series import Series, simulate

#: Share of a run at its end treated as steady state (CPU and churn figures).
STEADY_FROM = 0.75


@dataclass(slots=True)
class Outcome:
    """The figures of one setting.

    Attributes:
        series: The simulated run.
        saved: Saving at the end (bytes).
        mean_saved: Saving averaged over the run (bytes): rewards settings that merge early.
        t90_s: Seconds to 90 % of the best final saving of the sweep (None: never).
        t90_own_s: Seconds to 90 % of this setting's own final saving.
        cpu_pct: ksmd CPU over the whole run, % of one CPU.
        cpu_steady_pct: ksmd CPU over the last quarter.
        cow_per_s: Copy-on-write unmerges per second (churn).
        merges_per_s: Pages merged per second.
    """

    series: Series
    saved: float
    mean_saved: float
    t90_s: float | None
    t90_own_s: float | None
    cpu_pct: float
    cpu_steady_pct: float
    cow_per_s: float
    merges_per_s: float

    @property
    def knobs(self) -> Knobs:
        """The setting."""
        return self.series.knobs


def grid(base: Knobs, sweeps: list[tuple[str, list[int | str]]]) -> list[Knobs]:
    """Every combination of the swept values on top of ``base`` (just ``base`` if none)."""
    if not sweeps:
        return [base]
    names = [n for n, _ in sweeps]
    return [
        base.replace(**dict(zip(names, values, strict=True)))
        for values in itertools.product(*(v for _, v in sweeps))
    ]


def horizon_s(workload: Workload, settings: list[Knobs], minimum_s: float) -> float:
    """A run length long enough for the slowest setting to finish about five passes."""
    pages = max(1, workload.n_pages)
    slowest = 0.0
    for k in settings:
        period_s = max(k.sleep_jiffies() / k.hz, 1e-4)
        slowest = max(slowest, pages / k.pages_to_scan * period_s)
    return float(min(7200.0, max(minimum_s, 5 * slowest)))


def run_sweep(
    workload: Workload,
    settings: list[Knobs],
    cost: CostProfile,
    duration_s: float,
    step_s: float,
    progress: Callable[[int, Knobs], None] | None = None,
) -> list[Outcome]:
    """Simulate every setting and compute its figures."""
    runs = []
    for i, knobs in enumerate(settings):
        if progress is not None:
            progress(i, knobs)
        runs.append(simulate(workload, knobs, cost, duration_s, step_s))
    best = max((s.final_saved for s in runs), default=0.0)
    return [
        Outcome(
            series=s,
            saved=s.final_saved,
            mean_saved=float(s.saved_bytes.mean()),
            t90_s=s.time_to(0.9, best),
            t90_own_s=s.time_to(0.9),
            cpu_pct=s.cpu_percent(),
            cpu_steady_pct=s.cpu_percent(STEADY_FROM),
            cow_per_s=s.rate(s.cow_ksm),
            merges_per_s=s.rate(s.merges),
        )
        for s in runs
    ]


def frontier(outcomes: list[Outcome]) -> list[Outcome]:
    """Settings no other beats on both mean saving (higher) and CPU (lower), by CPU.

    The mean saving over the run counts both how much and how soon a setting saves.
    """
    ordered = sorted(outcomes, key=lambda o: (o.cpu_pct, -o.mean_saved))
    out: list[Outcome] = []
    for o in ordered:
        if not out or o.mean_saved > out[-1].mean_saved * 1.001:
            out.append(o)
    return out


def recommend(
    outcomes: list[Outcome], budget_pct: float, names: tuple[str, ...]
) -> tuple[Outcome | None, str]:
    """The setting to use within a CPU budget, and why, in one sentence.

    Among settings whose average ksmd CPU fits the budget, the one with the largest saving
    wins; savings within 1 % of each other count as equal, and then the faster one (time
    to 90 % of the best saving) and then the cheaper one wins.
    """
    fits = [o for o in outcomes if o.cpu_pct <= budget_pct]
    best = max(outcomes, key=lambda o: o.saved)
    if not fits:
        cheapest = min(outcomes, key=lambda o: o.cpu_pct)
        return None, (
            f"no setting fits {budget_pct:g}% of a CPU: the cheapest "
            f"({cheapest.knobs.label(names)}) needs {cheapest.cpu_pct:.1f}%; widen the budget "
            "or sweep slower settings."
        )
    top = max(o.saved for o in fits)
    close = [o for o in fits if o.saved >= 0.99 * top]
    pick = min(close, key=lambda o: (o.t90_s if o.t90_s is not None else float("inf"), o.cpu_pct))
    share = 100 * pick.saved / best.saved if best.saved else 100.0
    reason = (
        f"{pick.knobs.label(names)} saves {fmt_bytes(pick.saved)} ({share:.0f}% of the best "
        f"setting seen) and reaches 90% of it in {fmt_seconds(pick.t90_s)} at "
        f"{pick.cpu_pct:.1f}% of a CPU, within the {budget_pct:g}% budget"
    )
    if best is not pick and best.cpu_pct > budget_pct:
        reason += (
            f"; {best.knobs.label(names)} would save {fmt_bytes(best.saved - pick.saved)} more "
            f"at {best.cpu_pct:.1f}%"
        )
    return pick, reason + "."
