"""Record a real KSM run (fingerprints + counters), replay it through the engine, compare."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ksmtrace.engine.calibrate import measure_cost, measure_wake_latency
from ksmtrace.engine.cost import CostProfile, load_profile
from ksmtrace.engine.knobs import from_sysfs
from ksmtrace.engine.replay import workload_from_snapshots
from ksmtrace.fingerprint.hashing import load_seed
from ksmtrace.fingerprint.recorder import Recorder, RecordOptions
from ksmtrace.fingerprint.selection import Selection
from ksmtrace.fingerprint.snapfile import read_snapshot
from ksmtrace.hostpaths import HostPaths
from ksmtrace.kernel.jiffies import host_hz
from ksmtrace.kernel.sysfs import KnobGuard
from ksmtrace.whatif.series import simulate

PATHS = HostPaths()


TEST_PROFILE = Path("/var/tmp/ksmtrace-tests/cost-profile.json")


def host_cost(guard: KnobGuard) -> CostProfile:
    """This host's cost profile (measured and stored if there is none), with the wake-up
    latency measured again now: it follows the host's load, which other tests change."""
    # The tests keep their own profile: the host's (/var/lib/ksmtrace) is the user's.
    profile = load_profile(TEST_PROFILE)
    if profile is None or profile.kernel != os.uname().release or not profile.tracer_corrected:
        profile = measure_cost(guard, PATHS)
        profile.save(TEST_PROFILE)
    return measure_wake_latency(guard, profile, PATHS)


@dataclass(slots=True)
class Curve:
    """Savings (pages_sharing + ksm_zero_pages) and ksmd's CPU over seconds since run=1."""

    t_s: np.ndarray
    sharing: np.ndarray
    saved: np.ndarray
    cpu_ns: np.ndarray

    def cpu_share(self, last_fraction: float = 0.5) -> float:
        """ksmd's CPU (fraction of one CPU) over the last part of the window."""
        keep = np.flatnonzero(self.t_s >= self.t_s[-1] * (1 - last_fraction))
        i, j = keep[0], keep[-1]
        return float(self.cpu_ns[j] - self.cpu_ns[i]) / 1e9 / float(self.t_s[j] - self.t_s[i])

    def steady(self, last_fraction: float = 0.2) -> tuple[float, float]:
        """Mean pages_sharing and mean saving over the last part of the window."""
        keep = self.t_s >= self.t_s[-1] * (1 - last_fraction)
        return float(self.sharing[keep].mean()), float(self.saved[keep].mean())

    def t90(self) -> float:
        """Seconds until the saving first reached 90 % of its steady value (interpolated)."""
        target = 0.9 * self.steady()[1]
        i = int(np.flatnonzero(self.saved >= target)[0])
        if i == 0:
            return float(self.t_s[0])
        s0, s1 = self.saved[i - 1], self.saved[i]
        return float(self.t_s[i - 1] + (target - s0) / (s1 - s0) * (self.t_s[i] - self.t_s[i - 1]))


@dataclass(slots=True)
class Comparison:
    kernel: Curve
    engine: Curve
    pages: int

    @property
    def sharing_error(self) -> float:
        k, e = self.kernel.steady()[0], self.engine.steady()[0]
        return abs(e - k) / k

    @property
    def cpu_error(self) -> float:
        k, e = self.kernel.cpu_share(), self.engine.cpu_share()
        return abs(e - k) / k

    @property
    def t90_error(self) -> float:
        k, e = self.kernel.t90(), self.engine.t90()
        return abs(e - k) / k

    def describe(self) -> str:
        k, e = self.kernel, self.engine
        return (
            f"{self.pages} pages: pages_sharing kernel {k.steady()[0]:.0f} engine "
            f"{e.steady()[0]:.0f} ({100 * self.sharing_error:.1f}%), t90 kernel {k.t90():.2f}s "
            f"engine {e.t90():.2f}s ({100 * self.t90_error:.1f}%), ksmd CPU kernel "
            f"{100 * k.cpu_share():.2f}% engine {100 * e.cpu_share():.2f}% "
            f"({100 * self.cpu_error:.0f}%)"
        )


def record_and_replay(
    guard: KnobGuard,
    cost: CostProfile,
    pids: list[int],
    knobs: dict[str, int],
    window_s: float,
    out: Path,
    interval_s: float = 0.25,
    during: Callable[[], None] | None = None,
) -> Comparison:
    """Record ``pids`` (and every other mergeable process) while KSM runs, then replay.

    KSM must be stopped (run=0, unmerged) and the processes ready, with ``cost`` measured
    just before. ``knobs`` are set, one frame is recorded, run=1 is written and frames
    follow for ``window_s`` seconds.
    """
    for name, value in knobs.items():
        guard.set(name, value)
    options = RecordOptions(
        interval_s=interval_s, duration_s=window_s, counter_interval_s=0.02, seed=load_seed(None)
    )
    selection = Selection(pids=tuple(pids), all_mergeable=True)
    with Recorder(out, selection, options, PATHS, progress=None) as rec:
        rec.frame()
        time.sleep(0.05)
        guard.set("run", 1)
        if during is not None:
            during()
        rec.run()
    guard.set("run", 0)
    snap = read_snapshot(out)
    workload, recording = workload_from_snapshots([snap], np.random.default_rng(1))
    run_change = [t for t, name, value in workload.knob_changes if name == "run" and value == 1]
    assert run_change, "the recording missed the run=1 write"
    t_run = run_change[0]
    samples = [s for s in recording.samples if s["t_ns"] >= t_run]
    t = np.array([(s["t_ns"] - t_run) / 1e9 for s in samples])
    sharing = np.array([int(s["ksm"]["pages_sharing"]) for s in samples])
    zero = np.array([int(s["ksm"].get("ksm_zero_pages", 0)) for s in samples])
    cpu = np.array([int(s["ksmd_cpu_ns"]) for s in samples], dtype=np.float64)
    kernel = Curve(t, sharing, (sharing + zero).astype(float), cpu)
    base = from_sysfs(recording.knobs, host_hz(PATHS))
    series = simulate(workload, base, cost, t_run / 1e9 + t[-1], 0.02)
    keep = series.t_s >= t_run / 1e9
    st = series.t_s[keep] - t_run / 1e9
    engine = Curve(
        st,
        series.sharing[keep],
        (series.sharing + series.zero_pages)[keep].astype(float),
        series.cpu_ns[keep].astype(np.float64),
    )
    return Comparison(kernel, engine, workload.n_pages)
