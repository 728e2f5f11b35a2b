"""Compiled model of the stable tree: nodes, chains, dups and the rmap_items hanging off them.

Mirrors ``stable_tree_search``, ``stable_tree_insert``, ``stable_node_dup``,
``stable_tree_append``, ``remove_node_from_stable_tree`` and ``remove_rmap_item_from_tree``
of mm/ksm.c (6.18). The kernel's rbtree is ordered by page content; here a content id
indexes the tree directly, so a search visits exactly the node(s) of that content. A KSM
page is freed when its last PTE goes (``mapcount`` 0); its node is then stale and, as in
the kernel, removed only when something revalidates it.
"""

# mypy: disable-error-code="no-untyped-def"
from __future__ import annotations

from ksmtrace.engine.evbuf import K_REMOVE_KSM_PAGE, K_REMOVE_RMAP_ITEM, emit
from ksmtrace.engine.jit import compiled, inlined
from ksmtrace.engine.layout import (
    CHAIN,
    CHAINS,
    DUPS,
    MAX_SHARING,
    MM_MERGING,
    MM_START,
    N_NODES_LIVE,
    NODE_FREE,
    NODE_TOP,
    NOW,
    PRUNE_MS,
    PTE_KSM,
    SHARED,
    SHARING,
    SPENT,
    STABLE,
    STALE_HEAD,
    STALE_TAIL,
    UNSHARED,
    UNSTABLE,
)


@inlined
def mm_of(mmst, n_mm, p):
    """The mm owning page ``p`` (pages are grouped by mm in index order)."""
    lo, hi = 0, n_mm - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mmst[mid, MM_START] <= p:
            lo = mid
        else:
            hi = mid - 1
    return lo


@compiled
def alloc_node(N, g):
    """A zeroed stable node from the free list or the unused tail of the pool."""
    n = g[NODE_FREE]
    if n >= 0:
        g[NODE_FREE] = N.next_dup[n]
    else:
        n = g[NODE_TOP]
        g[NODE_TOP] = n + 1
    N.hlen[n] = 0
    N.mapcount[n] = 0
    N.items[n] = -1
    N.next_dup[n] = -1
    N.chain[n] = -1
    N.t_ms[n] = (g[NOW] + g[SPENT]) // 1_000_000
    g[N_NODES_LIVE] += 1
    return n


@compiled
def free_node(N, g, n):
    """Return a node to the free list (mapcount -1 marks it free for the stale ring)."""
    N.hlen[n] = 0
    N.mapcount[n] = -1
    N.next_dup[n] = g[NODE_FREE]
    g[NODE_FREE] = n
    g[N_NODES_LIVE] -= 1


@inlined
def is_candidate(N, g, n, offset):
    """``__is_page_sharing_candidate``: has an item and room for ``offset`` + 1 more."""
    return N.hlen[n] > 0 and N.hlen[n] + offset < g[MAX_SHARING]


@inlined
def append_item(P, N, g, mmst, p, n, mm):
    """``stable_tree_append``: hang page ``p``'s item off node ``n`` (newest first)."""
    N.hlen[n] += 1
    P.flags[p] |= STABLE
    P.node[p] = n
    P.next_item[p] = N.items[n]
    N.items[n] = p
    if P.next_item[p] >= 0:
        g[SHARING] += 1
    else:
        g[SHARED] += 1
    mmst[mm, MM_MERGING] += 1


@compiled
def unlink_dup(N, g, n):
    """Take dup ``n`` off its chain (``__stable_node_dup_del``)."""
    c = N.chain[n]
    prev = -1
    d = N.items[c]
    while d >= 0 and d != n:
        prev = d
        d = N.next_dup[d]
    if prev < 0:
        N.items[c] = N.next_dup[n]
    else:
        N.next_dup[prev] = N.next_dup[n]
    N.chain[n] = -1
    N.next_dup[n] = -1
    g[DUPS] -= 1


