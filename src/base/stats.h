/* Per-worker counters. Each worker thread owns one struct wh_stats and is its only
 * writer, so an increment is a plain load and store (no locked instruction on the hot
 * path); readers on other threads (/metrics, the exporter) use relaxed atomic loads
 * and sum over workers. Code anywhere below the worker counts into stats_cur, the
 * calling thread's block (a shared scratch block on threads that own none). */
#ifndef WSHUB_BASE_STATS_H
#define WSHUB_BASE_STATS_H

#include <stdint.h>

#define STATS_CLOSE_CODES 16 /* close codes 1000..1015 by code - 1000 */

/* Why an upgrade was refused (handshake_reason[]; labels in telemetry/metrics.c). */
enum stats_hs_reason {
    HSR_BAD_REQUEST,  /* 400/405: not a valid RFC 6455 upgrade */
    HSR_VERSION,      /* 426: no Upgrade: websocket, or not version 13 */
    HSR_ORIGIN,       /* 403: Origin not on the allow-list */
    HSR_SERVER_FULL,  /* 503: the server's connection limit */
    HSR_IP_LIMIT,     /* 429: the per-address connection limit */
    HSR_UNAUTHORIZED, /* 401: token missing or refused */
    HSR_INTERNAL,     /* 500 */
    HSR_COUNT
};

/* Histograms with fixed bounds (telemetry/metrics.c names them): per-bucket counts,
 * the last bucket for values above the last bound. */
#define STATS_QDEPTH_BUCKETS  14 /* bounds 1, 2, 4, .. 4096 messages */
#define STATS_LATENCY_BUCKETS 19 /* bounds 5 us .. 2.5 s */

struct wh_stats {
    uint64_t conns_accepted;
    uint64_t conns_open; /* gauge */
    uint64_t accept_backoffs;
    uint64_t http_requests;
    uint64_t http_status[6];         /* by class: [1]=1xx .. [5]=5xx */
    uint64_t http_bad_requests;      /* malformed or over a limit: 400/408/413/414/431/505 */
    uint64_t http_deferred;          /* requests answered later (http_defer) */
    uint64_t http_deferred_timeouts; /* ... not answered in time: 504 */
    uint64_t handshake_failures;     /* upgrade requests refused (STAT_HANDSHAKE_FAILED) */
    uint64_t handshake_timeouts;
    uint64_t ws_upgrades;
    uint64_t ws_open; /* gauge */
    uint64_t ws_msgs_in, ws_msgs_out;
    uint64_t ws_bytes_in, ws_bytes_out;
    uint64_t ws_pings_sent, ws_pongs_sent;
    uint64_t ws_close_sent[STATS_CLOSE_CODES];
    uint64_t ws_close_received[STATS_CLOSE_CODES];
    uint64_t ws_protocol_errors; /* peer broke RFC 6455: 1002/1007/1009 sent */
    uint64_t ws_read_timeouts;
    uint64_t ws_write_timeouts;
    uint64_t ws_close_timeouts;
    uint64_t ws_message_timeouts; /* a message dribbled in too slowly: 1008 */
    uint64_t ws_pings_received;
    uint64_t ws_ping_pauses;     /* reading paused: pings from a peer not reading pongs */
    uint64_t hub_published;      /* messages serialised and posted (once each) */
    uint64_t hub_deliveries;     /* frames queued to recipients */
    uint64_t hub_dropped_oldest; /* lost to the drop-oldest policy */
    uint64_t hub_dropped_slow;   /* lost when a slow consumer was closed */
    uint64_t hub_slow_closes;    /* connections closed with 1013 */
    uint64_t hub_errors[16];     /* error messages sent, by enum proto_err */
    uint64_t hub_rate_limited;
    uint64_t hub_query_limited;           /* listings refused by the query rate (/ws and HTTP) */
    uint64_t hub_shutdown_refused;        /* messages refused once shutdown began (/ws and HTTP) */
    uint64_t hub_strike_closes;           /* closed 1008 after repeated bad messages */
    uint64_t hub_token_expiring;          /* token_expiring warnings sent */
    uint64_t hub_token_refreshes;         /* refresh accepted: the connection's token replaced */
    uint64_t hub_token_refused;           /* refresh refused (bad token, another user) */
    uint64_t hub_token_expired_closes;    /* closed 4001: the token expired, no refresh */
    uint64_t handshake_reason[HSR_COUNT]; /* each also counted in handshake_failures */
    uint64_t hub_qdepth_buckets[STATS_QDEPTH_BUCKETS]; /* send-queue depth per delivery */
    uint64_t hub_qdepth_sum;
    uint64_t hub_latency_buckets[STATS_LATENCY_BUCKETS]; /* publish to queued, per recipient */
    uint64_t hub_latency_sum_us;
    uint64_t hub_dropped_nomem; /* posts to a shard lost for want of memory */
    /* recovery (docs/protocol.md): [stream][result], stream 0 room 1 user, result 0
     * recovered 1 not recovered */
    uint64_t hub_recoveries[2][2];
    uint64_t hub_replayed;      /* messages sent from the history to recovering clients */
    uint64_t hub_replay_aborts; /* recoveries overtaken by the history: closed 1013 */

