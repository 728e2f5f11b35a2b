"""Small workloads written by hand (tests, documentation examples): contents as integers.

Content labels are arbitrary integers; 0 means a zero-filled page and None an unmapped
address. Example: two processes, each with two pages of content 7 and one unique page::

    w = from_contents([[7, 7, 1], [7, 7, 2]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ksmtrace.engine.layout import NOT_PRESENT
from ksmtrace.engine.workload import ProcessSpec, Workload
from ksmtrace.errors import UsageError
from ksmtrace.events import ProcessIdentity

Label = int | None


def from_contents(
    processes: Sequence[Sequence[Label]],
    changes: Sequence[tuple[int, int, int, Label]] = (),
    *,
    register_ns: Sequence[int | None] | None = None,
    exit_ns: Sequence[int | None] | None = None,
    fork_parent: Sequence[int | None] | None = None,
    thp: Sequence[bool] | None = None,
    tenants: Sequence[str] | None = None,
    knob_changes: Sequence[tuple[int, str, int | str]] = (),
    duration_ns: int = 0,
) -> Workload:
    """Build a workload from per-process lists of content labels.

    Args:
        processes: Content label of each page, per process (page i at address i).
        changes: (time ns, process index, page index, new label or None) writes/unmaps.
        register_ns: When each process registers (default: all at 0, in list order).
        exit_ns: When each process exits (default: never).
        fork_parent: Process each one is forked from at its register time (default: none).
        thp: Whether each process's pages are transparent huge pages.
        tenants: Tenant of each process.
        knob_changes: (time ns, knob, value) writes to /sys/kernel/mm/ksm.
        duration_ns: Length of the workload.

    Returns:
        The workload.
    """
    n = len(processes)
    labels: dict[int, int] = {0: 0}
    for pages in processes:
        for label in pages:
            if label is not None:
                labels.setdefault(label, len(labels))
    for _, _, _, label in changes:
        if label is not None:
            labels.setdefault(label, len(labels))

    def cid(label: Label) -> int:
        return int(NOT_PRESENT) if label is None else labels[label]

    sizes = np.array([len(p) for p in processes], dtype=np.int64)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    content = np.array([cid(x) for p in processes for x in p], dtype=np.uint32)
    addr = np.concatenate([np.arange(len(p), dtype=np.uint64) for p in processes])
    huge = thp or [False] * n
    for i, pages in enumerate(processes):
        if huge[i] and len(pages) % 512:
            raise UsageError("a THP process needs a multiple of 512 pages")
    ordered = sorted(changes, key=lambda c: c[0])
    specs = [
        ProcessSpec(
            pid=1000 + i,
            identity=ProcessIdentity(1000 + i, comm=f"p{i}"),
            register_ns=0 if register_ns is None else register_ns[i],
            exit_ns=None if exit_ns is None else exit_ns[i],
            fork_parent=None if fork_parent is None else fork_parent[i],
            tenant=f"t{i}" if tenants is None else tenants[i],
        )
        for i in range(n)
    ]
    return Workload(
        processes=specs,
        starts=starts,
        ends=ends,
        addr=addr,
        content=content,
        thp=np.repeat(np.array(huge, dtype=np.uint8), sizes),
        is_zero=(np.arange(len(labels)) == 0).astype(np.uint8),
        change_t=np.array([c[0] for c in ordered], dtype=np.int64),
        change_page=np.array([starts[c[1]] + c[2] for c in ordered], dtype=np.int32),
        change_value=np.array([cid(c[3]) for c in ordered], dtype=np.uint32),
        knob_changes=list(knob_changes),
        duration_ns=duration_ns,
        origin="hand-made",
    )
