"""Reproducible synthetic workloads: duplicate, zero and unique pages with writes over time.

Every random draw comes from the ``numpy.random.Generator`` passed in, so a seed fixes
the whole stream. Content ids: 0 is the zero page, then the shared pools, then one fresh
id per unique page and per write.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.workload import ProcessSpec, Workload
from ksmtrace.errors import UsageError
from ksmtrace.events import ProcessIdentity

SECOND = 1_000_000_000
#: Synthetic processes get pids from here on.
FIRST_PID = 100_000


@dataclass(frozen=True, slots=True)
class SyntheticProcess:
    """One simulated process and what its mergeable memory holds.

    Attributes:
        name: comm of the process.
        pages: Size of its mergeable region in pages.
        duplicate_fraction: Share of pages whose content comes from the shared pool.
        zero_fraction: Share of zero-filled pages.
        pool: Distinct contents in the pool (processes with the same ``pool_id`` share it).
        pool_id: Which pool.
        write_rate: Writes per second per page, for pages in the hot set (Poisson).
        hot_fraction: Share of pages that get writes.
        restore_after_s: A written page gets its original content back after this long
            (None: it keeps the written, unique content).
        register_s: When it registers with KSM.
        exit_s: When it exits (None: never).
        thp: Its region is backed by transparent huge pages.
        tenant: Tenant name (for same-tenant-only what-ifs).
        fork_of: Name of the process it is forked from at ``register_s`` (None: not forked).
    """

    name: str
    pages: int
    duplicate_fraction: float = 0.5
    zero_fraction: float = 0.0
    pool: int = 64
    pool_id: int = 0
    write_rate: float = 0.0
    hot_fraction: float = 1.0
    restore_after_s: float | None = None
    register_s: float = 0.0
    exit_s: float | None = None
    thp: bool = False
    tenant: str = ""
    fork_of: str | None = None

    def check(self) -> None:
        """Raise UsageError for impossible parameters."""
        fractions = (self.duplicate_fraction, self.zero_fraction, self.hot_fraction)
        if self.pages < 1 or any(not 0.0 <= f <= 1.0 for f in fractions):
            raise UsageError(f"synthetic process {self.name}: pages >= 1, fractions in [0, 1]")
        if self.duplicate_fraction + self.zero_fraction > 1.0:
            raise UsageError(f"synthetic process {self.name}: duplicate + zero fractions > 1")
        if self.pool < 1 or self.write_rate < 0:
            raise UsageError(f"synthetic process {self.name}: pool >= 1, write_rate >= 0")


class _Ids:
    """Hands out content ids: 0 = zero page, then pools, then fresh unique ids."""

    def __init__(self, procs: list[SyntheticProcess]) -> None:
        self.pool_base: dict[int, int] = {}
        nxt = 1
        for p in procs:
            if p.pool_id not in self.pool_base:
                self.pool_base[p.pool_id] = nxt
                nxt += max(q.pool for q in procs if q.pool_id == p.pool_id)
        self.next = nxt

    def fresh(self, n: int) -> npt.NDArray[np.uint32]:
        ids = np.arange(self.next, self.next + n, dtype=np.uint32)
        self.next += n
        return ids


def _initial(p: SyntheticProcess, ids: _Ids, rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    n_dup = int(round(p.pages * p.duplicate_fraction))
    n_zero = int(round(p.pages * p.zero_fraction))
    content = np.empty(p.pages, dtype=np.uint32)
    content[:n_dup] = ids.pool_base[p.pool_id] + rng.integers(0, p.pool, size=n_dup)
    content[n_dup : n_dup + n_zero] = 0
    content[n_dup + n_zero :] = ids.fresh(p.pages - n_dup - n_zero)
    return content[rng.permutation(p.pages)]


def _writes(
    p: SyntheticProcess,
    base: int,
    original: npt.NDArray[np.uint32],
    duration_s: float,
    ids: _Ids,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    hot = int(round(p.pages * p.hot_fraction))
    start = p.register_s
    end = duration_s if p.exit_s is None else min(duration_s, p.exit_s)
    if p.write_rate <= 0 or hot == 0 or end <= start:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint32)
    n = int(rng.poisson(p.write_rate * hot * (end - start)))
    t = rng.uniform(start, end, size=n)
    page = rng.integers(0, hot, size=n)
    value = ids.fresh(n)
    if p.restore_after_s is not None:
        t_back = t + p.restore_after_s
        keep = t_back < end
        t = np.concatenate([t, t_back[keep]])
        page = np.concatenate([page, page[keep]])
        value = np.concatenate([value, original[page[:n][keep]]])
    return (t * SECOND).astype(np.int64), page.astype(np.int64) + base, value


def generate(
    processes: list[SyntheticProcess], duration_s: float, rng: np.random.Generator
) -> Workload:
    """Build a workload from process descriptions.

    Args:
        processes: What each process holds and does; order = registration order.
        duration_s: Length of the workload.
        rng: The only source of randomness (e.g. ``np.random.default_rng(42)``).

    Returns:
        The workload, with writes (and restores) as time-ordered content changes.

    Raises:
        UsageError: invalid parameters.
    """
    if not processes:
        raise UsageError("a synthetic workload needs at least one process")
    for p in processes:
        p.check()
    names = [p.name for p in processes]
    ids = _Ids(processes)
    sizes = np.array([p.pages for p in processes], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    contents, addrs, thp, specs = [], [], [], []
    ch_t, ch_p, ch_v = [], [], []
    for i, p in enumerate(processes):
        parent = names.index(p.fork_of) if p.fork_of else None
        if parent is not None and processes[parent].pages != p.pages:
            raise UsageError(f"{p.name} is forked from {p.fork_of}: it needs the same size")
        content = (
            np.full(p.pages, 0xFFFFFFFF, dtype=np.uint32)
            if parent is not None
            else _initial(p, ids, rng)
        )
        contents.append(content)
        addrs.append(np.arange(0x7F0000000, 0x7F0000000 + p.pages, dtype=np.uint64))
        thp.append(np.full(p.pages, int(p.thp), dtype=np.uint8))
        original = contents[parent] if parent is not None else content
        t, page, value = _writes(p, int(starts[i]), original, duration_s, ids, rng)
        ch_t.append(t)
        ch_p.append(page)
        ch_v.append(value)
        specs.append(
            ProcessSpec(
                pid=FIRST_PID + i,
                identity=ProcessIdentity(FIRST_PID + i, comm=p.name),
                register_ns=register_s_ns(p.register_s),
                exit_ns=None if p.exit_s is None else int(p.exit_s * SECOND),
                fork_parent=parent,
                tenant=p.tenant or p.name,
            )
        )
    t_all = np.concatenate(ch_t)
    order = np.argsort(t_all, kind="stable")
    return Workload(
        processes=specs,
        starts=starts,
        ends=ends,
        addr=np.concatenate(addrs),
        content=np.concatenate(contents),
        thp=np.concatenate(thp),
        is_zero=(np.arange(ids.next) == 0).astype(np.uint8),
        change_t=t_all[order],
        change_page=np.concatenate(ch_p)[order].astype(np.int32),
        change_value=np.concatenate(ch_v)[order].astype(np.uint32),
        duration_ns=int(duration_s * SECOND),
        origin=f"synthetic: {len(processes)} processes, {int(sizes.sum())} pages",
    )


def register_s_ns(seconds: float) -> int:
    """Seconds to integer nanoseconds."""
    return int(round(seconds * SECOND))