@compiled
def remove_node(P, N, T, g, mmst, ev, n_mm, n):
    """``remove_node_from_stable_tree``: tear down a stale regular node or dup.

    Every item is un-counted (sharing for all but the tail item, shared for the tail) and
    loses its STABLE flag; one REMOVE_RMAP_ITEM event per non-tail item, then one
    REMOVE_KSM_PAGE event.
    """
    p = N.items[n]
    while p >= 0:
        nxt = P.next_item[p]
        mm = mm_of(mmst, n_mm, p)
        if nxt >= 0:
            g[SHARING] -= 1
            emit(g, ev, K_REMOVE_RMAP_ITEM, mm + 1, int(P.addr[p]), n + 1, 0)
        else:
            g[SHARED] -= 1
        mmst[mm, MM_MERGING] -= 1
        P.flags[p] &= ~STABLE
        if (P.flags[p] & PTE_KSM) == 0:
            P.node[p] = -1
        P.next_item[p] = -1
        p = nxt
    N.items[n] = -1
    emit(g, ev, K_REMOVE_KSM_PAGE, 0, 0, n + 1, 0)
    if N.chain[n] >= 0:
        unlink_dup(N, g, n)
    elif T.stable_head[N.content[n]] == n:
        T.stable_head[N.content[n]] = -1
    free_node(N, g, n)


@inlined
def remove_from_tree(P, N, T, g, mmst, ev, n_mm, p, mm):
    """``remove_rmap_item_from_tree``: take page ``p``'s item out of whichever tree holds it.

    A stable item whose node turns out stale triggers that node's teardown instead.
    """
    f = P.flags[p]
    if f & STABLE:
        n = P.node[p]
        if N.mapcount[n] == 0:
            remove_node(P, N, T, g, mmst, ev, n_mm, n)
            return
        prev = -1
        q = N.items[n]
        while q >= 0 and q != p:
            prev = q
            q = P.next_item[q]
        if prev < 0:
            N.items[n] = P.next_item[p]
        else:
            P.next_item[prev] = P.next_item[p]
        P.next_item[p] = -1
        N.hlen[n] -= 1
        if N.items[n] >= 0:
            g[SHARING] -= 1
        else:
            g[SHARED] -= 1
        mmst[mm, MM_MERGING] -= 1
        P.flags[p] = f & ~STABLE
        if (f & PTE_KSM) == 0:
            P.node[p] = -1
    elif f & UNSTABLE:
        P.flags[p] = f & ~UNSTABLE
        g[UNSHARED] -= 1


@compiled
def free_chain(N, T, g, c):
    """``free_stable_node_chain``: drop an empty chain from the tree."""
    if T.stable_head[N.content[c]] == c:
        T.stable_head[N.content[c]] = -1
    g[CHAINS] -= 1
    free_node(N, g, c)


@compiled
def page_freed(N, g, n):
    """The last PTE of KSM page ``n`` went away: its node is now stale (still in the tree)."""
    cap = N.stale.shape[0]
    if g[STALE_TAIL] - g[STALE_HEAD] >= cap:
        g[STALE_HEAD] += 1  # full: forget the oldest (its own items still find it)
    N.stale[g[STALE_TAIL] % cap] = n
    g[STALE_TAIL] += 1


@compiled
def walk_stale(P, N, T, g, mmst, ev, n_mm):
    """Revalidation by a stable tree walk: tear down the stale nodes on the walk's path.

    The kernel's walk revalidates every node it passes (about log2 of the tree size); the
    model tears down that many of the oldest stale nodes, so a small tree is cleaned by
    any walk, as in the kernel, and a big one mostly by its own items' next visits.
    """
    live = g[N_NODES_LIVE]
    steps = 1
    while (1 << steps) <= live:
        steps += 1
    cap = N.stale.shape[0]
    while steps > 0 and g[STALE_HEAD] < g[STALE_TAIL]:
        n = N.stale[g[STALE_HEAD] % cap]
        g[STALE_HEAD] += 1
        if N.mapcount[n] == 0 and N.hlen[n] != CHAIN:
            remove_node(P, N, T, g, mmst, ev, n_mm, n)
            steps -= 1


