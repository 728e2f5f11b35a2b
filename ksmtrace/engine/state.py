"""The merge engine's state arrays and their allocation (plain numpy, compiled code works on them).

Per tracked page (an address of a mergeable region that the workload ever maps) the engine
keeps 20 bytes: the current content id, the content id of the last checksum
(``oldchecksum``), the stable node of its item or PTE, the next item on that node, and four
bytes of flags, age, remaining skips and unstable-tree sequence stamp. Per shareable
content (one that two or more pages hold at some time) it keeps 9 bytes (stable-tree head,
unstable-tree item, zero flag); per KSM page (stable node) 32 bytes. The virtual page
numbers are part of the workload, not of the state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ksmtrace.engine.layout import (
    CUR_SLOT,
    GLOBAL_SIZE,
    MM_END,
    MM_NEXT,
    MM_PREV,
    MM_START,
    MM_STAT_SIZE,
    NO_CHECKSUM,
    NODE_FREE,
    NODE_TOP,
    STALE_HEAD,
    STALE_TAIL,
)

U32 = npt.NDArray[np.uint32]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]


class Pages(NamedTuple):
    """Per tracked page: the PTE's content and the rmap_item's fields (``struct ksm_rmap_item``)."""

    content: U32
    oldsum: U32
    node: I32
    next_item: I32
    flags: U8
    age: U8
    skips: U8
    seq: U8
    addr: U64


class Nodes(NamedTuple):
    """Per stable node (``struct ksm_stable_node``): regular nodes, chains and dups."""

    content: U32
    hlen: I32  # rmap_hlist_len, CHAIN for chains
    mapcount: I32  # PTEs mapping the KSM page; 0 means freed, so the node is stale
    items: I32  # first rmap_item (regular, dup) or first dup (chain)
    next_dup: I32  # next dup of the same chain, or next free node
    chain: I32  # chain of a dup, -1 for a regular node
    t_ms: U32  # creation time (regular, dup) or chain_prune_time (chain), simulated ms
    stale: I32  # ring of nodes whose KSM page was freed (mapcount reached 0), oldest first


class Tables(NamedTuple):
    """Per distinct content: the stable and unstable trees, indexed by content id."""

    stable_head: I32
    unstable_item: I32
    is_zero: U8


class Stream(NamedTuple):
    """Time-ordered inputs: content changes per page and operations on processes/knobs."""

    ch_t: I64
    ch_page: I32
    ch_val: U32
    op_t: I64
    op_kind: I32
    op_mm: I32
    op_arg: I64
    op_val: I64


def new_pages(content: U32, addr: U64, thp: U8) -> Pages:
    """Fresh page state: no rmap_items yet, the given contents and THP flags."""
    n = len(content)
    return Pages(
        content=content.astype(np.uint32, copy=True),
        oldsum=np.full(n, NO_CHECKSUM, dtype=np.uint32),
        node=np.full(n, -1, dtype=np.int32),
        next_item=np.full(n, -1, dtype=np.int32),
        flags=thp.astype(np.uint8, copy=True),
        age=np.zeros(n, dtype=np.uint8),
        skips=np.zeros(n, dtype=np.uint8),
        seq=np.zeros(n, dtype=np.uint8),
        addr=addr,
    )


def new_nodes(capacity: int) -> Nodes:
    """An empty node pool of ``capacity`` nodes."""
    return Nodes(
        content=np.zeros(capacity, dtype=np.uint32),
        hlen=np.zeros(capacity, dtype=np.int32),
        mapcount=np.zeros(capacity, dtype=np.int32),
        items=np.full(capacity, -1, dtype=np.int32),
        next_dup=np.full(capacity, -1, dtype=np.int32),
        chain=np.full(capacity, -1, dtype=np.int32),
        t_ms=np.zeros(capacity, dtype=np.uint32),
        stale=np.full(capacity, -1, dtype=np.int32),
    )


def grow_nodes(nodes: Nodes, g: I64, capacity: int) -> Nodes:
    """A copy of ``nodes`` with room for ``capacity`` nodes (the new ones never used).

    The stale ring is unrolled so that its entries stay in order in the bigger ring.
    """
    fresh = new_nodes(capacity)
    n = len(nodes.content)
    for name in Nodes._fields:
        if name != "stale":
            getattr(fresh, name)[:n] = getattr(nodes, name)
    count = int(g[STALE_TAIL] - g[STALE_HEAD])
    idx = (g[STALE_HEAD] + np.arange(count)) % n
    fresh.stale[:count] = nodes.stale[idx]
    g[STALE_HEAD] = 0
    g[STALE_TAIL] = count
    return fresh


def new_tables(is_zero: U8) -> Tables:
    """Empty stable and unstable trees for ``len(is_zero)`` distinct contents."""
    d = len(is_zero)
    return Tables(
        stable_head=np.full(d, -1, dtype=np.int32),
        unstable_item=np.full(d, -1, dtype=np.int32),
        is_zero=is_zero.astype(np.uint8, copy=True),
    )


def new_globals() -> I64:
    """The global counters and cursor, all zero except the node allocator."""
    g = np.zeros(GLOBAL_SIZE, dtype=np.int64)
    g[NODE_FREE] = -1
    g[NODE_TOP] = 0
    return g


def new_mm_table(starts: I64, ends: I64) -> I64:
    """Per-mm statistics rows plus the sentinel row ``ksm_mm_head`` (an empty slot list)."""
    n = len(starts)
    mmst = np.zeros((n + 1, MM_STAT_SIZE), dtype=np.int64)
    mmst[:n, MM_START] = starts
    mmst[:n, MM_END] = ends
    mmst[n, MM_NEXT] = n
    mmst[n, MM_PREV] = n
    return mmst


def cursor_at_sentinel(g: I64, n_mm: int) -> None:
    """Park the scan cursor on ``ksm_mm_head`` (between passes)."""
    g[CUR_SLOT] = n_mm


def state_bytes(pages: Pages, nodes: Nodes, tables: Tables, live_nodes: int) -> dict[str, int]:
    """Bytes of mutable state: per page, per shareable content, and in live stable nodes."""
    per_page = sum(a.itemsize for a in pages[:-1])
    per_node = sum(a.itemsize for a in nodes)
    per_content = sum(a.itemsize for a in tables)
    return {
        "pages": per_page * len(pages.content),
        "contents": per_content * len(tables.is_zero),
        "nodes": per_node * live_nodes,
        "per_page_bytes": per_page,
        "per_content_bytes": per_content,
        "per_node_bytes": per_node,
    }
