"""Which processes (or VMs) share most pages with each other, and what placing a set together saves.

Exact figures come from the content ids of the workload at its end: the pages saved by
putting two processes on one host beyond what each saves alone is exactly the number of
distinct contents both hold (pages - distinct contents is what KSM can save in a set,
ignoring max_page_sharing). Estimates for many hosts come from :mod:`.sketches`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.layout import NOT_PRESENT
from ksmtrace.engine.workload import Workload
from ksmtrace.whatif.sketches import Sketch, shared_contents

U32 = npt.NDArray[np.uint32]


def final_contents(w: Workload) -> U32:
    """Content id of every page at the end of the workload (NOT_PRESENT if unmapped)."""
    out = w.content.copy()
    if len(w.change_page):
        rev_pages = w.change_page[::-1]
        pages, idx = np.unique(rev_pages, return_index=True)
        out[pages] = w.change_value[::-1][idx]
    for i, spec in enumerate(w.processes):
        if spec.exit_ns is not None:
            out[w.starts[i] : w.ends[i]] = NOT_PRESENT
    return out


@dataclass(slots=True)
class Pair:
    """Two processes and the pages they would share."""

    a: str
    b: str
    shared_pages: int
    jaccard: float


def _distinct(contents: U32, lo: int, hi: int) -> npt.NDArray[np.uint32]:
    c = contents[lo:hi]
    return np.unique(c[c != NOT_PRESENT])


def labels(w: Workload) -> list[str]:
    """Display name of each process."""
    return [p.label for p in w.processes]


def self_saving(w: Workload, contents: U32 | None = None) -> list[int]:
    """Pages each process could save on its own (its pages - its distinct contents)."""
    c = final_contents(w) if contents is None else contents
    out = []
    for i in range(len(w.processes)):
        part = c[w.starts[i] : w.ends[i]]
        part = part[part != NOT_PRESENT]
        out.append(int(len(part) - len(np.unique(part))))
    return out


def pairs_exact(w: Workload) -> list[Pair]:
    """Every pair of processes with the pages placing them together would add, best first."""
    c = final_contents(w)
    sets = [_distinct(c, int(w.starts[i]), int(w.ends[i])) for i in range(len(w.processes))]
    names = labels(w)
    out = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            both = len(np.intersect1d(sets[i], sets[j], assume_unique=True))
            union = len(sets[i]) + len(sets[j]) - both
            out.append(Pair(names[i], names[j], both, both / union if union else 0.0))
    return sorted(out, key=lambda p: -p.shared_pages)


def pairs_sketched(sketches: list[Sketch]) -> list[Pair]:
    """The same table estimated from sketches (works across hosts)."""
    from ksmtrace.whatif.sketches import jaccard

    out = []
    for i in range(len(sketches)):
        for j in range(i + 1, len(sketches)):
            a, b = sketches[i], sketches[j]
            out.append(Pair(a.name, b.name, int(round(shared_contents(a, b))), jaccard(a, b)))
    return sorted(out, key=lambda p: -p.shared_pages)


def sketches_of(w: Workload, hashes: npt.NDArray[np.uint64]) -> list[Sketch]:
    """Sketch each process's final contents (``hashes`` maps content id -> fingerprint)."""
    c = final_contents(w)
    names = labels(w)
    out = []
    for i in range(len(w.processes)):
        part = c[w.starts[i] : w.ends[i]]
        out.append(Sketch.of(names[i], hashes[part[part != NOT_PRESENT]]))
    return out


def select(w: Workload, wanted: list[str]) -> list[int]:
    """Indices of the processes named (label, comm, VM name or pid) in ``wanted``.

    Raises:
        UsageError: a name matches no process.
    """
    from ksmtrace.errors import UsageError

    out: list[int] = []
    for name in wanted:
        hits = [
            i
            for i, p in enumerate(w.processes)
            if name in (p.label, p.identity.comm, p.identity.vm, str(p.pid))
        ]
        if not hits:
            known = ", ".join(labels(w))
            raise UsageError(f"no recorded process or VM called {name!r} (recorded: {known})")
        out.extend(h for h in hits if h not in out)
    return out
