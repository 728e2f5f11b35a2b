"""Tenants of recorded processes, for what-ifs that only merge within a tenant.

Uses :func:`ksmtrace.sharing.tenant_of` (VM, else container, else pod, else user).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.workload import Workload
from ksmtrace.sharing import tenant_of


def tenants(w: Workload) -> list[str]:
    """The tenant of each process of the workload."""
    return [p.tenant or tenant_of(p.identity) for p in w.processes]


def same_tenant_only(w: Workload) -> tuple[Workload, list[str]]:
    """The workload with pages of different tenants made unmergeable, and the tenants."""
    names = tenants(w)
    index = {t: i for i, t in enumerate(dict.fromkeys(names))}
    groups: npt.NDArray[np.int64] = np.array([index[t] for t in names], dtype=np.int64)
    return w.with_contents_split_by(groups), names
