# mypy: disable-error-code="no-untyped-def"
"""Compiled application of the workload to the engine: page writes, unmaps and process events.

What the faulting or exiting task does happens at once (``cow_ksm``, ``ksm_zero_pages``,
the KSM page's mapcount); what ksmd does (``pages_shared``, ``pages_sharing``,
``ksm_merging_pages``, ``ksm_rmap_items``) waits until the scan reaches the item
(KSM-INTERNALS.md §4.6, §5).
"""

from __future__ import annotations

from ksmtrace.engine.evbuf import (
    F_FORK,
    K_COW,
    K_ENTER,
    K_EXIT,
    K_KNOB,
    K_UNMERGE,
    K_ZERO_COW,
    U_RUN2,
    emit,
)
from ksmtrace.engine.jit import compiled
from ksmtrace.engine.layout import (
    ADV_CHANGE,
    ADV_CPU,
    ADV_MIN_PAGES,
    ADV_SCAN_TIME,
    ADVISOR,
    CH_POS,
    COW_KSM,
    CUR_SLOT,
    HAS_ITEM,
    MAX_SHARING,
    MM_ALIVE,
    MM_COWS,
    MM_END,
    MM_NEXT,
    MM_REGISTERED,
    MM_RMAP,
    MM_START,
    MM_ZERO,
    MM_ZERO_COWS,
    NOT_PRESENT,
    NOW,
    OP_EXIT,
    OP_FORK,
    OP_KNOB,
    OP_POS,
    OP_REGISTER,
    PAGES_TO_SCAN,
    PTE_KSM,
    RUN,
    SEQNR,
    SHARED,
    SLOTS,
    SPENT,
    STABLE,
    THP,
    ZERO_MAPPED,
    ZERO_PAGES,
)
from ksmtrace.engine.scan import free_item, slot_insert_before, slot_unlink
from ksmtrace.engine.stable import free_chain, mm_of, page_freed, remove_node

#: pages_to_scan after switching the advisor off (DEFAULT_PAGES_TO_SCAN).
DEFAULT_PAGES_TO_SCAN = 100


@compiled
def set_content(P, N, g, mmst, ev, p, mm, value):
    """A write (new content) or an unmap (NOT_PRESENT) of page ``p``, done by the task."""
    f = P.flags[p]
    if f & PTE_KSM:
        k = P.node[p]
        N.mapcount[k] -= 1
        if N.mapcount[k] == 0:
            page_freed(N, g, k)
        P.flags[p] = f & ~PTE_KSM
        if (f & STABLE) == 0:
            P.node[p] = -1
        if value != NOT_PRESENT:
            g[COW_KSM] += 1
            mmst[mm, MM_COWS] += 1
            life = g[NOW] + g[SPENT] - int(N.t_ms[k]) * 1_000_000
            emit(g, ev, K_COW, mm + 1, int(P.addr[p]), life, k + 1)
    if f & ZERO_MAPPED:
        P.flags[p] &= ~ZERO_MAPPED
        g[ZERO_PAGES] -= 1
        mmst[mm, MM_ZERO] -= 1
        if value != NOT_PRESENT:
            mmst[mm, MM_ZERO_COWS] += 1
            emit(g, ev, K_ZERO_COW, mm + 1, int(P.addr[p]), 0, 0)
    P.content[p] = value


@compiled
def register(g, mmst, ev, mm, flags):
    """``__ksm_enter``: insert the slot just behind the cursor (at the tail when run=2)."""
    mmst[mm, MM_ALIVE] = 1
    if mmst[mm, MM_REGISTERED]:
        return
    n_mm = mmst.shape[0] - 1
    at = n_mm if g[RUN] == 2 else g[CUR_SLOT]
    slot_insert_before(mmst, mm, at)
    g[SLOTS] += 1
    emit(g, ev, K_ENTER, mm + 1, 0, 0, 0, flags)


@compiled
def process_exit(P, N, g, mmst, ev, mm):
    """``__ksm_exit`` + ``exit_mmap``: PTEs go now, the slot waits for ksmd if it has items."""
    for p in range(mmst[mm, MM_START], mmst[mm, MM_END]):
        if P.content[p] != NOT_PRESENT:
            set_content(P, N, g, mmst, ev, p, mm, NOT_PRESENT)
    mmst[mm, MM_ALIVE] = 0
    if mmst[mm, MM_REGISTERED] and g[CUR_SLOT] != mm:
        slot_unlink(mmst, mm)
        if mmst[mm, MM_RMAP] == 0:
            g[SLOTS] -= 1
        else:
            cur = g[CUR_SLOT]
            slot_insert_before(mmst, mm, mmst[cur, MM_NEXT])
    emit(g, ev, K_EXIT, mm + 1, 0, 0, 0)


