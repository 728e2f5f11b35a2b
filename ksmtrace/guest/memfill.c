/* memfill: the guest program of ksmtrace's test VMs (ksmtrace/vmlab.py).
 *
 * Runs inside a small Linux guest, reads its parameters from the kernel command line
 * (/proc/cmdline, "memfill.KEY=VALUE" words), and fills guest memory with content KSM on
 * the host can merge:
 *
 *   [0, shared)          pages whose content depends only on the seed and the page index:
 *                        identical in every guest booted with the same seed, and distinct
 *                        within one guest (so they merge across guests, not within one)
 *   [shared, +zero)      zero-filled pages (merge with every zero page on the host)
 *   [.., end)            pages unique to this guest (seeded by its name and the clock)
 *
 * Then it prints one readiness line on the console and stays alive. With memfill.rate>0
 * it rewrites the first memfill.churn fraction of the shared pages at that many pages per
 * second, storing each page's first word back unchanged: the content stays the same (so
 * ksmd merges the page again) but every store to a merged page is a copy-on-write on the
 * host.
 *
 * Parameters (defaults in brackets): name [guest], mib [48] MiB to fill, seed [1],
 * shared [0.6] and zero [0.1] fractions of the pages, churn [0.0] fraction of the shared
 * pages rewritten, rate [0] rewrites per second.
 *
 * Built with "gcc -static" by vmlab at test time; keep the output lines in sync with
 * READY_PREFIX and the parser in ksmtrace/vmlab.py.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / sizeof(uint64_t))

struct params {
    char name[64];
    long mib;
    uint64_t seed;
    double shared;
    double zero;
    double churn;
    long rate;
};

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Fill one page from a 64-bit key with a cheap generator (TCG makes every store count). */
static void fill_page(uint64_t *page, uint64_t key)
{
    uint64_t x = splitmix64(key) | 1;
    for (size_t i = 0; i < WORDS; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        page[i] = x;
    }
}

static void parse_word(struct params *p, const char *word)
{
    const char *key = word + strlen("memfill.");
    const char *val = strchr(key, '=');
    if (!val)
        return;
    size_t klen = (size_t)(val - key);
    val++;
    if (klen == 4 && !strncmp(key, "name", 4))
        snprintf(p->name, sizeof(p->name), "%s", val);
    else if (klen == 3 && !strncmp(key, "mib", 3))
        p->mib = atol(val);
    else if (klen == 4 && !strncmp(key, "seed", 4))
        p->seed = strtoull(val, NULL, 0);
    else if (klen == 6 && !strncmp(key, "shared", 6))
        p->shared = atof(val);
    else if (klen == 4 && !strncmp(key, "zero", 4))
        p->zero = atof(val);
    else if (klen == 5 && !strncmp(key, "churn", 5))
        p->churn = atof(val);
    else if (klen == 4 && !strncmp(key, "rate", 4))
        p->rate = atol(val);
}

static void read_params(struct params *p)
{
    char line[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (f) {
        if (!fgets(line, sizeof(line), f))
            line[0] = 0;
        fclose(f);
    }
    for (char *save = NULL, *w = strtok_r(line, " \n", &save); w;
         w = strtok_r(NULL, " \n", &save)) {
        if (!strncmp(w, "memfill.", 8))
            parse_word(p, w);
    }
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void churn_forever(volatile uint64_t *mem, long churn_pages, long rate)
{
    const double tick = 0.1;
    double budget = 0.0, next_status = now_s() + 10.0;
    long cursor = 0;
    unsigned long long done = 0;
    struct timespec pause = {0, 100 * 1000 * 1000};
    for (;;) {
        nanosleep(&pause, NULL);
        if (churn_pages > 0 && rate > 0) {
            budget += (double)rate * tick;
            for (; budget >= 1.0; budget -= 1.0, done++) {
                volatile uint64_t *word = mem + (size_t)cursor * WORDS;
                *word = *word; /* same value: the page stays mergeable */
                cursor = (cursor + 1) % churn_pages;
            }
        }
        if (rate > 0 && now_s() >= next_status) {
            printf("memfill: status rewrites=%llu\n", done);
            fflush(stdout);
            next_status += 10.0;
        }
    }
}

int main(void)
{
    struct params p = {"guest", 48, 1, 0.6, 0.1, 0.0, 0};
    read_params(&p);
    double t0 = now_s();
    long pages = p.mib * (long)(1024 * 1024 / PAGE);
    long shared = (long)(p.shared * (double)pages);
    long zero = (long)(p.zero * (double)pages);
    if (pages <= 0 || shared < 0 || zero < 0 || shared + zero > pages) {
        printf("memfill: error bad parameters mib=%ld shared=%.3f zero=%.3f\n", p.mib,
               p.shared, p.zero);
        fflush(stdout);
        return 1;
    }
    uint64_t *mem = mmap(NULL, (size_t)pages * PAGE, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        printf("memfill: error cannot map %ld MiB\n", p.mib);
        fflush(stdout);
        return 1;
    }
    /* No THP in the guest: guest huge pages would not change what the host sees, but
     * the zeroing of a whole 2 MiB page per fault is slow under TCG. */
    madvise(mem, (size_t)pages * PAGE, MADV_NOHUGEPAGE);
    uint64_t unique_seed = name_hash(p.name) ^ (uint64_t)(now_s() * 1e9);
    for (long i = 0; i < pages; i++) {
        uint64_t *page = mem + (size_t)i * WORDS;
        if (i < shared)
            fill_page(page, p.seed * 0x100000001b3ULL + (uint64_t)i);
        else if (i < shared + zero)
            page[0] = 0; /* touch: the guest kernel hands out a zeroed page */
        else
            fill_page(page, unique_seed + (uint64_t)i * 0x9e3779b97f4a7c15ULL);
    }
    long churn_pages = (long)(p.churn * (double)shared);
    printf("memfill: ready name=%s pages=%ld shared=%ld zero=%ld unique=%ld churn=%ld "
           "rate=%ld fill_s=%.2f\n",
           p.name, pages, shared, zero, pages - shared - zero, churn_pages, p.rate,
           now_s() - t0);
    fflush(stdout);
    churn_forever(mem, churn_pages, p.rate);
    return 0;
}
