/* bench_hist: a fixed-size log-linear latency histogram for wshub-bench, in the manner
 * of HdrHistogram. Values are nanoseconds (any uint64_t). Values below 128 get a bucket
 * each; above, every power of two [2^e, 2^(e+1)) is split into 64 equal buckets, so a
 * bucket is at most 1/64 (1.6 %) of its value wide and a reported percentile is within
 * 0.8 % of the true one (the bucket midpoint is reported). Recording is a handful of
 * integer instructions and never allocates: the counts live in the struct (30 KiB). */
#ifndef WSHUB_TOOLS_BENCH_HIST_H
#define WSHUB_TOOLS_BENCH_HIST_H

#include <stdint.h>

#define BH_SUB_BITS 6
#define BH_SUB      (1u << BH_SUB_BITS)               /* 64 buckets per octave */
#define BH_BUCKETS  ((64 - BH_SUB_BITS + 1) * BH_SUB) /* covers the whole uint64_t range */

struct bench_hist {
    uint64_t count;
    uint64_t min, max;
    uint64_t sum; /* for the mean (ns: 584 years before it wraps) */
    uint64_t buckets[BH_BUCKETS];
};

static inline unsigned bench_hist_index(uint64_t v)
{
    if (v < 2 * BH_SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 2^e <= v, e >= BH_SUB_BITS + 1 */
    unsigned sub = (unsigned)(v >> (e - BH_SUB_BITS)) & (BH_SUB - 1);
    return (e - BH_SUB_BITS + 1) * BH_SUB + sub;
}

static inline void bench_hist_record(struct bench_hist *h, uint64_t v)
{
    h->buckets[bench_hist_index(v)]++;
    if (h->count == 0 || v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->count++;
    h->sum += v;
}

void bench_hist_reset(struct bench_hist *h);

/* The value at percentile p (0..100]: the midpoint of the bucket holding the
 * ceil(p/100 * count)-th smallest value, clamped to [min, max]. 0 when empty. */
uint64_t bench_hist_percentile(const struct bench_hist *h, double p);

double bench_hist_mean(const struct bench_hist *h);

#endif
