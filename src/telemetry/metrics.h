/* The metrics registry: every metric wshub exports is described once here, and both
 * exporters are generated from it — GET /metrics (Prometheus text, prometheus.c) and
 * OTLP (cumulative temporality). Nothing is counted here: the values live in the
 * per-worker single-writer counters of base/stats.h (plain stores on the hot path) and
 * in the hub's registry; collection sums them when someone asks.
 *
 * How to collect (any thread, e.g. the OTLP exporter's own):
 *   1. fill a struct metrics_source with a metrics_gather_fn (the server provides one:
 *      server_metrics_gather in app/server.h). The source is a plain value owned by
 *      the caller (a stack variable is fine); it holds copies, no pointers into live
 *      state, so it stays valid and unchanged for as long as the caller keeps it. The
 *      counters are read one by one while the workers run, so two related counters
 *      may differ by what happened during the read (a histogram's count is always the
 *      sum of its buckets: it is computed from them).
 *   2. call metrics_collect(&src, &visitor, ud): it walks the registry in table order
 *      (skipping the cluster-mode metrics when the source is a single node's) and calls
 * visitor->begin for each metric, then visitor->point for each of its points (possibly none), then
 * visitor->end. It allocates nothing, takes no lock and touches no shared state, so any number of
 * threads may collect at once from their own sources. Every pointer handed to a callback
 * (descriptor strings excepted: those are static) points into the source or the collector's stack
 * and is valid only during that callback; copy what you keep.
 *
 * Values: counters and up-down counters and gauges are integers (OTLP as_int);
 * histograms have fixed explicit bounds (doubles, in the metric's unit), per-bucket
 * counts (not cumulative; n_bounds + 1 of them, the last one for values above the
 * last bound, as in OTLP), a count and a sum. Counters are cumulative since
 * start_unix_nano (the server's start); a point's time is the source's time_unix_nano.
 *
 * The registry itself (descriptors, their strings) is static and never changes.
 *
 * Attributes are string key/value pairs (close codes are written "1000"); each metric
 * names its attribute keys in attr_keys, and every point of it carries exactly those
 * keys in that order. */
#ifndef WSHUB_TELEMETRY_METRICS_H
#define WSHUB_TELEMETRY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/stats.h"

enum metric_kind {
    METRIC_COUNTER,        /* monotonic sum: Prometheus counter (name ends _total) */
    METRIC_UPDOWN_COUNTER, /* non-monotonic sum: Prometheus gauge */
    METRIC_GAUGE,          /* last value: Prometheus gauge */
    METRIC_HISTOGRAM,      /* explicit buckets: Prometheus histogram */
};

#define METRIC_MAX_ATTRS 2

/* Redis round trips (cluster/redis_conn.h: REDIS_RTT_BUCKETS, redis_rtt_bounds_us; a
 * static assertion in metrics.c keeps the two equal). */
#define METRICS_REDIS_RTT_BUCKETS 10

struct metric_desc {
    const char *otel_name;   /* "websocket.messages.received" */
    const char *prom_name;   /* "wshub_websocket_messages_received_total": the sample
                              * name (histograms add _bucket/_sum/_count to it) */
    const char *unit;        /* UCUM: "By", "s", "{message}" */
    const char *description; /* one line, no trailing period needed by either format */
    enum metric_kind kind;
    bool monotonic; /* true for counters (and histograms: their sums only grow) */
    const char *attr_keys[METRIC_MAX_ATTRS + 1]; /* NULL-terminated; {NULL}: none */
};

struct metric_attr {
    const char *key;
    const char *value;
};

struct metric_point {
    const struct metric_attr *attrs; /* n_attrs of them, in the desc's attr_keys order */
    size_t n_attrs;
    int64_t value; /* counters, up-down counters, gauges */
    /* histograms: */
    const double *bounds; /* ascending upper bounds (inclusive, as Prometheus "le") */
    size_t n_bounds;
    const uint64_t *bucket_counts; /* n_bounds + 1, per bucket (not cumulative) */
    uint64_t count;
    double sum;
};

/* Everything a collection reads, copied at one moment. Counters that live outside the
 * workers (an exporter's own, say) get a field here, filled by the gather function. */
struct metrics_source {
    struct wh_stats stats; /* summed over workers */
    int64_t rooms;         /* rooms with at least one member */
    int64_t online_users;  /* distinct users connected */
    /* the history store (history/history.h: struct hist_totals) */
    uint64_t hist_bytes, hist_streams, hist_messages, hist_evicted_messages, hist_evicted_streams,
        hist_expired_messages;
    uint64_t start_unix_nano; /* the server's start: start of every cumulative series */
    uint64_t time_unix_nano;  /* when the source was gathered */
    /* The OTLP span exporter's own (telemetry/export.h; zero when it is off). */
    uint64_t otel_spans_exported, otel_spans_dropped, otel_export_failures, otel_export_retries,
        otel_spans_queued;
    /* Cluster mode (--redis: hub.h struct hub_cluster_stats). redis_instances is 0 for
     * one node, and then no cluster metric is collected at all (a single node's
     * /metrics stays as it was). */
    uint64_t redis_instances, redis_instances_up, cluster_subscriptions;
    uint64_t cluster_published, cluster_received, cluster_unavailable, cluster_resets,
        cluster_catchups, cluster_history_reads;
    uint64_t redis_commands, redis_replies, redis_error_replies, redis_bytes_sent,
        redis_bytes_received, redis_connects, redis_reconnects, redis_failures, redis_timeouts,
        redis_refused;
    uint64_t redis_rtt_buckets[METRICS_REDIS_RTT_BUCKETS]; /* per bucket, not cumulative */
    uint64_t redis_rtt_sum_us;
};

/* The metrics metrics_collect walks for src (the cluster ones only in cluster mode). */
size_t metrics_collected_count(const struct metrics_source *src);

/* Fills *out (entirely: it need not be initialised). Must be callable from any thread. */
typedef void (*metrics_gather_fn)(void *ud, struct metrics_source *out);

struct metrics_visitor {
    void (*begin)(void *ud, const struct metric_desc *d); /* may be NULL */
    void (*point)(void *ud, const struct metric_desc *d, const struct metric_point *p);
    void (*end)(void *ud, const struct metric_desc *d); /* may be NULL */
};

/* The registry: metrics_count() descriptors, static, in a stable order. */
size_t metrics_count(void);
const struct metric_desc *metrics_desc(size_t i);

/* Walks every metric and its points (see above). */
void metrics_collect(const struct metrics_source *src, const struct metrics_visitor *v, void *ud);

/* Wall-clock now in nanoseconds since the epoch (for time_unix_nano/start_unix_nano). */
uint64_t metrics_now_unix_nano(void);

/* ---- fixed histogram buckets, recorded by the workers into struct wh_stats ---- */

/* Send-queue depth (messages queued on a connection, this one included) observed at
 * each delivery. Bounds 1, 2, 4, .. 4096 {message}. */
#define METRICS_QDEPTH_BOUNDS (STATS_QDEPTH_BUCKETS - 1)

/* Delivery latency: from the publish (the frame serialised and posted to the shards)
 * to the frame being queued on a recipient's connection, measured once per message
 * per shard and counted once per recipient. Recorded in microseconds; exported in
 * seconds. */
#define METRICS_LATENCY_BOUNDS (STATS_LATENCY_BUCKETS - 1)

#endif
