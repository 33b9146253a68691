/* When and how to give freed memory back (see memtrim.h). */
#include "base/memtrim.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define MEMTRIM_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MEMTRIM_SANITIZER 1
#endif
#endif

void memtrim_init(struct memtrim *m, uint64_t now_ms, uint64_t load, uint64_t rss)
{
    *m = (struct memtrim){
        .last_check_ms = now_ms,
        .quiet_since_ms = now_ms,
        .peak = load,
        .prev = load,
        .rss_base = rss,
    };
}

bool memtrim_check(struct memtrim *m, uint64_t now_ms, uint64_t load, uint64_t rss)
{
    if (now_ms - m->last_check_ms < MEMTRIM_CHECK_MS) return false;
    m->last_check_ms = now_ms;
    /* A move of more than a sixteenth of the peak from one check to the next (a load
     * arriving, or a teardown under way: trimming now would miss what the next second
     * frees) restarts the quiet period; the small ups and downs of churn do not. */
    uint64_t step = load > m->prev ? load - m->prev : m->prev - load;
    if (step > m->peak / 16) m->quiet_since_ms = now_ms;
    m->prev = load;
    if (load > m->peak) m->peak = load;
    if (now_ms - m->quiet_since_ms < MEMTRIM_QUIET_MS) return false;
    if (load > m->peak / 2) return false;
    return m->peak - load >= MEMTRIM_MIN_DROP || rss >= m->rss_base + MEMTRIM_RSS_SLACK;
}

void memtrim_done(struct memtrim *m, uint64_t load, uint64_t rss_after)
{
    m->peak = m->prev = load;
    m->rss_base = rss_after;
    m->trims++;
}

uint64_t memtrim_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)resident * (uint64_t)page : 0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t memtrim_run(uint64_t *us)
{
    uint64_t t0 = now_us();
#if defined(__GLIBC__) && !defined(MEMTRIM_SANITIZER)
    /* 0: keep no slack at the top of the main heap; every arena is walked and the
     * whole free pages inside it are released too (glibc >= 2.8). */
    malloc_trim(0);
#endif
    *us = now_us() - t0;
    return memtrim_rss();
}
