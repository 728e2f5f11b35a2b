# mypy: disable-error-code="no-untyped-def"
"""Compiled model of ksmd's scan: the walker, ``cmp_and_merge_page`` and one batch.

Mirrors ``scan_get_next_rmap_item``, ``get_next_rmap_item``, ``should_skip_rmap_item``,
``cmp_and_merge_page``, ``unstable_tree_search_insert``, ``try_to_merge_two_pages`` and
``ksm_do_scan`` of mm/ksm.c (6.18), with the 6.7-6.10 order of ``cmp_and_merge_page``
behind the PRE_611 switch (KSM-INTERNALS.md §3).
"""

from __future__ import annotations

from ksmtrace.engine.advisor import scan_time_advisor
from ksmtrace.engine.evbuf import (
    F_ADOPT,
    F_PAIR_FIRST,
    F_PAIR_SECOND,
    F_STABLE,
    K_MERGE,
    K_SCAN_START,
    K_SCAN_STOP,
    K_ZERO_MERGE,
    emit,
)
from ksmtrace.engine.jit import compiled, inlined
from ksmtrace.engine.layout import (
    ADV_START,
    ADVISOR,
    C_KSM,
    C_MERGE,
    C_PAGE,
    C_PASS,
    C_SKIP,
    C_VOLATILE,
    CPU_NS,
    CUR_POS,
    CUR_SLOT,
    HAS_ITEM,
    LAST_PASS_NS,
    MM_ALIVE,
    MM_CPU,
    MM_END,
    MM_MERGES,
    MM_NEXT,
    MM_PREV,
    MM_REGISTERED,
    MM_RMAP,
    MM_SCANNED,
    MM_START,
    MM_ZERO,
    MM_ZERO_MERGES,
    NO_CHECKSUM,
    NOT_PRESENT,
    NOW,
    PAGES_TO_SCAN,
    PASS_START,
    PRE_611,
    PTE_KSM,
    RMAP_ITEMS,
    SCANNED,
    SEQNR,
    SKIPPED,
    SLOTS,
    SMART,
    SPENT,
    STABLE,
    THP,
    UNSHARED,
    UNSTABLE,
    USE_ZERO,
    ZERO_MAPPED,
    ZERO_PAGES,
)
from ksmtrace.engine.stable import (
    alloc_node,
    append_item,
    is_candidate,
    remove_from_tree,
    stable_insert,
    stable_search,
)

#: Pages per PMD-mapped transparent huge page (2 MiB / 4 KiB).
THP_PAGES = 512


@inlined
def eligible(P, p):
    """Whether the walker returns this address: a present anonymous page, not the zero page."""
    return P.content[p] != NOT_PRESENT and (P.flags[p] & ZERO_MAPPED) == 0


@compiled
def slot_unlink(mmst, mm):
    """Take an mm slot off the circular slot list."""
    nxt = mmst[mm, MM_NEXT]
    prv = mmst[mm, MM_PREV]
    mmst[prv, MM_NEXT] = nxt
    mmst[nxt, MM_PREV] = prv
    mmst[mm, MM_REGISTERED] = 0


@compiled
def slot_insert_before(mmst, mm, at):
    """``list_add_tail(slot, at)``: put the slot just before ``at`` in scan order."""
    prv = mmst[at, MM_PREV]
    mmst[mm, MM_PREV] = prv
    mmst[mm, MM_NEXT] = at
    mmst[prv, MM_NEXT] = mm
    mmst[at, MM_PREV] = mm
    mmst[mm, MM_REGISTERED] = 1


@inlined
def free_item(P, N, T, g, mmst, ev, n_mm, p, mm):
    """``free_rmap_item`` after ``remove_rmap_item_from_tree``: the address lost its page."""
    remove_from_tree(P, N, T, g, mmst, ev, n_mm, p, mm)
    P.flags[p] &= ~HAS_ITEM
    P.oldsum[p] = NO_CHECKSUM
    P.age[p] = 0
    P.skips[p] = 0
    g[RMAP_ITEMS] -= 1
    mmst[mm, MM_RMAP] -= 1


