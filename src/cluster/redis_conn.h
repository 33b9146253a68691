/* One managed connection to one Redis server, living on one event loop (issue 12;
 * built and tested, not wired into the hub yet).
 *
 * - Connects (redisAsyncConnect, non-blocking; a host name is resolved by hiredis with
 *   getaddrinfo, which blocks: give an address, or resolve before the loop runs), then
 *   pipelines [AUTH [user] password] [SELECT db] [SCRIPT LOAD ...] PING. The connection is
 *   up when all of them succeeded; the state callback then says so.
 * - When the connection fails, drops, stalls (a command unanswered for
 *   command_timeout_ms) or the handshake is refused, every pending command's callback
 *   gets reply NULL, the state callback says down (if it was up), and a reconnect is
 *   armed after a full-jitter exponential backoff: uniform in [0, min(cap, base * 2^n)]
 *   for the n-th failure in a row (n reset once up). A wrong password therefore retries
 *   at most every backoff_max_ms, and is counted.
 * - Commands are refused (-1) while the connection is not up: the caller answers its
 *   client `unavailable` instead of losing the message silently.
 * - Counters in struct redis_stats, written by the loop thread only with relaxed atomic
 *   stores (read them with __atomic_load_n; a
 *   metrics reader on another thread gets relaxed, possibly torn-by-field, figures).
 *
 * Ownership: the caller owns the redis_conn (create/destroy) and each callback's arg.
 * Replies are valid only during their callback. Loop thread only; redis_conn_destroy
 * must not be called from inside a reply or state callback. */
#ifndef WSHUB_CLUSTER_REDIS_CONN_H
#define WSHUB_CLUSTER_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "cluster/redis_url.h"
#include "loop/loop.h"

/* Round-trip histogram upper bounds, microseconds (the last bucket is +Inf). */
#define REDIS_RTT_BUCKETS 10
extern const uint32_t redis_rtt_bounds_us[REDIS_RTT_BUCKETS - 1];

struct redis_stats {
    uint64_t commands;      /* sent (handshake included) */
    uint64_t replies;       /* received, error replies included */
    uint64_t error_replies; /* "-ERR ..." and friends */
    uint64_t bytes_out;     /* RESP bytes of the commands sent */
    uint64_t bytes_in;      /* payload bytes of the messages received (subscriber) */
    uint64_t messages;      /* pub/sub messages received (subscriber) */
    uint64_t connects;      /* times the connection came up */
    uint64_t reconnects;    /* connection attempts after a failure */
    uint64_t failures;      /* failed attempts and lost connections */
    uint64_t auth_failures; /* handshake (AUTH/SELECT) refused */
    uint64_t timeouts;      /* connections dropped for a stalled command or connect */
    uint64_t refused;       /* commands refused because the connection was down */
    uint64_t rtt_count, rtt_sum_us;
    uint64_t rtt_hist[REDIS_RTT_BUCKETS]; /* non-cumulative */
};

struct redis_conn;

struct redis_conn_opts {
    struct redis_url url;
    uint32_t connect_timeout_ms; /* 0: 2000 */
    uint32_t command_timeout_ms; /* 0: 5000 */
    uint32_t backoff_base_ms;    /* 0: 100 */
    uint32_t backoff_max_ms;     /* 0: 5000 */
    /* Lua sources SCRIPT LOADed during every handshake (NULL-terminated; the array and
     * strings must outlive the connection), so that EVALSHA finds them from the first
     * command on and a connection's commands are never reordered by a NOSCRIPT retry. */
    const char *const *preload;
    /* A subscriber connection (redis_conn_subscribe): messages go to on_message, and
     * every channel's subscription is confirmed through on_subscribed. Such a
     * connection takes no other command once it has subscribed. */
    void (*on_message)(struct redis_conn *rc, const char *channel, size_t channel_len,
                       const char *msg, size_t msg_len, void *arg);
    void (*on_subscribed)(struct redis_conn *rc, const char *channel, size_t channel_len,
                          void *arg);
};

struct redis_conn;

typedef void (*redis_state_cb)(struct redis_conn *rc, bool up, void *arg);
/* reply is NULL when the connection was lost (or destroyed) before the answer. */
typedef void (*redis_reply_cb)(struct redis_conn *rc, const redisReply *reply, void *arg);

/* Starts connecting at once. Returns NULL only when out of memory. */
struct redis_conn *redis_conn_create(struct loop *loop, const struct redis_conn_opts *opts,
                                     redis_state_cb state_cb, void *arg);
/* Frees the connection; pending callbacks get NULL first. The state callback is not
 * called. */
void redis_conn_destroy(struct redis_conn *rc);

bool redis_conn_up(const struct redis_conn *rc);

/* Queues one command (binary-safe arguments). Returns 0, or -1 when the connection is
 * not up (counted in refused) or out of memory; cb is then never called. */
int redis_conn_command(struct redis_conn *rc, redis_reply_cb cb, void *arg, int argc,
                       const char **argv, const size_t *argvlen);

/* SUBSCRIBE / UNSUBSCRIBE to n channels (a subscriber connection: opts.on_message set).
 * Confirmations and messages come through the opts' callbacks, with the state
 * callback's arg. Subscriptions do not survive a reconnect: the owner subscribes again
 * when the state callback says up. Returns 0, or -1 when not up (nothing sent). */
int redis_conn_subscribe(struct redis_conn *rc, bool subscribe, int n, const char **channels,
                         const size_t *lens);

/* A decimal in a reply (1-19 digits, nothing else) to *out: 0, or -1. Shared by the
 * scripts' reply parsers (rstream.c, presence.c). */
int redis_parse_u64(const char *s, size_t len, uint64_t *out);

const struct redis_stats *redis_conn_stats(const struct redis_conn *rc);

/* The full-jitter backoff: uniform in [0, min(cap_ms, base_ms * 2^failures)], drawing
 * from *rng (any seed; advanced). Exposed for the unit test. */
uint32_t redis_backoff_ms(uint32_t failures, uint32_t base_ms, uint32_t cap_ms, uint64_t *rng);

#endif