    /* HTTP API */
    uint64_t api_publish_refused[16]; /* POST /api/publish refused (400, 503), by proto_err */

    /* TLS */
    uint64_t tls_handshakes;         /* handshakes completed */
    uint64_t tls_handshake_failures; /* handshakes failed (including timeouts) */
    uint64_t tls_plaintext_refused;  /* plain HTTP sent to a TLS listener */
    uint64_t tls_reloads;            /* certificate reloads (SIGHUP) that took effect */
    uint64_t tls_reload_failures;    /* reloads refused: the old certificate stays */

    /* permessage-deflate */
    uint64_t ws_deflate_negotiated;           /* connections that agreed to compress */
    uint64_t ws_deflate_msgs_in;              /* client messages inflated */
    uint64_t ws_deflate_bytes_in_compressed;  /* their size on the wire */
    uint64_t ws_deflate_bytes_in_inflated;    /* their size once inflated */
    uint64_t ws_deflate_bombs;                /* inflated past the limit: closed 1009 */
    uint64_t ws_deflate_errors;               /* invalid compressed data: closed 1002 */
    uint64_t ws_deflate_msgs_out;             /* server messages compressed (once each) */
    uint64_t ws_deflate_bytes_out_raw;        /* their size before compression */
    uint64_t ws_deflate_bytes_out_compressed; /* and after */
    uint64_t ws_deflate_incompressible;       /* would not shrink: sent uncompressed */
    uint64_t ws_deflate_cache_hits;           /* compressed twin reused (fan-out) */
    uint64_t ws_deflate_frames_out;           /* compressed frames queued to clients */
};

extern _Thread_local struct wh_stats *stats_cur;

#define STAT_ADD(field, n)                                                                         \
    __atomic_store_n(&stats_cur->field, stats_cur->field + (uint64_t)(n), __ATOMIC_RELAXED)
#define STAT_INC(field)    STAT_ADD(field, 1)
#define STAT_DEC(field)    STAT_ADD(field, -1)
#define STAT_GET(s, field) __atomic_load_n(&(s)->field, __ATOMIC_RELAXED)

static inline void stat_close_code(uint64_t *arr, unsigned code)
{
    if (code >= 1000 && code < 1000 + STATS_CLOSE_CODES)
        __atomic_store_n(&arr[code - 1000], arr[code - 1000] + 1, __ATOMIC_RELAXED);
}

/* An upgrade refused: the total and the reason. */
#define STAT_HANDSHAKE_FAILED(reason)                                                              \
    do {                                                                                           \
        STAT_INC(handshake_failures);                                                              \
        STAT_INC(handshake_reason[reason]);                                                        \
    } while (0)

/* Records one send-queue depth (messages queued, the new one included). */
static inline void stat_qdepth(uint64_t depth)
{
    unsigned i = depth <= 1 ? 0 : 64u - (unsigned)__builtin_clzll(depth - 1);
    if (i > STATS_QDEPTH_BUCKETS - 1) i = STATS_QDEPTH_BUCKETS - 1;
    STAT_INC(hub_qdepth_buckets[i]);
    STAT_ADD(hub_qdepth_sum, depth);
}

/* The latency histogram's upper bounds, in microseconds (ascending). */
extern const uint64_t stats_latency_bounds_us[STATS_LATENCY_BUCKETS - 1];

/* Monotonic clock in microseconds (for the latency histogram). */
uint64_t stats_now_us(void);

/* Records n deliveries that each took us microseconds from publish to queue. */
void stat_latency(uint64_t us, uint64_t n);

#endif
