"""Recording a snapshot: fingerprint frames at an interval plus KSM counters in between."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ksmtrace import __version__
from ksmtrace.engine.cost import load_profile
from ksmtrace.fingerprint.hashing import salt_id
from ksmtrace.fingerprint.reader import F_KSM, Fingerprinter, ProcessPages
from ksmtrace.fingerprint.selection import Selection, read_uid
from ksmtrace.fingerprint.snapfile import SnapshotWriter
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import resolve_identity
from ksmtrace.kernel import procfs, sysfs
from ksmtrace.kernel.jiffies import host_hz


@dataclass(frozen=True, slots=True)
class RecordOptions:
    """How often and how long to record.

    Attributes:
        interval_s: Seconds between the starts of two frames.
        count: Frames to record (None: until ``duration_s`` or Ctrl-C).
        duration_s: Seconds to record (None: until ``count`` or Ctrl-C).
        counter_interval_s: Seconds between two reads of /sys/kernel/mm/ksm.
        seed: xxh3 seed of the fingerprints.
    """

    interval_s: float = 1.0
    count: int | None = None
    duration_s: float | None = None
    counter_interval_s: float = 0.1
    seed: int = 0


def kpf_ksm_reliable(pages: list[ProcessPages], merging_pages: int) -> bool:
    """Whether /proc/kpageflags' KPF_KSM can be trusted on this kernel.

    Kernels from 6.10-rc1 until the 2026 fix set KPF_KSM on every anonymous page
    (KSM-INTERNALS.md §4.4). A mapping flagged KSM is one of the processes' merging pages,
    so many more flagged pages than merging pages means the flag is broken.
    """
    flagged = sum(int(((p.flags & F_KSM) != 0).sum()) for p in pages)
    return flagged <= 1.05 * merging_pages + 64


class CounterSampler:
    """Reads /sys/kernel/mm/ksm, cow_ksm and ksmd's CPU on a thread at a fixed interval."""

    def __init__(self, paths: HostPaths, interval_s: float) -> None:
        self.paths = paths
        self.interval_s = interval_s
        self.ksmd = procfs.find_ksmd(paths)
        self._lock = threading.Lock()
        self._samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ksmtrace-counters", daemon=True)

    def sample(self) -> dict[str, Any]:
        """One sample now."""
        t = time.monotonic_ns()
        cpu = procfs.read_schedstat_ns(self.paths, self.ksmd) if self.ksmd else None
        return {
            "t_ns": t,
            "ksm": sysfs.read_ksm_sysfs(self.paths),
            "cow_ksm": procfs.read_vmstat_ksm(self.paths).get("cow_ksm", 0),
            "ksmd_cpu_ns": -1 if cpu is None else cpu,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            s = self.sample()
            with self._lock:
                self._samples.append(s)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def take(self) -> list[dict[str, Any]]:
        """Samples taken since the last call."""
        with self._lock:
            out, self._samples = self._samples, []
        return out

    def stop(self) -> None:
        """Stop sampling (one last sample is taken)."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._samples.append(self.sample())


def _identity(paths: HostPaths, pid: int) -> dict[str, Any]:
    ident = resolve_identity(paths, pid)
    data: dict[str, Any] = dataclasses.asdict(ident) if ident else {"pid": pid}
    data["uid"] = read_uid(paths, pid)
    return data


def header(paths: HostPaths, selection: Selection, options: RecordOptions) -> dict[str, Any]:
    """Provenance of a new snapshot: host, kernel, HZ, salt id, knobs, cost profile."""
    profile = load_profile()
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "kernel": os.uname().release,
        "hz": host_hz(paths),
        "page_size": procfs.page_size(),
        "hash": "xxh3_64",
        "salt_id": salt_id(options.seed),
        "ksmtrace": __version__,
        "clock": "CLOCK_MONOTONIC",
        "t0_ns": time.monotonic_ns(),
        "selection": selection.describe(),
        "interval_s": options.interval_s,
        "count": options.count,  # frames asked for: a reader of a cut file knows how many
        "counter_interval_s": options.counter_interval_s,
        "knobs": {k: v for k, v in sysfs.read_ksm_sysfs(paths).items() if k in sysfs.KNOBS},
        "cost_profile": None if profile is None else dataclasses.asdict(profile),
    }


class Recorder:
    """Writes a snapshot: call :meth:`run` (or :meth:`frame` yourself) inside ``with``."""

    def __init__(
        self,
        path: Path,
        selection: Selection,
        options: RecordOptions,
        paths: HostPaths | None = None,
        progress: TextIO | None = sys.stderr,
    ) -> None:
        self.paths = paths or HostPaths.from_env()
        self.selection = selection
        self.options = options
        self.progress = progress
        selection.resolve(self.paths, first=True)
        self.fingerprinter = Fingerprinter(options.seed, self.paths.proc)
        self.writer = SnapshotWriter(path, header(self.paths, selection, options))
        self.sampler = CounterSampler(self.paths, options.counter_interval_s)
        self._known: set[int] = set()
        self.pages_last = 0
        self.pages_total = 0
        self.bytes_written = 0

    def __enter__(self) -> Recorder:
        self.sampler.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.sampler.stop()
        self.writer.counters(self.sampler.take())
        self.writer.close()
        self.fingerprinter.close()
        if exc_type is not None and exc_type is not KeyboardInterrupt and not self.writer.frames:
            # Failed before the first frame: a file without frames only misleads.
            self.writer.path.unlink(missing_ok=True)

    def frame(self) -> list[ProcessPages]:
        """Fingerprint every selected process once and append the frame."""
        pids = self.selection.resolve(self.paths)
        t_start = time.monotonic_ns()
        done = [0]
        last = [time.monotonic()]
        expected = max(1, self.pages_last)

        def tick(n: int) -> None:
            done[0] += n
            if self.progress and time.monotonic() - last[0] > 1.0:
                last[0] = time.monotonic()
                pct = min(99, 100 * done[0] // expected)
                print(f"  ... {done[0]:,} pages ({pct}%)", file=self.progress, flush=True)

        pages: list[ProcessPages] = []
        stats: dict[str, Any] = {}
        idents: dict[str, Any] = {}
        for pid in pids:
            pp = self.fingerprinter.process(pid, tick)
            if pp is None:
                continue
            pages.append(pp)
            st = procfs.read_ksm_stat(self.paths, pid)
            if st is not None:
                stats[str(pid)] = dataclasses.asdict(st)
            if pid not in self._known:
                self._known.add(pid)
                idents[str(pid)] = _identity(self.paths, pid)
        t_end = time.monotonic_ns()
        merging = sum(int(s["merging_pages"]) for s in stats.values())
        meta = {
            "t_start_ns": t_start,
            "t_end_ns": t_end,
            "ksm_stat": stats,
            "identities": idents,
            "kpf_ksm_reliable": kpf_ksm_reliable(pages, merging),
        }
        self.writer.counters(self.sampler.take())
        self.writer.frame((t_start + t_end) // 2, pages, meta)
        self.pages_last = sum(p.pages for p in pages)
        self.pages_total += self.pages_last
        return pages

    def run(self, on_frame: Callable[[int, list[ProcessPages], float], None] | None = None) -> int:
        """Record frames until ``count``/``duration`` (or KeyboardInterrupt); returns frames."""
        opts = self.options
        start = time.monotonic()
        k = 0
        while True:
            t0 = time.monotonic()
            pages = self.frame()
            k += 1
            if on_frame is not None:
                on_frame(k, pages, time.monotonic() - t0)
            if opts.count is not None and k >= opts.count:
                return k
            next_t = start + k * opts.interval_s
            if opts.duration_s is not None and next_t - start > opts.duration_s:
                return k
            time.sleep(max(0.0, next_t - time.monotonic()))
