/* Page-fault and mmap microbenchmarks for measuring ksmtrace's tracing overhead.
 *
 * usage: faultbench MODE SECONDS
 *   touch   first-touch write faults on fresh anonymous pages (64 MiB region, unmapped and
 *           remapped each round): not-present faults, the common case
 *   rwfault read each page first (maps the zero page), then write it: present+write faults,
 *           the case ksmtrace inspects most closely
 *   mmap    mmap 64 KiB, touch one page, munmap: mmap_lock traffic and syscalls
 * prints: "<operations> <nanoseconds per operation>"
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    const char *mode = argv[1];
    double secs = atof(argv[2]);
    const size_t region = 64UL << 20, page = 4096;
    unsigned long ops = 0;
    volatile char sink = 0;
    double start = now(), end = start + secs;
    while (now() < end) {
        if (!strcmp(mode, "mmap")) {
            for (int i = 0; i < 1000; i++) {
                char *p = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED)
                    return 1;
                p[0] = 1;
                munmap(p, 65536);
                ops++;
            }
            continue;
        }
        char *p = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        madvise(p, region, MADV_NOHUGEPAGE);
        if (!strcmp(mode, "rwfault"))
            for (size_t off = 0; off < region; off += page)
                sink += p[off];
        for (size_t off = 0; off < region; off += page)
            p[off] = 1;
        munmap(p, region);
        ops += region / page;
    }
    double took = now() - start;
    printf("%lu %.1f\n", ops, took * 1e9 / ops);
    return sink == 42;
}