@compiled
def stable_node_dup(P, N, T, g, mmst, ev, n_mm, c, prune):
    """``stable_node_dup``: choose a dup of chain ``c``; -1 if the chain died.

    Stale dups met on the way are removed. Without pruning the walk stops at the first
    sharing candidate; with pruning (at most once per stable_node_chains_prune_millisecs)
    every dup is visited and the fullest candidate wins. A chain left with one dup
    collapses into a regular node; a found dup with room for two more moves to the head.
    """
    now = g[NOW] + g[SPENT]
    if prune and now >= (int(N.t_ms[c]) + g[PRUNE_MS]) * 1_000_000:
        N.t_ms[c] = now // 1_000_000
    else:
        prune = False
    found = -1
    d = N.items[c]
    while d >= 0:
        nxt = N.next_dup[d]
        if N.mapcount[d] == 0:
            remove_node(P, N, T, g, mmst, ev, n_mm, d)
            d = nxt
            continue
        if found < 0 or (
            is_candidate(N, g, d, 0)
            and (not is_candidate(N, g, found, 0) or N.hlen[d] > N.hlen[found])
        ):
            found = d
            if not prune and is_candidate(N, g, found, 0):
                break
        d = nxt
    if found < 0:
        free_chain(N, T, g, c)
        return -1
    if N.items[c] == found and N.next_dup[found] < 0:
        # the only dup left: collapse the chain back into a regular node
        T.stable_head[N.content[c]] = found
        N.chain[found] = -1
        N.items[c] = -1
        g[DUPS] -= 1
        g[CHAINS] -= 1
        free_node(N, g, c)
    elif N.items[c] != found and is_candidate(N, g, found, 1):
        unlink_dup(N, g, found)
        N.chain[found] = c
        N.next_dup[found] = N.items[c]
        N.items[c] = found
        g[DUPS] += 1
    return found


@inlined
def stable_search(P, N, T, g, mmst, ev, n_mm, content):
    """``stable_tree_search`` for a page that is not a KSM page: a node to merge into, or -1.

    -1 also when the content's node(s) are full: the page must then pair up in the
    unstable tree and create a further KSM copy of this content.
    """
    if g[STALE_HEAD] < g[STALE_TAIL]:
        walk_stale(P, N, T, g, mmst, ev, n_mm)
    if content >= T.stable_head.shape[0]:
        return -1  # held by one page only: never a KSM page
    while True:
        h = T.stable_head[content]
        if h < 0:
            return -1
        if N.hlen[h] == CHAIN:
            dup = stable_node_dup(P, N, T, g, mmst, ev, n_mm, h, True)
            if dup < 0:
                continue
        else:
            if N.mapcount[h] == 0:
                remove_node(P, N, T, g, mmst, ev, n_mm, h)
                continue
            dup = h
        if not is_candidate(N, g, dup, 0):
            return -1
        return dup


@compiled
def stable_insert(P, N, T, g, mmst, ev, n_mm, k, content):
    """``stable_tree_insert``: put new KSM page node ``k`` in the tree.

    If the content already has a node, it becomes (or already is) a chain and ``k`` is
    added as a further dup.
    """
    N.content[k] = content
    if g[STALE_HEAD] < g[STALE_TAIL]:
        walk_stale(P, N, T, g, mmst, ev, n_mm)
    h = -1
    while True:
        h = T.stable_head[content]
        if h < 0:
            T.stable_head[content] = k
            return
        if N.hlen[h] == CHAIN:
            dup = stable_node_dup(P, N, T, g, mmst, ev, n_mm, h, False)
            if dup < 0:
                continue
            h = T.stable_head[content]
        elif N.mapcount[h] == 0:
            remove_node(P, N, T, g, mmst, ev, n_mm, h)
            continue
        break
    if N.hlen[h] != CHAIN:
        c = alloc_node(N, g)
        N.hlen[c] = CHAIN
        N.content[c] = content
        N.items[c] = h
        N.chain[h] = c
        N.next_dup[h] = -1
        T.stable_head[content] = c
        g[CHAINS] += 1
        g[DUPS] += 1
        h = c
    N.chain[k] = h
    N.next_dup[k] = N.items[h]
    N.items[h] = k
    g[DUPS] += 1