@compiled
def split_thp(P, mmst, mm, p):
    """``split_huge_page``: the 4 KiB pages of ``p``'s huge page become ordinary pages."""
    if (P.flags[p] & THP) == 0:
        return
    group = P.addr[p] // THP_PAGES
    q = p
    while q >= mmst[mm, MM_START] and P.addr[q] // THP_PAGES == group:
        P.flags[q] &= ~THP
        q -= 1
    q = p + 1
    while q < mmst[mm, MM_END] and P.addr[q] // THP_PAGES == group:
        P.flags[q] &= ~THP
        q += 1


@inlined
def should_skip(P, N, T, g, mmst, ev, n_mm, p, mm):
    """``should_skip_rmap_item``: smart scan's age-based skipping of non-KSM pages."""
    if g[SMART] == 0 or (P.flags[p] & PTE_KSM) != 0:
        return False
    age = P.age[p]
    if age != 255:
        P.age[p] = age + 1
    if age < 3:
        return False
    if P.skips[p] == 0:
        if age <= 3:
            P.skips[p] = 1
        elif age <= 5:
            P.skips[p] = 2
        elif age <= 8:
            P.skips[p] = 4
        else:
            P.skips[p] = 8
        return False
    g[SKIPPED] += 1
    P.skips[p] -= 1
    remove_from_tree(P, N, T, g, mmst, ev, n_mm, p, mm)
    return True


@compiled
def merge_into(P, N, T, g, mmst, ev, n_mm, p, mm, k, flags, bypass):
    """``try_to_merge_with_ksm_page`` + ``stable_tree_append``: map KSM page ``k`` at ``p``."""
    remove_from_tree(P, N, T, g, mmst, ev, n_mm, p, mm)
    if (P.flags[p] & PTE_KSM) == 0:
        split_thp(P, mmst, mm, p)
        P.flags[p] |= PTE_KSM
        N.mapcount[k] += 1
    P.node[p] = k
    append_item(P, N, g, mmst, p, k, mm)
    mmst[mm, MM_MERGES] += 1
    emit(g, ev, K_MERGE, mm + 1, int(P.addr[p]), k + 1, 0, flags)


@inlined
def unstable_search_insert(P, T, g, p, content):
    """``unstable_tree_search_insert``: an identical page's index, or -1 (``p`` inserted).

    -2: the tree node met is no longer a present page, so ``p`` is not inserted this pass.
    """
    seq8 = g[SEQNR] & 0xFF
    if content >= T.unstable_item.shape[0]:
        # no other page ever holds this content: nothing to find, nothing to remember
        P.flags[p] |= UNSTABLE
        P.seq[p] = seq8
        g[UNSHARED] += 1
        return -1
    t = T.unstable_item[content]
    if t >= 0 and t != p and (P.flags[t] & UNSTABLE) != 0 and P.seq[t] == seq8:
        if not eligible(P, t):
            return -2
        if P.content[t] == content and (P.flags[t] & PTE_KSM) == 0:
            return t
    P.flags[p] |= UNSTABLE
    P.seq[p] = seq8
    T.unstable_item[content] = p
    g[UNSHARED] += 1
    return -1


@compiled
def merge_pair(P, N, T, g, mmst, ev, n_mm, p, mm, t, content):
    """``try_to_merge_two_pages`` + ``stable_tree_insert``: ``p``'s frame becomes the KSM page."""
    tmm = mm_of_pair(mmst, n_mm, t, mm)
    k = alloc_node(N, g)
    split_thp(P, mmst, mm, p)
    split_thp(P, mmst, tmm, t)
    P.flags[p] |= PTE_KSM
    P.node[p] = k
    N.mapcount[k] = 1
    emit(g, ev, K_MERGE, mm + 1, int(P.addr[p]), k + 1, 0, F_PAIR_FIRST)
    remove_from_tree(P, N, T, g, mmst, ev, n_mm, t, tmm)
    P.flags[t] |= PTE_KSM
    P.node[t] = k
    N.mapcount[k] = 2
    emit(g, ev, K_MERGE, tmm + 1, int(P.addr[t]), k + 1, 0, F_PAIR_SECOND)
    stable_insert(P, N, T, g, mmst, ev, n_mm, k, content)
    append_item(P, N, g, mmst, t, k, tmm)
    append_item(P, N, g, mmst, p, k, mm)
    mmst[mm, MM_MERGES] += 1
    mmst[tmm, MM_MERGES] += 1


