/* The scratch block for threads that own no worker (main thread, unit tests). */
#include "base/stats.h"

#include <time.h>

static struct wh_stats stats_scratch;
_Thread_local struct wh_stats *stats_cur = &stats_scratch;

/* In-process hand-offs take microseconds; the top end catches a stalled worker. */
const uint64_t stats_latency_bounds_us[STATS_LATENCY_BUCKETS - 1] = {
    5,    10,    25,    50,    100,    250,    500,    1000,    2500,
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000};

uint64_t stats_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void stat_latency(uint64_t us, uint64_t n)
{
    unsigned i = 0;
    while (i < STATS_LATENCY_BUCKETS - 1 && us > stats_latency_bounds_us[i])
        i++;
    STAT_ADD(hub_latency_buckets[i], n);
    STAT_ADD(hub_latency_sum_us, us * n);
}