@compiled
def fork(P, N, g, mmst, ev, child, parent):
    """``dup_mmap`` + ``ksm_fork``: the child maps the parent's pages, KSM pages included."""
    off = mmst[child, MM_START] - mmst[parent, MM_START]
    for p in range(mmst[parent, MM_START], mmst[parent, MM_END]):
        q = p + off
        P.content[q] = P.content[p]
        f = P.flags[p] & (PTE_KSM | ZERO_MAPPED | THP)
        P.flags[q] = f
        if f & PTE_KSM:
            P.node[q] = P.node[p]
            N.mapcount[P.node[p]] += 1
        if f & ZERO_MAPPED:
            g[ZERO_PAGES] += 1
            mmst[child, MM_ZERO] += 1
    register(g, mmst, ev, child, F_FORK)


@compiled
def unmerge_all(P, N, T, g, mmst, ev):
    """run=2: unshare every KSM PTE (each bumps cow_ksm), free all items and stale nodes."""
    n_mm = mmst.shape[0] - 1
    for mm in range(n_mm):
        ksm_pages = 0
        zero_pages = 0
        for p in range(mmst[mm, MM_START], mmst[mm, MM_END]):
            f = P.flags[p]
            if f & PTE_KSM:
                N.mapcount[P.node[p]] -= 1
                if N.mapcount[P.node[p]] == 0:
                    page_freed(N, g, P.node[p])
                P.flags[p] = f & ~PTE_KSM
                g[COW_KSM] += 1
                ksm_pages += 1
            if f & ZERO_MAPPED:
                P.flags[p] &= ~ZERO_MAPPED
                g[ZERO_PAGES] -= 1
                mmst[mm, MM_ZERO] -= 1
                zero_pages += 1
            if P.flags[p] & HAS_ITEM:
                free_item(P, N, T, g, mmst, ev, n_mm, p, mm)
            if (P.flags[p] & STABLE) == 0:
                P.node[p] = -1
        if ksm_pages or zero_pages:
            emit(g, ev, K_UNMERGE, mm + 1, 0, ksm_pages, zero_pages, U_RUN2)
    for c in range(T.stable_head.shape[0]):
        while T.stable_head[c] >= 0:
            h = T.stable_head[c]
            if N.hlen[h] < 0:
                d = N.items[h]
                if d < 0:
                    free_chain(N, T, g, h)
                    continue
                remove_node(P, N, T, g, mmst, ev, n_mm, d)
            else:
                remove_node(P, N, T, g, mmst, ev, n_mm, h)
    g[SEQNR] = 0
    g[CUR_SLOT] = n_mm


@compiled
def set_knob(P, N, T, g, mmst, ev, slot, name_index, value):
    """A write to /sys/kernel/mm/ksm/<knob>, with the kernel's side effects."""
    old = g[slot]
    if slot == MAX_SHARING and g[SHARED] != 0:
        return  # EBUSY while pages are shared
    if slot == RUN and value == 2:
        unmerge_all(P, N, T, g, mmst, ev)
    if slot == ADVISOR and value != old:
        if value == 1:
            g[PAGES_TO_SCAN] = g[ADV_MIN_PAGES]
            g[ADV_CHANGE] = 0
            g[ADV_SCAN_TIME] = 0
            g[ADV_CPU] = 0
        else:
            g[PAGES_TO_SCAN] = DEFAULT_PAGES_TO_SCAN
    g[slot] = value
    emit(g, ev, K_KNOB, 0, name_index, value, old)


@compiled
def apply_due(P, N, T, g, mmst, ev, S, t):
    """Apply every page change and operation stamped at or before ``t``, in time order."""
    n_mm = mmst.shape[0] - 1
    n_ch = S.ch_t.shape[0]
    n_op = S.op_t.shape[0]
    while True:
        ci = g[CH_POS]
        oi = g[OP_POS]
        tc = S.ch_t[ci] if ci < n_ch else t + 1
        to = S.op_t[oi] if oi < n_op else t + 1
        if tc > t and to > t:
            return
        if to <= tc:
            g[OP_POS] = oi + 1
            kind = S.op_kind[oi]
            mm = S.op_mm[oi]
            if kind == OP_REGISTER:
                register(g, mmst, ev, mm, 0)
            elif kind == OP_EXIT:
                process_exit(P, N, g, mmst, ev, mm)
            elif kind == OP_FORK:
                fork(P, N, g, mmst, ev, mm, S.op_arg[oi])
            elif kind == OP_KNOB:
                arg = S.op_arg[oi]
                set_knob(P, N, T, g, mmst, ev, arg & 0xFFFF, arg >> 16, S.op_val[oi])
        else:
            g[CH_POS] = ci + 1
            p = S.ch_page[ci]
            set_content(P, N, g, mmst, ev, p, mm_of(mmst, n_mm, p), S.ch_val[ci])