@inlined
def mm_of_pair(mmst, n_mm, t, mm):
    """The mm of page ``t``, trying the scanning mm first (the common case)."""
    if mmst[mm, MM_START] <= t < mmst[mm, MM_END]:
        return mm
    lo, hi = 0, n_mm - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mmst[mid, MM_START] <= t:
            lo = mid
        else:
            hi = mid - 1
    return lo


@inlined
def same_thp(P, p, t):
    """Whether two pages are subpages of one huge page (so they cannot merge with each other)."""
    return (
        (P.flags[p] & THP) != 0
        and (P.flags[t] & THP) != 0
        and P.addr[p] // THP_PAGES == P.addr[t] // THP_PAGES
    )


@inlined
def unstable_step(P, N, T, g, mmst, ev, n_mm, p, mm, content, cost):
    """The unstable-tree half of ``cmp_and_merge_page``; returns the CPU spent."""
    t = unstable_search_insert(P, T, g, p, content)
    if t < 0:
        return cost[C_PAGE]
    if same_thp(P, p, t) and mm_of_pair(mmst, n_mm, t, mm) == mm:
        split_thp(P, mmst, mm, p)
        return cost[C_PAGE]
    merge_pair(P, N, T, g, mmst, ev, n_mm, p, mm, t, content)
    return cost[C_PAGE] + 2 * cost[C_MERGE]


@compiled
def zero_step(P, g, mmst, ev, p, mm):
    """``try_to_merge_with_zero_page``: map the zero page at ``p`` (use_zero_pages)."""
    split_thp(P, mmst, mm, p)
    P.flags[p] |= ZERO_MAPPED
    g[ZERO_PAGES] += 1
    mmst[mm, MM_ZERO] += 1
    mmst[mm, MM_ZERO_MERGES] += 1
    emit(g, ev, K_ZERO_MERGE, mm + 1, int(P.addr[p]), 0, 0)


@inlined
def cmp_and_merge(P, N, T, g, mmst, ev, n_mm, p, mm, cost):
    """``cmp_and_merge_page`` for page ``p`` of ``mm``; returns the CPU spent (ns)."""
    f = P.flags[p]
    if f & PTE_KSM:
        k = P.node[p]
        if f & STABLE:  # the item already hangs off the page's node
            return cost[C_KSM]
        # a KSM page reached through fork: adopt it, beyond max_page_sharing if need be
        bypass = not is_candidate(N, g, k, 0)
        merge_into(P, N, T, g, mmst, ev, n_mm, p, mm, k, F_ADOPT, bypass)
        return cost[C_KSM] + cost[C_MERGE]
    content = P.content[p]
    if g[PRE_611]:
        k = stable_search(P, N, T, g, mmst, ev, n_mm, content)
        if k >= 0:
            merge_into(P, N, T, g, mmst, ev, n_mm, p, mm, k, F_STABLE, False)
            return cost[C_PAGE] + cost[C_MERGE]
    remove_from_tree(P, N, T, g, mmst, ev, n_mm, p, mm)
    if P.oldsum[p] != content:
        P.oldsum[p] = content
        return cost[C_VOLATILE]
    shareable = content < T.is_zero.shape[0]
    if g[USE_ZERO] and shareable and T.is_zero[content]:
        zero_step(P, g, mmst, ev, p, mm)
        return cost[C_PAGE] + cost[C_MERGE]
    if not g[PRE_611]:
        k = stable_search(P, N, T, g, mmst, ev, n_mm, content)
        if k >= 0:
            merge_into(P, N, T, g, mmst, ev, n_mm, p, mm, k, F_STABLE, False)
            return cost[C_PAGE] + cost[C_MERGE]
    return unstable_step(P, N, T, g, mmst, ev, n_mm, p, mm, content, cost)


