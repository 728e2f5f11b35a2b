"""Array layout of the merge engine's state: flag bits, counter slots and sentinels.

The engine keeps its state in flat numpy arrays (see :mod:`ksmtrace.engine.state`) so that
the compiled scan loop can work on them directly. Integers here are compile-time constants
for numba; they mirror fields of ``struct ksm_rmap_item``, ``struct ksm_stable_node`` and
the counters of ``mm/ksm.c``.
"""

from __future__ import annotations

import numpy as np

#: Content id of an address that maps no page (never faulted, unmapped, or process gone).
NOT_PRESENT = np.uint32(0xFFFFFFFF)
#: ``oldchecksum`` of a fresh rmap_item: differs from every content id, so the first visit
#: of any page is "volatile" (the kernel starts from checksum 0).
NO_CHECKSUM = np.uint32(0xFFFFFFFF)
#: ``rmap_hlist_len`` of a stable node chain (``STABLE_NODE_CHAIN`` in mm/ksm.c).
CHAIN = -1024

# --- page flags (u8 per tracked page) --------------------------------------------------
HAS_ITEM = 1  # an rmap_item exists for this address
UNSTABLE = 2  # UNSTABLE_FLAG: the item is in the unstable tree (seq stamp in `seq`)
STABLE = 4  # STABLE_FLAG: the item hangs off stable node `node`
PTE_KSM = 8  # the PTE maps the KSM page of stable node `node`
ZERO_MAPPED = 16  # the PTE maps the zero page, placed by KSM (use_zero_pages)
THP = 32  # the page is part of a PMD-mapped transparent huge page

# --- global slots (int64 array `g`) -------------------------------------------------------
# time and CPU
NOW = 0  # simulated CLOCK_MONOTONIC, ns
CPU_NS = 1  # ksmd's cumulative CPU time, ns
SPENT = 2  # CPU spent so far in the running batch, ns
# counters of /sys/kernel/mm/ksm
SHARED = 3
SHARING = 4
UNSHARED = 5
RMAP_ITEMS = 6
SCANNED = 7
SKIPPED = 8
SEQNR = 9  # full_scans
ZERO_PAGES = 10
CHAINS = 11
DUPS = 12
COW_KSM = 13  # /proc/vmstat cow_ksm
# scan cursor
CUR_SLOT = 14  # mm index, or the sentinel (number of mms)
CUR_POS = 15  # next page index to look at
# knobs
RUN = 16
PAGES_TO_SCAN = 17
SLEEP_MS = 18
MAX_SHARING = 19
USE_ZERO = 20
SMART = 21
PRUNE_MS = 22
ADVISOR = 23  # 0 none, 1 scan-time
ADV_MAX_CPU = 24
ADV_MIN_PAGES = 25
ADV_MAX_PAGES = 26
ADV_TARGET_S = 27
PRE_611 = 28  # 1: 6.7-6.10 order (stable tree searched before the checksum test)
JIFFY_NS = 29
# advisor context
ADV_START = 30
ADV_SCAN_TIME = 31
ADV_CHANGE = 32
ADV_CPU = 33
# input stream positions
CH_POS = 34
OP_POS = 35
# event buffer
EV_COUNT = 36
EV_LOST = 37
RECORD = 38  # 1: write per-page events
# node allocator
NODE_FREE = 39  # head of the free list of stable nodes
NODE_TOP = 40  # first never-used node index
NODE_SHORT = 41  # set when a node was needed but none was free
N_NODES_LIVE = 42
PASS_START = 43  # NOW at the start of the current pass
LAST_PASS_NS = 44  # duration of the last completed pass
SLOTS = 45  # registered mms
STALE_HEAD = 46  # ring of KSM pages freed while their node is still in the tree
STALE_TAIL = 47
RNG = 48  # xorshift64* state (wake-up latency draws)
GLOBAL_SIZE = 52

# --- per-mm statistics (int64 array `mmst`, one row per mm) -----------------------------
MM_RMAP = 0  # ksm_rmap_items
MM_MERGING = 1  # ksm_merging_pages
MM_ZERO = 2  # ksm_zero_pages
MM_SCANNED = 3  # pages handed to cmp_and_merge_page
MM_CPU = 4  # ksmd CPU spent on them, ns
MM_MERGES = 5
MM_COWS = 6
MM_ZERO_MERGES = 7
MM_ZERO_COWS = 8
MM_ALIVE = 9  # 1 while the process exists and has a mergeable VMA
MM_REGISTERED = 10  # 1 while it has an mm slot
MM_START = 11  # first page index
MM_END = 12  # one past the last page index
MM_NEXT = 13  # slot list links (index n_mm is the sentinel ksm_mm_head)
MM_PREV = 14
MM_STAT_SIZE = 16

# --- cost profile (float64 array `cost`, ns) -------------------------------------------
C_KSM = 0  # visit of a page already merged (no checksum)
C_PAGE = 1  # visit of any other page (checksum, tree searches)
C_MERGE = 2  # extra per page merged
C_SKIP = 3  # smart-scan skip
C_PASS = 4  # per full scan (LRU drain, unstable tree reset)
C_BATCH = 5  # per batch (wake-up, locking); keeps time moving at sleep_millisecs=0
C_WAKE = 6  # mean wake-up latency after a sleep (ksmd runs at nice 5), not CPU
C_VOLATILE = 7  # visit that ends at the checksum test (first visit, or content changed)
COST_SIZE = 8

# --- operations on processes and knobs (op_kind) -----------------------------------------
OP_REGISTER = 1  # madvise/prctl: the mm joins KSM (__ksm_enter)
OP_EXIT = 2  # the process exits (__ksm_exit + exit_mmap)
OP_FORK = 3  # op_mm is a child of op_arg, with copies of its pages
OP_KNOB = 4  # op_arg = knob slot in `g` (e.g. PAGES_TO_SCAN), op_val = value

# --- event buffer columns (int64 array `ev`, one row per event) --------------------------
EV_TS = 0
EV_MM = 1
EV_ADDR = 2
EV_VALUE = 3
EV_VALUE2 = 4
EV_KIND = 5
EV_FLAGS = 6
EV_ERR = 7
EV_COLS = 8
