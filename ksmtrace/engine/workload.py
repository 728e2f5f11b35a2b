"""What the engine replays: processes, their pages' contents over time, and knob changes.

A :class:`Workload` is built from snapshot files (:mod:`ksmtrace.engine.replay`) or by the
synthetic generator (:mod:`ksmtrace.engine.synthetic`). Contents are dense ids (one per
distinct page fingerprint), so the engine's trees are indexed by content directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.layout import NOT_PRESENT
from ksmtrace.errors import UsageError
from ksmtrace.events import ProcessIdentity


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """One mm the workload contains.

    Attributes:
        pid: Process id (as recorded, or synthetic).
        identity: Who the process is (comm, VM, container...).
        register_ns: When it registers with KSM (madvise/prctl); None: never on its own.
        exit_ns: When it exits, or None.
        fork_parent: Index of the process it was forked from (at ``register_ns``), or None.
        tenant: Tenant name for same-tenant-only what-ifs.
    """

    pid: int
    identity: ProcessIdentity
    register_ns: int | None = 0
    exit_ns: int | None = None
    fork_parent: int | None = None
    tenant: str = ""

    @property
    def label(self) -> str:
        """Short name of the process for tables."""
        return f"{self.identity.label}[{self.pid}]"


@dataclass(slots=True)
class Workload:
    """Processes, their page universe and every change to it, ordered for the engine.

    Pages are grouped by process (process order) and sorted by address inside each one.

    Attributes:
        processes: The mms, in the order their slots would be registered.
        starts, ends: Page index range of each process.
        addr: Virtual page number of each page (address >> 12).
        content: Content id of each page at time 0 (NOT_PRESENT if unmapped).
        thp: 1 where the page is part of a transparent huge page at time 0.
        is_zero: Per content id, 1 for the all-zero page.
        change_t, change_page, change_value: Page changes in time order (ns, page index,
            new content id or NOT_PRESENT for an unmap).
        knob_changes: (ns, knob name, value) in time order.
        duration_ns: How long the workload lasts.
        page_size: Bytes per page.
        origin: What the workload came from (for reports).
    """

    processes: list[ProcessSpec]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    addr: npt.NDArray[np.uint64]
    content: npt.NDArray[np.uint32]
    thp: npt.NDArray[np.uint8]
    is_zero: npt.NDArray[np.uint8]
    change_t: npt.NDArray[np.int64]
    change_page: npt.NDArray[np.int32]
    change_value: npt.NDArray[np.uint32]
    knob_changes: list[tuple[int, str, int | str]] = field(default_factory=list)
    duration_ns: int = 0
    page_size: int = 4096
    origin: str = ""

    @property
    def n_pages(self) -> int:
        """Tracked pages (addresses of mergeable regions ever mapped)."""
        return int(len(self.addr))

    @property
    def n_contents(self) -> int:
        """Distinct page contents."""
        return int(len(self.is_zero))

    def validate(self) -> None:
        """Check the invariants the compiled engine relies on.

        Raises:
            UsageError: the workload is inconsistent (a bug in its producer).
        """
        n = self.n_pages
        if len(self.starts) != len(self.processes) or len(self.ends) != len(self.processes):
            raise UsageError("workload: one page range per process is needed")
        if len(self.starts) and (
            self.starts[0] != 0 or self.ends[-1] != n or np.any(self.starts[1:] != self.ends[:-1])
        ):
            raise UsageError("workload: page ranges must tile the page arrays in order")
        for arr in (self.content, self.thp):
            if len(arr) != n:
                raise UsageError("workload: per-page arrays differ in length")
        present = self.content[self.content != NOT_PRESENT]
        changed = self.change_value[self.change_value != NOT_PRESENT]
        if (len(present) and present.max() >= self.n_contents) or (
            len(changed) and changed.max() >= self.n_contents
        ):
            raise UsageError("workload: content id out of range")
        if len(self.change_t) > 1 and np.any(np.diff(self.change_t) < 0):
            raise UsageError("workload: changes must be in time order")

    def subset(self, keep: list[int]) -> Workload:
        """The same workload restricted to some processes (by index), pages renumbered."""
        parts = [np.arange(self.starts[i], self.ends[i]) for i in keep]
        pages = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        remap = np.full(self.n_pages, -1, dtype=np.int64)
        remap[pages] = np.arange(len(pages))
        sel = remap[self.change_page] >= 0
        sizes = np.array([self.ends[i] - self.starts[i] for i in keep], dtype=np.int64)
        ends = np.cumsum(sizes)
        index = {old: new for new, old in enumerate(keep)}
        procs = [_reparent(self.processes[i], index) for i in keep]
        return Workload(
            processes=procs,
            starts=ends - sizes,
            ends=ends,
            addr=self.addr[pages],
            content=self.content[pages],
            thp=self.thp[pages],
            is_zero=self.is_zero,
            change_t=self.change_t[sel],
            change_page=remap[self.change_page[sel]].astype(np.int32),
            change_value=self.change_value[sel],
            knob_changes=list(self.knob_changes),
            duration_ns=self.duration_ns,
            page_size=self.page_size,
            origin=self.origin,
        )

    def with_contents_split_by(self, groups: npt.NDArray[np.int64]) -> Workload:
        """A copy in which pages of different groups never have equal content ids.

        Args:
            groups: A group number per process (e.g. its tenant); merging can then only
                happen inside a group, which is what a same-tenant-only policy means.
        """
        page_group = np.repeat(groups, self.ends - self.starts)
        values = np.concatenate([self.content, self.change_value])
        owners = np.concatenate([page_group, page_group[self.change_page]])
        present = values != NOT_PRESENT
        keys = owners[present].astype(np.uint64) * np.uint64(self.n_contents) + values[
            present
        ].astype(np.uint64)
        uniq, inverse = np.unique(keys, return_inverse=True)
        out = values.copy()
        out[present] = inverse.astype(np.uint32)
        is_zero = self.is_zero[(uniq % np.uint64(self.n_contents)).astype(np.int64)]
        n = self.n_pages
        return Workload(
            processes=self.processes,
            starts=self.starts,
            ends=self.ends,
            addr=self.addr,
            content=out[:n],
            thp=self.thp,
            is_zero=is_zero.astype(np.uint8),
            change_t=self.change_t,
            change_page=self.change_page,
            change_value=out[n:],
            knob_changes=list(self.knob_changes),
            duration_ns=self.duration_ns,
            page_size=self.page_size,
            origin=self.origin,
        )


def renumber_for_engine(w: Workload) -> tuple[Workload, int]:
    """The same workload with content ids renumbered for the engine, and the shared count.

    Contents that two or more different pages ever hold (and the zero page) come first,
    numbered in order of first use (scan order first, so the engine's per-content tables
    are read almost sequentially); contents only one page ever holds (unique pages, most
    writes) follow. Those can never be merged, so the engine keeps no per-content state
    for them.

    Returns:
        The renumbered workload and the number of shareable contents.
    """
    n = w.n_pages
    values = np.concatenate([w.content, w.change_value])
    pages = np.concatenate([np.arange(n, dtype=np.int64), w.change_page.astype(np.int64)])
    present = values != NOT_PRESENT
    ids = values[present].astype(np.int64)
    pairs = np.unique(ids * n + pages[present]) if n else np.zeros(0, np.int64)
    holders = np.bincount(pairs // max(n, 1), minlength=w.n_contents)
    shareable = (holders >= 2) | (w.is_zero != 0)
    if any(p.fork_parent is not None for p in w.processes):
        shareable[:] = True  # fork copies pages the arrays do not show as holders
    _, first = np.unique(ids, return_index=True)
    used = ids[np.sort(first)]
    unused = np.setdiff1d(np.arange(w.n_contents), used)
    order = np.concatenate([used[shareable[used]], used[~shareable[used]], unused])
    new_of_old = np.zeros(w.n_contents, dtype=np.uint32)
    new_of_old[order] = np.arange(len(order), dtype=np.uint32)
    out = values.copy()
    out[present] = new_of_old[values[present]]
    is_zero = np.zeros(w.n_contents, dtype=np.uint8)
    is_zero[new_of_old] = w.is_zero
    renumbered = Workload(
        processes=w.processes,
        starts=w.starts,
        ends=w.ends,
        addr=w.addr,
        content=out[:n],
        thp=w.thp,
        is_zero=is_zero,
        change_t=w.change_t,
        change_page=w.change_page,
        change_value=out[n:],
        knob_changes=list(w.knob_changes),
        duration_ns=w.duration_ns,
        page_size=w.page_size,
        origin=w.origin,
    )
    return renumbered, int(np.count_nonzero(shareable[used]))


def _reparent(spec: ProcessSpec, index: dict[int, int]) -> ProcessSpec:
    if spec.fork_parent is None:
        return spec
    parent = index.get(spec.fork_parent)
    if parent is None:
        raise UsageError(f"process {spec.label} was forked from a process left out of the set")
    return ProcessSpec(spec.pid, spec.identity, spec.register_ns, spec.exit_ns, parent, spec.tenant)