@compiled
def start_pass(g, mmst, ev, n_mm, cost):
    """Start of a full scan: ``ksm_start_scan``, LRU drain, unstable tree reset (lazily)."""
    now = g[NOW] + g[SPENT]
    g[PASS_START] = now
    if g[ADVISOR]:
        g[ADV_START] = now
    emit(g, ev, K_SCAN_START, 0, g[CPU_NS] + g[SPENT], g[SEQNR], g[RMAP_ITEMS])
    g[SPENT] += int(cost[C_PASS])
    first = mmst[n_mm, MM_NEXT]
    g[CUR_SLOT] = first
    if first != n_mm:
        g[CUR_POS] = mmst[first, MM_START]


@compiled
def end_pass(g, mmst, ev, n_mm):
    """End of a full scan: advisor, ``ksm_stop_scan``, ``seqnr++``."""
    if g[ADVISOR]:
        scan_time_advisor(g, ev)
    emit(g, ev, K_SCAN_STOP, 0, g[CPU_NS] + g[SPENT], g[SEQNR], g[RMAP_ITEMS])
    g[SEQNR] += 1
    g[LAST_PASS_NS] = g[NOW] + g[SPENT] - g[PASS_START]


@inlined
def next_item(P, N, T, g, mmst, ev, n_mm, cost):
    """``scan_get_next_rmap_item``: the next page to hand over, or -1 at the end of a pass."""
    if mmst[n_mm, MM_NEXT] == n_mm:
        return -1
    if g[CUR_SLOT] == n_mm:
        start_pass(g, mmst, ev, n_mm, cost)
        if g[CUR_SLOT] == n_mm:
            return -1
    while True:
        mm = g[CUR_SLOT]
        pos = g[CUR_POS]
        end = mmst[mm, MM_END]
        alive = mmst[mm, MM_ALIVE] != 0
        while pos < end:
            p = pos
            pos += 1
            if alive and eligible(P, p):
                if (P.flags[p] & HAS_ITEM) == 0:
                    P.flags[p] |= HAS_ITEM
                    g[RMAP_ITEMS] += 1
                    mmst[mm, MM_RMAP] += 1
                if should_skip(P, N, T, g, mmst, ev, n_mm, p, mm):
                    g[SPENT] += int(cost[C_SKIP])
                    mmst[mm, MM_CPU] += int(cost[C_SKIP])
                    continue
                g[CUR_POS] = pos
                return p
            if P.flags[p] & HAS_ITEM:
                free_item(P, N, T, g, mmst, ev, n_mm, p, mm)
        nxt = mmst[mm, MM_NEXT]
        if not alive:
            slot_unlink(mmst, mm)
            g[SLOTS] -= 1
        g[CUR_SLOT] = nxt
        if nxt == n_mm:
            end_pass(g, mmst, ev, n_mm)
            return -1
        g[CUR_POS] = mmst[nxt, MM_START]


@compiled
def do_batch(P, N, T, g, mmst, ev, n_mm, cost):
    """``ksm_do_scan(pages_to_scan)``: the budget counts pages handed to cmp_and_merge_page."""
    budget = g[PAGES_TO_SCAN]
    while budget > 0:
        p = next_item(P, N, T, g, mmst, ev, n_mm, cost)
        if p < 0:
            return
        budget -= 1
        mm = g[CUR_SLOT]
        spent = int(cmp_and_merge(P, N, T, g, mmst, ev, n_mm, p, mm, cost))
        g[SPENT] += spent
        g[SCANNED] += 1
        mmst[mm, MM_SCANNED] += 1
        mmst[mm, MM_CPU] += spent
