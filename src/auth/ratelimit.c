/* Token buckets (see ratelimit.h). Tokens are kept in thousandths, and since `rate`
 * tokens per second is exactly `rate` thousandths per millisecond, a refill is one
 * integer product with nothing rounded away: a bucket at 1/s polled every 300 ms
 * gains 300 thousandths each time and allows the fourth call. Every product is
 * bounded before it is formed, so any clock value, however far from the last one,
 * is safe. */
#include "auth/ratelimit.h"

#include <stddef.h>

#define MILLI     1000u
#define LIMIT_MAX 1000000u /* keeps burst * MILLI inside tokens_milli */

/* Bucket size in thousandths; clamped (to whole tokens) so that a struct filled in by
 * hand with values rate_limit_parse would refuse still cannot overflow. */
static uint32_t capacity(const struct rate_limit *l)
{
    uint64_t burst = l->burst ? l->burst : l->rate;
    uint64_t cap = burst * MILLI;
    return cap > UINT32_MAX ? UINT32_MAX / MILLI * MILLI : (uint32_t)cap;
}

void rate_bucket_init(struct rate_bucket *b, const struct rate_limit *l, uint64_t now_ms)
{
    b->last_ms = now_ms;
    b->tokens_milli = capacity(l);
}

bool rate_bucket_take(struct rate_bucket *b, const struct rate_limit *l, uint64_t now_ms)
{
    if (l->rate == 0) return true;
    uint32_t cap = capacity(l);
    /* The limits may have been lowered since the bucket was filled. */
    if (b->tokens_milli > cap) b->tokens_milli = cap;
    /* A clock that went back counts as no time passed; the bucket then follows the new
     * clock, rather than waiting for it to catch up with the old one. */
    if (now_ms > b->last_ms) {
        uint64_t elapsed = now_ms - b->last_ms;
        uint64_t need = cap - b->tokens_milli;
        if (elapsed >= (need + l->rate - 1) / l->rate)
            b->tokens_milli = cap;
        else /* elapsed * rate < need + rate, far from overflowing */
            b->tokens_milli += (uint32_t)(elapsed * l->rate);
    }
    b->last_ms = now_ms;
    if (b->tokens_milli < MILLI) return false;
    b->tokens_milli -= MILLI;
    return true;
}

/* 1*DIGIT up to LIMIT_MAX; advances *s past it. */
static int parse_count(const char **s, uint32_t *out)
{
    const char *p = *s;
    uint32_t v = 0;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint32_t)(*p - '0');
        if (v > LIMIT_MAX) return -1;
    }
    *s = p;
    *out = v;
    return 0;
}

int rate_limit_parse(const char *s, struct rate_limit *out)
{
    uint32_t rate, burst = 0;
    if (!s || !out || parse_count(&s, &rate) != 0) return -1;
    if (*s == '/') {
        s++;
        /* "0/N" is refused: it reads like a limit, yet 0 means none. So is "N/0": an
         * explicit burst of nothing would refuse everything. */
        if (parse_count(&s, &burst) != 0 || rate == 0 || burst == 0) return -1;
    }
    if (*s != '\0') return -1;
    out->rate = rate;
    out->burst = burst;
    return 0;
}
