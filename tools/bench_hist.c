/* bench_hist: see bench_hist.h. */
#include "bench_hist.h"

#include <math.h>
#include <string.h>

void bench_hist_reset(struct bench_hist *h)
{
    memset(h, 0, sizeof *h);
}

/* Lowest value of bucket i and its width. */
static void bucket_range(unsigned i, uint64_t *low, uint64_t *width)
{
    if (i < 2 * BH_SUB) {
        *low = i;
        *width = 1;
        return;
    }
    unsigned e = i / BH_SUB + BH_SUB_BITS - 1; /* inverse of bench_hist_index */
    unsigned sub = i % BH_SUB;
    unsigned shift = e - BH_SUB_BITS;
    *low = ((uint64_t)(BH_SUB + sub)) << shift;
    *width = (uint64_t)1 << shift;
}

uint64_t bench_hist_percentile(const struct bench_hist *h, double p)
{
    if (h->count == 0) return 0;
    if (p <= 0) return h->min;
    if (p >= 100) return h->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BH_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t low, width;
            bucket_range(i, &low, &width);
            uint64_t v = low + (width - 1) / 2;
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
    }
    return h->max;
}

double bench_hist_mean(const struct bench_hist *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
