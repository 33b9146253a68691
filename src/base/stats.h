/* Per-worker counters. Each worker thread owns one struct wh_stats and is its only
 * writer, so an increment is a plain load and store (no locked instruction on the hot
 * path); readers on other threads (/metrics, the exporter) use relaxed atomic loads
 * and sum over workers. Code anywhere below the worker counts into stats_cur, the
 * calling thread's block (a shared scratch block on threads that own none). */
#ifndef WSHUB_BASE_STATS_H
#define WSHUB_BASE_STATS_H

#include <stdint.h>

#define STATS_CLOSE_CODES 16 /* close codes 1000..1015 by code - 1000 */

struct wh_stats {
    uint64_t conns_accepted;
    uint64_t conns_open; /* gauge */
    uint64_t accept_backoffs;
    uint64_t http_requests;
    uint64_t http_status[6];     /* by class: [1]=1xx .. [5]=5xx */
    uint64_t http_bad_requests;  /* malformed or over a limit: 400/408/413/414/431/505 */
    uint64_t handshake_failures; /* upgrade requests refused */
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
    uint64_t hub_published;      /* messages serialised and posted (once each) */
    uint64_t hub_deliveries;     /* frames queued to recipients */
    uint64_t hub_dropped_oldest; /* lost to the drop-oldest policy */
    uint64_t hub_dropped_slow;   /* lost when a slow consumer was closed */
    uint64_t hub_slow_closes;    /* connections closed with 1013 */
    uint64_t hub_errors[16];     /* error messages sent, by enum proto_err */
    uint64_t hub_rate_limited;
    uint64_t hub_strike_closes;   /* closed 1008 after repeated bad messages */
    uint64_t auth_failures;       /* upgrades refused 401 */
    uint64_t conn_limit_refusals; /* upgrades refused 503/429 */
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

#endif
