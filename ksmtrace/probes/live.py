"""The live event source: attaches the probe set and yields one Tick per interval."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ksmtrace.errors import HostError, KsmtraceError
from ksmtrace.estimates import run2_unmerges
from ksmtrace.events import Event, EventBatch, EventKind, HostSample, ProcessKsm, Tick, UnmergeKind
from ksmtrace.faults import effective_uid
from ksmtrace.hostpaths import HostPaths
from ksmtrace.identity import IdentityCache
from ksmtrace.kernel import procfs, sysfs
from ksmtrace.kernel.btf import Btf
from ksmtrace.kernel.headers import require_header_tree
from ksmtrace.kernel.kallsyms import symbol_range
from ksmtrace.kernel.offsets import KernelLayout, resolve_layout
from ksmtrace.kernel.taskstats import TaskCpuReader
from ksmtrace.private_files import make_private_dir, open_private
from ksmtrace.probes import calibrate
from ksmtrace.probes.bcc_adapter import BccProgram
from ksmtrace.probes.program import (
    UNMERGE_BY_SYSCALL,
    PageTables,
    ProgramConfig,
    Stat,
    render_main,
)
from ksmtrace.probes.scan_sampling import ScanShares

LOCK_HELPER = "__mmap_lock_do_trace_acquire_returned"
#: The raw tracepoint the scan-cost probe (``scan_lock``) is attached to, when it is.
SCAN_TRACEPOINT = "mmap_lock_acquire_returned"
#: An unshare run (MADV_UNMERGEABLE, PR_SET_MEMORY_MERGE=0) that allocated nothing for this
#: long is finished: unsharing loops over the pages without pause.
UNSHARE_IDLE_NS = 50_000_000
#: How often the merge-time map is cleared of entries of processes that have exited.
GC_INTERVAL_NS = 30_000_000_000
#: Identities of processes not seen for this long are forgotten (pids get reused).
IDENTITY_TTL_S = 600.0


@dataclass(slots=True)
class LiveOptions:
    """Knobs of the live probe set.

    Attributes:
        merged_max: how many merged pages to remember for lifetimes.
        ringbuf_pages: ring buffer size in pages.
        page_walk: check write faults against the page table (exact COW counts); when False
            or when calibration fails, a write to a remembered merged page counts as a COW.
        debug_dir: where to write the rendered program and compiler output.
        scan_cost: "exact" (pages scanned and ksmd CPU per process traced all the time),
            "sampled" (traced one interval in ``sample_every``, estimated in between: far
            less overhead for ksmd and mmap-heavy programs) or "off".
        sample_every: in "sampled" mode, trace one interval in this many.
    """

    merged_max: int = 262144
    ringbuf_pages: int = 2048
    page_walk: bool = True
    debug_dir: Path | None = None
    scan_cost: str = "exact"
    sample_every: int = 10


@dataclass(slots=True)
class ProbeState:
    """What the probe set is doing, for doctor, the summary and exporter self-metrics."""

    page_tables: PageTables | None = None
    page_walk_note: str = ""
    header_origin: str = ""
    ksmd_pid: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    lost_total: dict[int, int] = field(default_factory=dict)
    scan_cost: str = "exact"


def require_root() -> None:
    """Raise a HostError unless running as root (BPF and kallsyms addresses need it)."""
    if effective_uid() != 0:
        raise HostError(
            "live tracing needs root (BPF and kallsyms addresses): run with sudo, "
            "or use 'ksmtrace replay' on a recorded trace"
        )


class LiveSource:
    """Kernel-side probes plus counter sampling, as a stream of :class:`Tick` objects."""

    def __init__(self, paths: HostPaths | None = None, options: LiveOptions | None = None):
        self.paths = paths or HostPaths.from_env()
        self.options = options or LiveOptions()
        self.state = ProbeState()
        self.identities = IdentityCache(self.paths)
        self._prog: BccProgram | None = None
        self._chunks: list[bytes] = []
        self._cpu = TaskCpuReader(self.paths)
        self._lost_seen: list[int] = []
        self._last_sample: HostSample | None = None
        self._pruned = 0
        self._scan_attached = False
        self._shares = ScanShares()
        self._scan_check: tuple[int, int, bool, bool] | None = None
        self._site_resets = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Resolve the kernel's layout, calibrate, compile and attach. Idempotent."""
        if self._prog is not None:
            return
        # What the host lacks is said before what the user lacks (root).
        if not sysfs.ksm_available(self.paths):
            sysfs.read_ksm_sysfs(self.paths)  # raises the one-line KSM-absent error
        ksmd = procfs.find_ksmd(self.paths)
        if ksmd is None:
            raise HostError("no ksmd kernel thread found: this kernel runs without KSM")
        layout = resolve_layout(Btf.load(self.paths.btf_vmlinux))
        require_root()
        tree = require_header_tree()
        self.state.header_origin = tree.origin
        self.state.ksmd_pid = ksmd
        try:
            tables = self._page_tables(layout, tree.path)
            cfg = ProgramConfig(
                ksmd_pid=ksmd,
                layout=layout,
                lock_helper=symbol_range(self.paths, LOCK_HELPER),
                page_tables=tables,
                merged_max=self.options.merged_max,
                ringbuf_pages=self.options.ringbuf_pages,
            )
            text = render_main(cfg)
            log = None
            if self.options.debug_dir is not None:
                self.options.debug_dir.mkdir(exist_ok=True)
                (self.options.debug_dir / "ksmtrace.rendered.c").write_text(text)
                log = self.options.debug_dir / "bcc.log"
            self._prog = BccProgram(text, kernel_source=tree.path, debug_log=log)
            self._prog.open_ring_buffer("events", self._chunks.append)
            self._preload_scan_site()
            self.state.scan_cost = self.options.scan_cost
            if self.options.scan_cost != "off":
                self._attach_scan_probe()
            self._lost_seen = self._prog.array_u64("lost")
            self._last_sample = self.sample()
            self._update_zero_pages_flag(self._last_sample)
            self._check_scan_site(self._last_sample)
        except BaseException:
            self.close()
            raise

    def _page_tables(self, layout: KernelLayout, kernel_source: Path | None) -> PageTables | None:
        if not self.options.page_walk:
            self.state.page_walk_note = "disabled by option"
            return None
        try:
            tables = calibrate.page_tables(self.paths, layout, kernel_source)
        except KsmtraceError as exc:
            self.state.page_walk_note = f"unavailable ({exc})"
            return None
        self.state.page_tables = tables
        self.state.page_walk_note = "COW faults checked against the page table"
        return tables

    def close(self) -> None:
        """Detach all probes and remember the scan-site calibration for the next run."""
        if self._prog is not None:
            self._save_scan_site()
            self._prog.close()
            self._prog = None
        self._cpu.close()

    def __enter__(self) -> LiveSource:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- scan-site calibration cache -----------------------------------------------------

    def _scan_cache(self) -> Path:
        return calibrate.CACHE_DIR / "scansite.json"

    def _preload_scan_site(self) -> None:
        assert self._prog is not None
        try:
            data = json.loads(self._scan_cache().read_text())
        except (OSError, ValueError):
            return
        if (
            data.get("boot_id") != calibrate.boot_id(self.paths)
            or data.get("ksmd_pid") != self.state.ksmd_pid
        ):
            return
        self._prog.set_array_struct(
            "scancfg",
            {"slot_addr": int(data["slot_addr"]), "site_ret": int(data["site_ret"]), "state": 2},
        )

    def _save_scan_site(self) -> None:
        assert self._prog is not None
        cfg = self._prog.array_struct("scancfg")
        if cfg.get("state") != 2:
            return
        try:
            make_private_dir(calibrate.CACHE_DIR)
            with open_private(self._scan_cache(), "w") as f:
                json.dump(
                    {
                        "boot_id": calibrate.boot_id(self.paths),
                        "ksmd_pid": self.state.ksmd_pid,
                        "slot_addr": cfg["slot_addr"],
                        "site_ret": cfg["site_ret"],
                    },
                    f,
                )
        except OSError:
            pass

    @property
    def scan_site_ready(self) -> bool:
        """Whether ksmd's scan site is recognised (pages scanned per process are exact)."""
        return self._prog is not None and self._prog.array_struct("scancfg").get("state") == 2

    # -- sampling -------------------------------------------------------------------------

    def sample(self) -> HostSample:
        """Read every process's ksm_stat, sysfs, ksmd CPU and vmstat, in that order.

        The fast global counters come last, right before the caller drains the events, so
        that events and counters cover nearly the same moment (the cow_ksm ledger).
        """
        procs = {
            pid: ProcessKsm(
                pid=pid,
                rmap_items=st.rmap_items,
                zero_pages=st.zero_pages,
                merging_pages=st.merging_pages,
                process_profit=st.process_profit,
                mergeable=st.mergeable,
                merge_any=st.merge_any,
            )
            for pid, st in procfs.list_ksm_processes(self.paths).items()
        }
        ksm = sysfs.read_ksm_sysfs(self.paths)
        cpu = self._cpu.read(self.state.ksmd_pid) if self.state.ksmd_pid else None
        now = time.monotonic_ns()
        vmstat = procfs.read_vmstat_ksm(self.paths)
        return HostSample(
            now, ksm, vmstat, cpu.run_ns if cpu else -1, procs, procfs.page_size(), time.time_ns()
        )

    def drain(self, settle_ns: int = UNSHARE_IDLE_NS) -> EventBatch:
        """Every event delivered so far, in arrival order, then finished explicit unmerges.

        Args:
            settle_ns: an unshare run counts as finished once idle this long (0: report
                every run now, e.g. when tracing ends).
        """
        if self._prog is None:
            return EventBatch()
        self._prog.consume()
        chunks, self._chunks[:] = list(self._chunks), []
        batch = EventBatch.from_bytes(b"".join(chunks))
        unshares = self._harvest_unshares(settle_ns)
        return EventBatch.concat([batch, unshares]) if len(unshares) else batch

    def _harvest_unshares(self, settle_ns: int) -> EventBatch:
        """UNMERGE events for unshare runs (bpf ``unshares`` map) idle for ``settle_ns``."""
        assert self._prog is not None
        now = time.monotonic_ns()
        done = [
            (k, v)
            for k, v in self._prog.hash_entries("unshares")
            if now - int(v["last_ns"]) >= settle_ns
        ]
        if not done:
            return EventBatch()
        self._prog.hash_delete_keys("unshares", [k for k, _ in done])
        return EventBatch.from_events(
            [
                Event(
                    kind=EventKind.UNMERGE,
                    ts_ns=int(v["last_ns"]),
                    pid=int(v["pid"]),
                    mm=int(v["mm"]),
                    value=int(v["pages"]),
                    value2=int(v["zero_pages"]),
                    tid=int(k.value),
                    err=int(v["nr"]),
                    flags=int(UNMERGE_BY_SYSCALL.get(int(v["nr"]), UnmergeKind.OTHER)),
                )
                for k, v in done
            ]
        )

    def _lost_delta(self) -> dict[int, int]:
        assert self._prog is not None
        now = self._prog.array_u64("lost")
        pairs = enumerate(zip(now, self._lost_seen, strict=False))
        delta = {i: n - o for i, (n, o) in pairs if n != o}
        self._lost_seen = now
        for k, v in delta.items():
            self.state.lost_total[k] = self.state.lost_total.get(k, 0) + v
        return delta

    def collect_garbage(self) -> int:
        """Forget the merge times of pages of processes that have left KSM.

        The kernel-side map of merge times only loses an entry when its page is written; the
        pages of exited processes would otherwise fill it. Returns entries removed.
        """
        assert self._prog is not None
        gone = self._prog.hash_u64("exited")
        if not gone:
            return 0
        removed = self._prog.prune_by_mm("merged", gone)
        # Entries merged before an exit are gone now; keep the exit times only briefly, for
        # COWs racing with this collection.
        now = time.monotonic_ns()
        self._prog.hash_delete_u64("exited", [mm for mm, t in gone.items() if now - t > 5e9])
        self._pruned += removed
        return removed

    def remembered_merges(self) -> dict[int, int]:
        """Pages whose merge time the kernel side remembers, per mm (for lifetimes)."""
        assert self._prog is not None
        return self._prog.count_by_mm("merged")

    def refresh_stats(self) -> dict[str, int]:
        """Self-metrics of the probe set (see :class:`Stat`)."""
        if self._prog is not None:
            values = self._prog.array_u64("stats")
            self.state.stats = {s.name.lower(): values[s.value] for s in Stat}
            self.state.stats["scan_site_ready"] = int(self.scan_site_ready)
            self.state.stats["merged_pruned"] = self._pruned
            self.state.stats["scan_site_resets"] = self._site_resets
        return self.state.stats

    def _attach_scan_probe(self) -> None:
        assert self._prog is not None
        if self._scan_attached:
            return
        # A fresh run: CPU and pages since the last detach belong to nobody in particular.
        self._prog.set_array_struct("run", {"mm": 0, "pages": 0, "ns": 0, "last_runtime": 0})
        self._prog.attach_raw_tracepoint(SCAN_TRACEPOINT, "scan_lock")
        self._scan_attached = True

    def _detach_scan_probe(self) -> None:
        assert self._prog is not None
        if self._scan_attached:
            self._prog.detach_raw_tracepoint(SCAN_TRACEPOINT)
            self._scan_attached = False
            # Forget the run in flight, or ksm_stop_scan would report it while detached.
            self._prog.set_array_struct("run", {"mm": 0, "pages": 0, "ns": 0, "last_runtime": 0})

    def _check_scan_site(self, sample: HostSample) -> None:
        """Keep the scan-site recognition honest against the kernel's pages_scanned.

        Scan-site locks are one per page scanned plus one per mm per pass; if a whole
        traced interval shows something else, the learned site is wrong (a stale cache, or
        a vote misled by lock contention): forget it and learn again.
        """
        assert self._prog is not None
        sleep = sample.ksm.get("sleep_millisecs")
        gap = int(sleep) * 800_000 if isinstance(sleep, int) and sleep >= 2 else 0
        self._prog.set_array_u64("min_gap", gap)
        locks = self._prog.array_u64("stats")[Stat.SCAN_LOCKS]
        now = (locks, sample.counter("pages_scanned"), self._scan_attached, self.scan_site_ready)
        before, self._scan_check = self._scan_check, now
        if before is None or not (before[2] and before[3] and now[3]):
            return
        d_locks, d_pages = now[0] - before[0], now[1] - before[1]
        if d_pages >= 2000 and not 0.5 <= d_locks / d_pages <= 2.0:
            self._prog.set_array_struct(
                "scancfg",
                {"slot_addr": 0, "site_ret": 0, "cand_slot": 0, "cand_ret": 0, "votes": 0,
                 "state": 0},
            )  # fmt: skip
            self._scan_cache().unlink(missing_ok=True)
            self._scan_check = None
            self._site_resets += 1

    def _update_zero_pages_flag(self, sample: HostSample) -> None:
        # Zeroed allocations matter only while KSM zero pages can exist (mm_page_alloc).
        assert self._prog is not None
        possible = sample.ksm.get("use_zero_pages") == 1 or sample.counter("ksm_zero_pages") > 0
        self._prog.set_array_u64("zero_pages_possible", int(possible))

    def _scan_cost(
        self, k: int, batch: EventBatch, prev: HostSample, cur: HostSample
    ) -> EventBatch:
        """Apply the sampled-mode schedule after interval ``k``; estimated SCAN events."""
        if self.options.scan_cost != "sampled":
            return batch
        traced = self._scan_attached
        every = max(1, self.options.sample_every)
        # The first interval is traced (attached at start), then one in ``every``.
        if (k + 1) % every == 0:
            self._attach_scan_probe()
        elif traced:
            # Detach first, then take what the probe delivered since the drain: the next
            # interval is estimated and must hold no measured scanning.
            self._detach_scan_probe()
            batch = EventBatch.concat([batch, self.drain(settle_ns=UNSHARE_IDLE_NS)])
        if traced:
            self._shares.learn(batch)
            return batch
        estimated = self._shares.estimate(prev, cur)
        return EventBatch.concat([batch, EventBatch.from_events(estimated)]) if estimated else batch

    def ticks(self, interval_s: float, duration_s: float | None = None) -> Iterator[Tick]:
        """Yield one Tick every ``interval_s`` seconds until ``duration_s`` has passed.

        The first Tick also holds every event not drained since the probes were attached
        (or since the previous tick); its ``previous`` sample is the last one taken.
        """
        self.start()
        assert self._prog is not None
        prev = self._last_sample or self.sample()
        start = time.monotonic_ns()
        interval_ns = int(interval_s * 1e9)
        end = None if duration_s is None else start + int(duration_s * 1e9)
        t_next = start + interval_ns
        next_gc = start + GC_INTERVAL_NS
        k = 0
        while True:
            while (now := time.monotonic_ns()) < t_next:
                self._prog.poll(max(1, min(100, (t_next - now) // 1_000_000)))
            sample = self.sample()
            batch = self.drain()  # right after the counters (see sample())
            if now >= next_gc:
                self.collect_garbage()
                self.identities.forget_older_than(IDENTITY_TTL_S)
                next_gc = now + GC_INTERVAL_NS
            estimated = run2_unmerges(prev, sample)
            if estimated:
                batch = EventBatch.concat([batch, EventBatch.from_events(estimated)])
            batch = self._scan_cost(k, batch, prev, sample)
            self._update_zero_pages_flag(sample)
            self._check_scan_site(sample)
            k += 1
            pids = {int(p) for p in batch.records["pid"]} | set(sample.processes)
            idents = {pid: self.identities.get(pid) for pid in pids if pid}
            self.refresh_stats()
            yield Tick(prev.ts_ns, sample.ts_ns, batch, sample, self._lost_delta(), idents, prev)
            prev = self._last_sample = sample
            if end is not None and t_next >= end:
                return
            t_next += interval_ns


def events_of(tick: Tick, kind: EventKind) -> int:
    """Number of events of one kind in a tick (convenience for callers and tests)."""
    return len(tick.events.of_kind(kind))
