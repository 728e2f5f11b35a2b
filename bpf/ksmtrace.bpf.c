// SPDX-License-Identifier: Apache-2.0
// ksmtrace kernel side: KSM merges, copy-on-write unmerges, explicit unmerges and ksmd's
// scan cost per process, from tracepoints only.
//
// Compiled by bcc at run time. No kernel header struct layout is used: every offset and
// constant below the "generated" marker comes from the running kernel's BTF, /proc/kallsyms
// and a start-up calibration, rendered by ksmtrace/probes/program.py.
//
// Generated defines (see program.py): KIND_*, UNMERGE_*, FLAG_*, KSMD_PID, OFF_*, SIZEOF_PAGE,
// LOCK_HELPER_START/END, HAVE_PTWALK, PAGE_OFFSET_BASE, VMEMMAP_BASE, ZERO_PFN, PTE_PFN_MASK,
// PGTABLE_LEVELS, GFP_HIGHMEM, GFP_MOVABLE, GFP_ZERO, MERGED_MAX, RINGBUF_PAGES, FLUSH_PAGES,
// ST_* (stats indices), N_KINDS, N_STATS.

__DEFINES__

// Keep in sync with EVENT_DTYPE in ksmtrace/events.py (56 bytes).
struct ksmtrace_event {
    u64 ts_ns;
    u64 mm;
    u64 addr;
    u64 value;
    u64 value2;
    u32 pid;
    u32 tid;
    s32 err;
    u16 kind;
    u16 flags;
};

// A page of an mm that ksmd merged and nobody has written since: for merge lifetimes.
struct merged_key {
    u64 mm;
    u64 page;
};

// Pages one thread unshared while holding its own mmap lock for writing (see mm_page_alloc).
struct unshare_run {
    u64 mm;
    u64 pages;
    u64 zero_pages;
    u64 first_ns;
    u64 last_ns;
    u32 pid;
    u32 nr;   // system call in progress (orig_ax), to name the kind of unmerge
};

// First half of a pair merge, held until the second half reports success or failure.
struct pair_state {
    u64 mm;
    u64 page;
    u64 pfn;
    u64 ts;
    u32 pid;
    u32 valid;
};

// ksmd's current run of consecutive pages of one mm (see scan_page()).
struct scan_run {
    u64 mm;
    u64 pages;
    u64 ns;
    u64 last_runtime;
    u64 last_vcsw;
    u32 pid;
    u32 pad;
};

// How to tell ksmd's page-scan lock from its other mmap_lock acquisitions (see
// calibrate_scan_site()): the return address the scan site leaves at a fixed stack slot.
struct scan_cfg {
    u64 slot_addr;
    u64 site_ret;
    u64 cand_slot;
    u64 cand_ret;
    u32 votes;
    u32 state;     // SCAN_UNCAL, SCAN_PENDING (next lock is a scan lock), SCAN_READY
    u64 last_ns;
    u64 last_csw;
};

struct fork_link {
    u64 parent_mm;
    u64 ts;
    u32 parent_pid;
    u32 pending;   // ENTER not reported yet: the child's pid is known only at sched_process_fork
};

