"""Which tenants (VMs, containers, users) share each KSM page, and how much saving crosses them.

Merged pages shared between tenants are a known side channel (a tenant can time its own
writes to learn whether another tenant holds the same content), so ksmtrace says how
much of KSM's saving comes from pages that cross a boundary, and which.

A tenant is a VM, else a container (or a Kubernetes pod), else a user: see
:func:`tenant_of`. :class:`SharingTracker` follows every KSM page by its frame number:
MERGE events carry it in ``value`` and COW events in ``value2``, so each page's mappings
are counted per process (+1 per merge, -1 per copy-on-write, all of a process's at its
exit or when it turns PR_SET_MEMORY_MERGE off). Frame numbers stay inside the tracker;
only counts come out.

What it cannot see: pages merged before tracing began, and which pages a partial
madvise(MADV_UNMERGEABLE) unshared (those mappings stay counted until the process exits;
``SharingReport.approximate`` says when that happened).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ksmtrace.events import EventBatch, EventKind, ProcessIdentity, UnmergeKind

__all__ = [
    "SharingReport",
    "SharingTracker",
    "boundary_of",
    "sharing_report",
    "tenant_kind",
    "tenant_of",
]

#: Tenant kinds, in the order they take precedence.
TENANT_KINDS = ("vm", "container", "user")
_KIND_LABEL = {"vm": "VM", "container": "container", "user": "host process"}


def tenant_of(identity: ProcessIdentity) -> str:
    """Name the tenant a process belongs to, for isolation questions.

    Args:
        identity: Who the process is.

    Returns:
        "vm:<name>" (or "vm:pid<pid>" for an unnamed VM), else "container:<id>", else
        "pod:<uid>", else "user:<uid>" ("user:?" when the uid is unknown).
    """
    if identity.vm_kind is not None:
        return f"vm:{identity.vm or identity.vm_uuid or f'pid{identity.pid}'}"
    if identity.container:
        return f"container:{identity.container}"
    if identity.pod:
        return f"pod:{identity.pod}"
    return f"user:{'?' if identity.uid is None else identity.uid}"


def tenant_kind(tenant: str) -> str:
    """The kind of a tenant name: "vm", "container" (pods included) or "user"."""
    prefix = tenant.partition(":")[0]
    return "container" if prefix == "pod" else prefix


def boundary_of(tenants: Iterable[str]) -> str:
    """Name the boundary a page mapped by these (two or more) tenants crosses.

    Args:
        tenants: Distinct tenant names.

    Returns:
        "VM↔VM", "container↔container" or "host process↔host process" when every tenant
        is of one kind; else the kinds present joined by "↔", e.g. "VM↔host process".
    """
    kinds = {tenant_kind(t) for t in tenants}
    labels = [_KIND_LABEL[k] for k in TENANT_KINDS if k in kinds]
    if len(labels) == 1:
        return f"{labels[0]}↔{labels[0]}"
    return "↔".join(labels)


@dataclass(frozen=True, slots=True)
class SharingReport:
    """How KSM pages merged while tracing are shared between tenants (counts in pages).

    Attributes:
        ksm_pages: KSM pages currently mapped by a traced merge.
        mappings: Their mappings (each is one merged page of some process).
        saved_pages: Pages saved by them: mappings minus ksm_pages.
        cross_tenant_pages: The part of ``saved_pages`` that exists only because
            different tenants share a page: the copies that merging only within each
            tenant would need back (per page, the number of its tenants minus one).
        by_boundary: ``cross_tenant_pages`` by the boundary crossed (see boundary_of).
        across_users_pages: Of ``cross_tenant_pages``, pages whose tenants run as two or
            more different users (uids, where known).
        pairs: KSM pages each pair of tenants both map, ``(a, b)`` with ``a < b``.
        tenants: Per tenant, its mappings of pages it shares with another tenant.
        approximate: A partial madvise unmerge happened: some mappings may be stale.
    """

    ksm_pages: int = 0
    mappings: int = 0
    saved_pages: int = 0
    cross_tenant_pages: int = 0
    by_boundary: Mapping[str, int] = field(default_factory=dict)
    across_users_pages: int = 0
    pairs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    tenants: Mapping[str, int] = field(default_factory=dict)
    approximate: bool = False

    @property
    def same_tenant_pages(self) -> int:
        """Saved pages that merging only within each tenant would keep."""
        return self.saved_pages - self.cross_tenant_pages


def _pairs_of(names: list[str]) -> Iterable[tuple[str, str]]:
    ordered = sorted(names)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            yield a, b


def sharing_report(
    mappings: Mapping[int, Mapping[int, int]],
    identities: Mapping[int, ProcessIdentity],
    approximate: bool = False,
) -> SharingReport:
    """Fold per-page mapping counts into a tenant sharing report.

    Args:
        mappings: KSM page (any key: frame number or salted id) to mappings per pid.
        identities: Who each pid is; unknown pids count as tenant "user:?".
        approximate: Passed through to the report.

    Returns:
        The report.
    """
    tenant_cache: dict[int, str] = {}
    uid_of: dict[str, set[int | None]] = {}

    def tenant(pid: int) -> str:
        name = tenant_cache.get(pid)
        if name is None:
            ident = identities.get(pid) or ProcessIdentity(pid)
            name = tenant_cache[pid] = tenant_of(ident)
            uid_of.setdefault(name, set()).add(ident.uid)
        return name

    pages = maps = cross = across = 0
    by_boundary: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    per_tenant: Counter[str] = Counter()
    for per_pid in mappings.values():
        counts: Counter[str] = Counter()
        for pid, n in per_pid.items():
            if n > 0:
                counts[tenant(pid)] += n
        total = sum(counts.values())
        if total == 0:
            continue
        pages += 1
        maps += total
        if len(counts) < 2:
            continue
        extra = len(counts) - 1
        cross += extra
        by_boundary[boundary_of(counts)] += extra
        uids = set().union(*(uid_of[t] for t in counts)) - {None}
        if len(uids) > 1:
            across += extra
        pairs.update(_pairs_of(list(counts)))
        per_tenant.update(counts)
    return SharingReport(
        pages, maps, maps - pages, cross, dict(by_boundary), across, dict(pairs),
        dict(per_tenant), approximate,
    )  # fmt: skip


class SharingTracker:
    """Follows which processes map each KSM page merged while tracing (frame numbers stay here)."""

    def __init__(self) -> None:
        self._pages: dict[int, dict[int, int]] = {}
        self._by_pid: dict[int, set[int]] = {}
        self.approximate = False

    def __len__(self) -> int:
        """KSM pages tracked."""
        return len(self._pages)

    def _bump(self, pfn: int, pid: int, delta: int) -> None:
        per_pid = self._pages.setdefault(pfn, {})
        n = per_pid.get(pid, 0) + delta
        if n > 0:
            per_pid[pid] = n
            self._by_pid.setdefault(pid, set()).add(pfn)
            return
        per_pid.pop(pid, None)
        pfns = self._by_pid.get(pid)
        if pfns is not None:
            pfns.discard(pfn)
        if not per_pid:
            del self._pages[pfn]

    def _drop_pid(self, pid: int) -> None:
        for pfn in self._by_pid.pop(pid, set()):
            per_pid = self._pages.get(pfn)
            if per_pid is not None:
                per_pid.pop(pid, None)
                if not per_pid:
                    del self._pages[pfn]

    def add(self, batch: EventBatch) -> None:
        """Fold one batch of events (unsanitised: frame numbers are needed)."""
        rec = batch.records
        if not len(rec):
            return
        merges = rec[(rec["kind"] == EventKind.MERGE) & (rec["value"] != 0)]
        cows = rec[(rec["kind"] == EventKind.COW) & (rec["value2"] != 0)]
        for pfns, pids, delta in (
            (merges["value"], merges["pid"], 1),
            (cows["value2"], cows["pid"], -1),
        ):
            if len(pfns):
                keys = np.stack([pfns.astype(np.uint64), pids.astype(np.uint64)], axis=1)
                uniq, counts = np.unique(keys, axis=0, return_counts=True)
                for (pfn, pid), n in zip(uniq.tolist(), counts.tolist(), strict=True):
                    self._bump(int(pfn), int(pid), delta * int(n))
        unm = rec[rec["kind"] == EventKind.UNMERGE]
        for flags, pid in zip(unm["flags"].tolist(), unm["pid"].tolist(), strict=True):
            if flags in (UnmergeKind.PRCTL, UnmergeKind.RUN2):
                self._drop_pid(int(pid))
            elif flags != UnmergeKind.KSMD_UNDO:
                self.approximate = True
        for pid in rec["pid"][rec["kind"] == EventKind.EXIT].tolist():
            self._drop_pid(int(pid))

    def mappings(self) -> dict[int, dict[int, int]]:
        """Per KSM page, mappings per pid (host-internal keys: never export them)."""
        return self._pages

    def report(self, identities: Mapping[int, ProcessIdentity]) -> SharingReport:
        """The tenant sharing report of the pages tracked now."""
        return sharing_report(self._pages, identities, self.approximate)
