// SPDX-License-Identifier: Apache-2.0
// ksmtrace start-up calibration: where this boot's kernel put the direct map and the
// struct page array (KASLR moves both), so the main program can check at a write fault
// whether the faulting address maps a KSM page.
//
// Driven by ksmtrace/probes/calibrate.py, which touches a page of its own (the allocation
// is seen here in mm_page_alloc), writes a random marker into it, learns its frame number
// from /proc/self/pagemap, and then calls getppid(), whose sys_enter runs the search below.
// Generated defines: CALIB_TID, OFF_TASK_MM, OFF_MM_PGD, N_CANDIDATES, PTE_PFN_MASK,
// PGTABLE_LEVELS, GETPPID_NR.

__DEFINES__

struct calib_in {
    u64 pfn;
    u64 vaddr;
    u64 marker[2];
};

struct calib_out {
    u64 mm;
    u64 page_offset_base;
    u64 walked_pte;
    u64 npages;
    u64 pages[32];
};

BPF_ARRAY(cin, struct calib_in, 1);
BPF_ARRAY(cout, struct calib_out, 1);

RAW_TRACEPOINT_PROBE(mm_page_alloc)
{
    if ((u32)bpf_get_current_pid_tgid() != CALIB_TID || ctx->args[1] != 0)
        return 0;
    u32 zero = 0;
    struct calib_out *o = cout.lookup(&zero);
    if (!o)
        return 0;
    u64 n = o->npages;
    if (n < 32) {
        o->pages[n & 31] = ctx->args[0];
        o->npages = n + 1;
    }
    return 0;
}

static __always_inline u64 rd64(u64 addr)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
    return v;
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
    if ((u32)bpf_get_current_pid_tgid() != CALIB_TID || ctx->args[1] != GETPPID_NR)
        return 0;
    u32 zero = 0;
    struct calib_in *in = cin.lookup(&zero);
    struct calib_out *o = cout.lookup(&zero);
    if (!in || !o)
        return 0;
    u64 mm = rd64((u64)bpf_get_current_task() + OFF_TASK_MM);
    o->mm = mm;
    // The direct map starts on a 1 GiB boundary at or below any object it maps (mm_struct
    // is one). Try each boundary until the marker shows up at base + pfn * 4096.
    u64 top = mm & ~((1ULL << 30) - 1);
    u64 phys = in->pfn << 12;
    for (int k = 0; k < N_CANDIDATES; k++) {
        u64 base = top - ((u64)k << 30);
        u64 got[2] = {};
        if (bpf_probe_read_kernel(got, sizeof(got), (void *)(base + phys)) != 0)
            continue;
        if (got[0] == in->marker[0] && got[1] == in->marker[1]) {
            o->page_offset_base = base;
            break;
        }
    }
    u64 pob = o->page_offset_base;
    if (!pob)
        return 0;
    // Walk our own page table for the marker page, to prove the walk the main program does.
    u64 addr = in->vaddr;
    u64 tbl = rd64(mm + OFF_MM_PGD);
    u64 e;
#if PGTABLE_LEVELS == 5
    e = rd64(tbl + ((addr >> 48) & 511) * 8);
    tbl = pob + (e & PTE_PFN_MASK);
#endif
    e = rd64(tbl + ((addr >> 39) & 511) * 8);
    tbl = pob + (e & PTE_PFN_MASK);
    e = rd64(tbl + ((addr >> 30) & 511) * 8);
    tbl = pob + (e & PTE_PFN_MASK);
    e = rd64(tbl + ((addr >> 21) & 511) * 8);
    tbl = pob + (e & PTE_PFN_MASK);
    o->walked_pte = rd64(tbl + ((addr >> 12) & 511) * 8);
    return 0;
}