struct calib_scratch {
    u64 ips[16];
    u64 words[STACK_WINDOW_WORDS];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_F_TABLE("hash", struct merged_key, u64, merged, MERGED_MAX, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct fork_link, forks, 65536, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, u64, exited, 65536, BPF_F_NO_PREALLOC);
BPF_HASH(unshares, u32, struct unshare_run, 4096);
BPF_ARRAY(zero_pages_possible, u64, 1);
BPF_ARRAY(pair, struct pair_state, 1);
BPF_ARRAY(run, struct scan_run, 1);
BPF_ARRAY(scancfg, struct scan_cfg, 1);
// A pause at least this long after a voluntary switch is ksmd sleeping between batches (set
// by user space from sleep_millisecs; 0: learn the scan site only at a full-scan start).
BPF_ARRAY(min_gap, u64, 1);
BPF_ARRAY(lost, u64, N_KINDS);
BPF_ARRAY(stats, u64, N_STATS);
BPF_PERCPU_ARRAY(scratch, struct calib_scratch, 1);

#define SCAN_UNCAL 0
#define SCAN_PENDING 1
#define SCAN_READY 2

static __always_inline u64 rd64(u64 addr)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline u32 rd32(u64 addr)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

static __always_inline void stat_add(u32 idx, u64 n)
{
    u64 *v = stats.lookup(&idx);
    if (v)
        __sync_fetch_and_add(v, n);
}

// Process (thread group) that owns an mm: mm->owner->tgid (mm->owner exists with MEMCG).
static __always_inline u32 mm_owner_tgid(u64 mm)
{
    if (!mm)
        return 0;
    u64 owner = rd64(mm + OFF_MM_OWNER);
    if (!owner)
        return 0;
    return rd32(owner + OFF_TASK_TGID);
}

static __always_inline u64 current_mm(void)
{
    return rd64((u64)bpf_get_current_task() + OFF_TASK_MM);
}

static __always_inline void emit(u16 kind, u64 mm, u64 addr, u64 value, u64 value2, u32 pid,
                                 s32 err, u16 flags, u64 ts)
{
    struct ksmtrace_event *e = events.ringbuf_reserve(sizeof(struct ksmtrace_event));
    if (!e) {
        u32 k = kind;
        u64 *n = lost.lookup(&k);
        if (n)
            __sync_fetch_and_add(n, 1);
        return;
    }
    e->ts_ns = ts;
    e->mm = mm;
    e->addr = addr;
    e->value = value;
    e->value2 = value2;
    e->pid = pid;
    e->tid = (u32)bpf_get_current_pid_tgid();
    e->err = err;
    e->kind = kind;
    e->flags = flags;
    events.ringbuf_submit(e, 0);
}

static __always_inline void remember_merge(u64 mm, u64 page, u64 ts)
{
    struct merged_key k = {.mm = mm, .page = page};
    if (merged.update(&k, &ts) != 0)
        stat_add(ST_MERGED_FULL, 1);
}

// Merge lifetime of (mm, page): now - merge time, or ~0 when the merge was not seen.
// Entries older than the mm's exit are stale (the mm_struct address was reused).
static __always_inline u64 take_lifetime(u64 mm, u64 page, u64 now, u16 *flags)
{
    struct merged_key k = {.mm = mm, .page = page};
    u64 *ts = merged.lookup(&k);
    if (ts) {
        u64 t = *ts;
        merged.delete(&k);
        u64 *gone = exited.lookup(&mm);
        if (gone && *gone > t)
            return ~0ULL;
        return now - t;
    }
    struct fork_link *fl = forks.lookup(&mm);
    if (fl) {
        struct merged_key pk = {.mm = fl->parent_mm, .page = page};
        u64 *pts = merged.lookup(&pk);
        if (pts && *pts < fl->ts) {
            *flags |= FLAG_INHERITED;
            return now - *pts;
        }
    }
    return ~0ULL;
}

// ---------------------------------------------------------------------------------------
// Merges (ksmd context).

RAW_TRACEPOINT_PROBE(ksm_merge_with_ksm_page)
{
    u64 kpage = ctx->args[0];
    u64 pfn = ctx->args[1];
    u64 item = ctx->args[2];
    u64 mm = ctx->args[3];
    s32 err = (s32)ctx->args[4];
    u64 now = bpf_ktime_get_ns();
    u64 page = rd64(item + OFF_RMAP_ADDRESS) & ~0xfffULL;
    u32 pid = mm_owner_tgid(mm);
    u32 zero = 0;
    struct pair_state *ps = pair.lookup(&zero);
    if (!ps)
        return 0;

    if (!kpage) {
        // First half of a pair: this page is becoming the KSM page. Whether the pair
        // survives is known only when the second half reports.
        if (err == 0) {
            ps->mm = mm;
            ps->page = page;
            ps->pfn = pfn;
            ps->ts = now;
            ps->pid = pid;
            ps->valid = 1;
        } else {
            emit(KIND_MERGE_FAILED, mm, page, 0, 0, pid, err, FLAG_PAIR_FIRST, now);
        }
        return 0;
    }

    if (ps->valid && ps->pfn == pfn) {
        ps->valid = 0;
        if (err == 0) {
            emit(KIND_MERGE, ps->mm, ps->page, pfn, 0, ps->pid, 0, FLAG_PAIR_FIRST, ps->ts);
            remember_merge(ps->mm, ps->page, ps->ts);
            emit(KIND_MERGE, mm, page, pfn, 0, pid, 0, FLAG_PAIR_SECOND, now);
            remember_merge(mm, page, now);
        } else {
            // break_cow() now undoes the first half: one cow_ksm, no merge.
            emit(KIND_MERGE_FAILED, mm, page, 0, 0, pid, err, FLAG_PAIR_SECOND, now);
            emit(KIND_UNMERGE, ps->mm, ps->page, 1, 0, ps->pid, 0, UNMERGE_KSMD_UNDO, now);
        }
        return 0;
    }
    ps->valid = 0;

    if (err == 0) {
        emit(KIND_MERGE, mm, page, pfn, 0, pid, 0, FLAG_STABLE, now);
        remember_merge(mm, page, now);
    } else {
        emit(KIND_MERGE_FAILED, mm, page, 0, 0, pid, err, FLAG_STABLE, now);
    }
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_merge_one_page)
{
    u64 item = ctx->args[1];
    u64 mm = ctx->args[2];
    s32 err = (s32)ctx->args[3];
    u64 now = bpf_ktime_get_ns();
    u64 page = rd64(item + OFF_RMAP_ADDRESS) & ~0xfffULL;
    u32 pid = mm_owner_tgid(mm);
    if (err == 0) {
        emit(KIND_ZERO_MERGE, mm, page, 0, 0, pid, 0, 0, now);
        remember_merge(mm, page, now);
    } else {
        emit(KIND_MERGE_FAILED, mm, page, 0, 0, pid, err, 0, now);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Copy-on-write of merged pages by user writes (the faulting task's context).

#if HAVE_PTWALK
// What the PTE of (mm, addr) maps right now: 1 = a KSM page, 2 = a KSM-placed zero page,
// 0 = anything else. Walks the page tables through the direct map (addresses found at
// start-up), reading the struct page's mapping tag as folio_test_ksm() does.
static __always_inline int pte_kind(u64 mm, u64 addr, u64 *pfn_out)
{
    u64 tbl = rd64(mm + OFF_MM_PGD);
    u64 e;
    if (!tbl)
        return 0;
#if PGTABLE_LEVELS == 5
    e = rd64(tbl + ((addr >> 48) & 511) * 8);
    if (!(e & 1))
        return 0;
    tbl = PAGE_OFFSET_BASE + (e & PTE_PFN_MASK);
#endif
    e = rd64(tbl + ((addr >> 39) & 511) * 8);
    if (!(e & 1))
        return 0;
    tbl = PAGE_OFFSET_BASE + (e & PTE_PFN_MASK);
    e = rd64(tbl + ((addr >> 30) & 511) * 8);
    if (!(e & 1) || (e & 0x80))
        return 0;
    tbl = PAGE_OFFSET_BASE + (e & PTE_PFN_MASK);
    e = rd64(tbl + ((addr >> 21) & 511) * 8);
    if (!(e & 1) || (e & 0x80))
        return 0;
    tbl = PAGE_OFFSET_BASE + (e & PTE_PFN_MASK);
    e = rd64(tbl + ((addr >> 12) & 511) * 8);
    if (!(e & 1))
        return 0;
    u64 pfn = (e & PTE_PFN_MASK) >> 12;
    *pfn_out = pfn;
    if (pfn == ZERO_PFN)
        return (e & 0x40) ? 2 : 0;
    u64 mapping = rd64(VMEMMAP_BASE + pfn * SIZEOF_PAGE + OFF_PAGE_MAPPING);
    return (mapping & 3) == 3 ? 1 : 0;
}
#endif

RAW_TRACEPOINT_PROBE(page_fault_user)
{
    u64 err = ctx->args[2];
    // Only a write (bit 1) to a present page (bit 0) can copy a KSM page.
    if ((err & 3) != 3)
        return 0;
    u64 mm = current_mm();
    if (!mm)
        return 0;
    // Only an mm registered with KSM (MMF_VM_MERGEABLE) can map KSM pages: fork children
    // are registered by ksm_fork(), and ksmd drops an mm only when no mergeable VMA is left.
    if (!(rd64(mm + OFF_MM_FLAGS) & (1ULL << MMF_VM_MERGEABLE)))
        return 0;
    u64 page = ctx->args[0] & ~0xfffULL;
    u64 now = bpf_ktime_get_ns();
    u16 flags = 0;
#if HAVE_PTWALK
    u64 pfn = 0;
    int kind = pte_kind(mm, page, &pfn);
    if (!kind)
        return 0;
    u64 life = take_lifetime(mm, page, now, &flags);
    u32 pid = (u32)(bpf_get_current_pid_tgid() >> 32);
    emit(kind == 1 ? KIND_COW : KIND_ZERO_COW, mm, page, life, pfn, pid, 0, flags, now);
#else
    // Without a page-table walk, a write to a page we saw merged is taken as its COW.
    struct merged_key k = {.mm = mm, .page = page};
    if (!merged.lookup(&k))
        return 0;
    u64 life = take_lifetime(mm, page, now, &flags);
    u32 pid = (u32)(bpf_get_current_pid_tgid() >> 32);
    emit(KIND_COW, mm, page, life, 0, pid, 0, flags, now);
#endif
    return 0;
}

// ---------------------------------------------------------------------------------------
// Explicit unmerges. MADV_UNMERGEABLE and PR_SET_MEMORY_MERGE=0 unshare KSM pages while the
// caller holds its own mmap lock for writing; each unshared KSM page costs one order-0
// movable user page allocated without __GFP_ZERO (wp_page_copy), each KSM zero page one
// with __GFP_ZERO. Page faults never hold the mmap lock for writing, so an allocation like
// that inside a write-locked section is an unshare. Counts collect per thread in
// `unshares`; user space reports a run once it has been idle for a moment (see
// LiveSource._harvest_unshares), named after the system call in progress. No syscall
// tracepoint is needed (enabling one would slow every system call on the host).

static __always_inline int holds_own_mmap_write_lock(u64 task, u64 mm)
{
    u64 owner = rd64(mm + OFF_MM_LOCK_OWNER);
    return !(owner & 1) && (owner & ~7ULL) == task;
}

static __always_inline u32 syscall_nr(void)
{
    struct task_struct *t = (struct task_struct *)bpf_get_current_task_btf();
    u64 regs = (u64)bpf_task_pt_regs(t);
    return (u32)rd64(regs + OFF_PT_REGS_ORIG_AX);
}

RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    u64 order = ctx->args[1];
    u64 gfp = ctx->args[2];
    if (order != 0 || !(gfp & GFP_MOVABLE) || !(gfp & GFP_HIGHMEM))
        return 0;
    // Zeroed pages replace KSM zero pages only; most of them are first-touch faults. User
    // space says whether KSM zero pages can exist (use_zero_pages or ksm_zero_pages > 0).
    if (gfp & GFP_ZERO) {
        u32 zero = 0;
        u64 *possible = zero_pages_possible.lookup(&zero);
        if (!possible || !*possible)
            return 0;
    }
    u64 task = (u64)bpf_get_current_task();
    u64 mm = rd64(task + OFF_TASK_MM);
    if (!mm || !holds_own_mmap_write_lock(task, mm))
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();
    struct unshare_run *u = unshares.lookup(&tid);
    if (!u) {
        struct unshare_run fresh = {};
        fresh.mm = mm;
        fresh.first_ns = now;
        fresh.pid = (u32)(bpf_get_current_pid_tgid() >> 32);
        fresh.nr = syscall_nr();
        unshares.update(&tid, &fresh);
        u = unshares.lookup(&tid);
        if (!u)
            return 0;
    }
    if (gfp & GFP_ZERO)
        __sync_fetch_and_add(&u->zero_pages, 1);
    else
        __sync_fetch_and_add(&u->pages, 1);
    u->last_ns = now;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Registration.

RAW_TRACEPOINT_PROBE(ksm_enter)
{
    u64 mm = ctx->args[0];
    u64 cur = current_mm();
    u64 now = bpf_ktime_get_ns();
    u32 me = (u32)(bpf_get_current_pid_tgid() >> 32);
    if (cur && cur != mm) {
        // dup_mmap() registers the child's mm from the parent, before the child has a pid
        // of its own: report it from sched_process_fork.
        struct fork_link fl = {.parent_mm = cur, .ts = now, .parent_pid = me, .pending = 1};
        forks.update(&mm, &fl);
        return 0;
    }
    emit(KIND_ENTER, mm, 0, me, 0, mm_owner_tgid(mm), 0, 0, now);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    u64 child = ctx->args[1];
    u64 mm = rd64(child + OFF_TASK_MM);
    if (!mm)
        return 0;
    struct fork_link *fl = forks.lookup(&mm);
    if (!fl || !fl->pending)
        return 0;
    fl->pending = 0;
    emit(KIND_ENTER, mm, 0, fl->parent_pid, 0, rd32(child + OFF_TASK_TGID), 0, FLAG_FORK,
         bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_exit)
{
    u64 mm = ctx->args[0];
    u64 now = bpf_ktime_get_ns();
    exited.update(&mm, &now);
    forks.delete(&mm);
    // exit_mm() has usually cleared mm->owner by now (no other user of the mm); the task
    // doing the last mmput() is then the exiting process itself.
    u32 pid = mm_owner_tgid(mm);
    if (!pid)
        pid = (u32)(bpf_get_current_pid_tgid() >> 32);
    emit(KIND_EXIT, mm, 0, 0, 0, pid, 0, 0, now);
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_remove_ksm_page)
{
    u16 flags = ((u32)bpf_get_current_pid_tgid() == KSMD_PID) ? 0 : FLAG_FOREIGN;
    emit(KIND_REMOVE_KSM_PAGE, 0, 0, 0, 0, 0, 0, flags, bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_remove_rmap_item)
{
    u64 item = ctx->args[1];
    u64 mm = ctx->args[2];
    u64 page = rd64(item + OFF_RMAP_ADDRESS) & ~0xfffULL;
    struct merged_key k = {.mm = mm, .page = page};
    merged.delete(&k);
    u16 flags = ((u32)bpf_get_current_pid_tgid() == KSMD_PID) ? 0 : FLAG_FOREIGN;
    emit(KIND_REMOVE_RMAP_ITEM, mm, page, 0, 0, mm_owner_tgid(mm), 0, flags,
         bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_advisor)
{
    emit(KIND_ADVISOR, 0, 0, ctx->args[0], ctx->args[1], 0, (s32)ctx->args[2], 0,
         bpf_ktime_get_ns());
    return 0;
}

// ---------------------------------------------------------------------------------------
// Scan cost. ksmd takes mmap_read_lock(mm) once per page it hands to cmp_and_merge_page()
// (the "scan site" in scan_get_next_rmap_item()), once more per mm when it finds no further
// page there, and also for unstable-tree lookups, merges and undo at other sites. The scan
// site is recognised by the return address it leaves in one fixed slot of ksmd's stack;
// calibrate_scan_site() learns both from the first lock after ksm_start_scan (always the
// scan site) or from three batches in a row that agree.

static __always_inline u64 ksmd_vcsw(void)
{
    return rd64((u64)bpf_get_current_task() + OFF_TASK_NVCSW);
}

static __always_inline u64 ksmd_runtime(void)
{
    return rd64((u64)bpf_get_current_task() + OFF_TASK_RUNTIME);
}

static __always_inline void flush_run(struct scan_run *r, u64 pages)
{
    if (r->mm && (pages || r->ns))
        emit(KIND_SCAN, r->mm, 0, pages, r->ns, r->pid, 0, 0, bpf_ktime_get_ns());
    r->ns = 0;
}

static __always_inline void scan_page(u64 mm)
{
    u32 zero = 0;
    struct scan_run *r = run.lookup(&zero);
    if (!r)
        return;
    // CPU: the scheduler's sum_exec_runtime, committed at every tick and context switch,
    // charged to the run in progress when the commit becomes visible. Exact in total,
    // blurred by at most one tick where ksmd moves from one mm to the next. CPU spent
    // between passes goes to a SCAN event with mm 0 (pass overhead).
    u64 rt = ksmd_runtime();
    u64 vcsw = ksmd_vcsw();
    if (r->last_runtime) {
        if (r->mm)
            r->ns += rt - r->last_runtime;
        else if (rt > r->last_runtime)
            // Between passes (LRU drain, unstable tree reset, sleeping): nobody's page.
            emit(KIND_SCAN, 0, 0, 0, rt - r->last_runtime, 0, 0, 0, bpf_ktime_get_ns());
    }
    if (r->mm && vcsw != r->last_vcsw && mm == r->mm && r->pages > 1) {
        // ksmd slept (end of a batch): report the run so far, keeping one page back.
        flush_run(r, r->pages - 1);
        r->pages = 1;
    }
    if (mm != r->mm) {
        // The previous mm's last scan lock found no page (end of its address space).
        if (r->mm && r->pages)
            r->pages -= 1;
        flush_run(r, r->pages);
        r->mm = mm;
        r->pid = mm_owner_tgid(mm);
        r->pages = 0;
    }
    r->pages += 1;
    r->last_runtime = rt;
    r->last_vcsw = vcsw;
    if (r->pages > FLUSH_PAGES) {
        // Keep one page back: it may turn out to be the end-of-mm lock.
        flush_run(r, r->pages - 1);
        r->pages = 1;
    }
}

static __always_inline int calibrate_scan_site(struct bpf_raw_tracepoint_args *ctx,
                                               struct scan_cfg *cfg, int certain)
{
    u32 zero = 0;
    struct calib_scratch *s = scratch.lookup(&zero);
    if (!s)
        return 0;
    stat_add(ST_CALIB_TRIES, 1);
    long n = bpf_get_stack(ctx, s->ips, sizeof(s->ips), 0);
    if (n <= 0)
        return 0;
    // The caller of the mmap_lock trace helper is the frame after it.
    u64 site = 0;
#pragma unroll
    for (int i = 0; i < 15; i++) {
        if (s->ips[i] >= LOCK_HELPER_START && s->ips[i] < LOCK_HELPER_END) {
            site = s->ips[i + 1];
            break;
        }
    }
    if (!site)
        return 0;
    u64 base = rd64((u64)bpf_get_current_task() + OFF_TASK_STACK);
    u64 window = base + THREAD_SIZE - STACK_WINDOW_WORDS * 8;
    if (bpf_probe_read_kernel(s->words, sizeof(s->words), (void *)window) != 0)
        return 0;
    // Search from the top of the stack down: the live return address sits just below
    // ksm_scan_thread's frame; stale copies of the same value can linger deeper, in the
    // dead area below the current stack pointer.
    u64 slot = 0;
    for (int i = STACK_WINDOW_WORDS - 1; i >= 0; i--) {
        if (s->words[i] == site) {
            slot = window + i * 8;
            break;
        }
    }
    if (!slot)
        return 0;
    if (certain) {
        cfg->slot_addr = slot;
        cfg->site_ret = site;
        cfg->state = SCAN_READY;
        return 1;
    }
    if (cfg->cand_slot == slot && cfg->cand_ret == site) {
        cfg->votes += 1;
    } else {
        cfg->cand_slot = slot;
        cfg->cand_ret = site;
        cfg->votes = 1;
    }
    if (cfg->votes >= 3) {
        cfg->slot_addr = slot;
        cfg->site_ret = site;
        cfg->state = SCAN_READY;
        return 1;
    }
    return 0;
}

// Attached by user space (LiveSource) to raw tracepoint mmap_lock_acquire_returned, all the
// time ("exact" scan cost) or one interval in several ("sampled"): every mmap_lock
// acquisition on the host runs this, which is the largest overhead of the probe set.
int scan_lock(struct bpf_raw_tracepoint_args *ctx)
{
    if ((u32)bpf_get_current_pid_tgid() != KSMD_PID)
        return 0;
    u32 zero = 0;
    struct scan_cfg *cfg = scancfg.lookup(&zero);
    if (!cfg)
        return 0;
    u64 mm = ctx->args[0];
    u64 now = bpf_ktime_get_ns();
    if (cfg->state != SCAN_READY) {
        int ok = 0;
        if (cfg->state == SCAN_PENDING) {
            ok = calibrate_scan_site(ctx, cfg, 1);
            if (!ok)
                cfg->state = SCAN_UNCAL;
        } else {
            // The first lock of a batch (after ksmd slept) is a scan lock too.
            u64 vcsw = ksmd_vcsw();
            u64 *gap = min_gap.lookup(&zero);
            if (gap && *gap && cfg->last_ns && vcsw != cfg->last_csw &&
                now - cfg->last_ns > *gap)
                ok = calibrate_scan_site(ctx, cfg, 0);
            cfg->last_csw = vcsw;
        }
        cfg->last_ns = now;
        if (!ok) {
            stat_add(ST_UNCAL_LOCKS, 1);
            return 0;
        }
        stat_add(ST_CALIBRATED, 1);
        scan_page(mm);
        stat_add(ST_SCAN_LOCKS, 1);
        return 0;
    }
    if (rd64(cfg->slot_addr) != cfg->site_ret) {
        stat_add(ST_OTHER_LOCKS, 1);
        return 0;
    }
    stat_add(ST_SCAN_LOCKS, 1);
    scan_page(mm);
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_start_scan)
{
    u32 zero = 0;
    struct scan_cfg *cfg = scancfg.lookup(&zero);
    if (cfg && cfg->state != SCAN_READY)
        cfg->state = SCAN_PENDING;
    emit(KIND_SCAN_START, 0, ksmd_runtime(), (u32)ctx->args[0], (u32)ctx->args[1], 0, 0, 0,
         bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(ksm_stop_scan)
{
    u32 zero = 0;
    u64 now = bpf_ktime_get_ns();
    struct scan_run *r = run.lookup(&zero);
    struct scan_cfg *cfg = scancfg.lookup(&zero);
    if (r && cfg && cfg->state == SCAN_READY && r->mm) {
        // The lock just before the end of a pass found no page in the last mm.
        if (r->pages)
            r->pages -= 1;
        r->ns += ksmd_runtime() - r->last_runtime;
        r->last_runtime = ksmd_runtime();
        flush_run(r, r->pages);
        r->mm = 0;
        r->pages = 0;
    }
    emit(KIND_SCAN_STOP, 0, ksmd_runtime(), (u32)ctx->args[0], (u32)ctx->args[1], 0, 0, 0,
         now);
    return 0;
}
