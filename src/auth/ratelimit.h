/* Token buckets for message rates: `rate` tokens per second, at most `burst` stored.
 * One bucket per connection lives in the connection; one per user lives in the user
 * entry of the worker's shard (a user's connections on different workers each draw
 * from their worker's bucket for that user, so the per-user rate is enforced per
 * worker: documented in docs/security.md). Pure arithmetic on a caller-supplied
 * clock: no allocation, no locking, no global state. rate == 0 disables a bucket. */
#ifndef WSHUB_AUTH_RATELIMIT_H
#define WSHUB_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct rate_bucket {
    uint64_t last_ms;      /* when tokens were last added */
    uint32_t tokens_milli; /* tokens * 1000, so fractional refills are not lost */
};

struct rate_limit {
    uint32_t rate;  /* tokens per second; 0 = unlimited */
    uint32_t burst; /* bucket size; 0 means equal to rate */
};

/* A full bucket. */
void rate_bucket_init(struct rate_bucket *b, const struct rate_limit *l, uint64_t now_ms);

/* Takes one token if there is one: true when allowed. A now_ms earlier than the last
 * call counts as no time passed (and later calls refill from it); any gap, however
 * large, at most fills the bucket. */
bool rate_bucket_take(struct rate_bucket *b, const struct rate_limit *l, uint64_t now_ms);

/* Parses "RATE" or "RATE/BURST" (e.g. "20/40"); "0" disables. Each number is plain
 * digits (no sign, no spaces) up to 1000000; a burst must be at least 1 and comes
 * only with a non-zero rate ("0/5" and "20/0" are refused). "RATE" alone gives burst
 * 0, i.e. equal to the rate. Returns 0, or -1 leaving *out unchanged. */
int rate_limit_parse(const char *s, struct rate_limit *out);

#endif
