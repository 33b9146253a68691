/* The registry's table and its collection (see metrics.h). A row pairs a metric's
 * description with how its points are read from a struct metrics_source; adding a
 * metric is adding a row (and, for a new counter, a field of struct wh_stats). */
#include "telemetry/metrics.h"

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#include "cluster/redis_conn.h"
#include "proto/envelope.h"

_Static_assert(METRICS_REDIS_RTT_BUCKETS == REDIS_RTT_BUCKETS, "Redis RTT buckets agree");

struct row;
typedef void (*emit_fn)(const struct row *r, const struct metrics_source *src,
                        const struct metrics_visitor *v, void *ud);

struct row {
    struct metric_desc d;
    emit_fn emit;
    size_t off; /* emit_field, emit_labelled: offset of the first counter in wh_stats */
    const char *const *labels; /* emit_labelled: one value per counter, NULL-terminated */
};

#define FIELD(f) offsetof(struct metrics_source, stats.f)
#define SRC(f)   offsetof(struct metrics_source, f)

static uint64_t u64_at(const struct metrics_source *src, size_t off)
{
    uint64_t v;
    __builtin_memcpy(&v, (const char *)src + off, sizeof v);
    return v;
}

static void point_value(const struct row *r, const struct metrics_visitor *v, void *ud,
                        const struct metric_attr *attrs, size_t n_attrs, int64_t value)
{
    struct metric_point p = {.attrs = attrs, .n_attrs = n_attrs, .value = value};
    v->point(ud, &r->d, &p);
}

static void emit_field(const struct row *r, const struct metrics_source *src,
                       const struct metrics_visitor *v, void *ud)
{
    point_value(r, v, ud, NULL, 0, (int64_t)u64_at(src, r->off));
}

/* Consecutive counters, one per label value, all of them always present. */
static void emit_labelled(const struct row *r, const struct metrics_source *src,
                          const struct metrics_visitor *v, void *ud)
{
    for (size_t i = 0; r->labels[i]; i++) {
        struct metric_attr a = {r->d.attr_keys[0], r->labels[i]};
        point_value(r, v, ud, &a, 1, (int64_t)u64_at(src, r->off + i * sizeof(uint64_t)));
    }
}

/* Close codes 1000..1015: only those seen (most never are). */
static void emit_close_codes(const struct row *r, const struct metrics_source *src,
                             const struct metrics_visitor *v, void *ud)
{
    for (int i = 0; i < STATS_CLOSE_CODES; i++) {
        uint64_t n = u64_at(src, r->off + (size_t)i * sizeof(uint64_t));
        if (!n) continue;
        char code[12];
        snprintf(code, sizeof code, "%d", 1000 + i);
        struct metric_attr a = {r->d.attr_keys[0], code};
        point_value(r, v, ud, &a, 1, (int64_t)n);
    }
}

static const char *const hs_reasons[HSR_COUNT + 1] = {
    [HSR_BAD_REQUEST] = "bad_request",
    [HSR_VERSION] = "upgrade_required",
    [HSR_ORIGIN] = "origin_not_allowed",
    [HSR_SERVER_FULL] = "server_full",
    [HSR_IP_LIMIT] = "too_many_connections",
    [HSR_UNAUTHORIZED] = "unauthorized",
    [HSR_INTERNAL] = "internal",
};

/* Every reason, plus "other" for refusals counted without one (code that counts only
 * handshake_failures), so that the reasons always add up to the total. */
static void emit_handshake(const struct row *r, const struct metrics_source *src,
                           const struct metrics_visitor *v, void *ud)
{
    emit_labelled(r, src, v, ud);
    uint64_t known = 0;
    for (int i = 0; i < HSR_COUNT; i++)
        known += src->stats.handshake_reason[i];
    uint64_t total = src->stats.handshake_failures;
    if (total > known) {
        struct metric_attr a = {r->d.attr_keys[0], "other"};
        point_value(r, v, ud, &a, 1, (int64_t)(total - known));
    }
}

static void emit_errors(const struct row *r, const struct metrics_source *src,
                        const struct metrics_visitor *v, void *ud)
{
    for (int e = 1; e < PE_COUNT; e++) {
        struct metric_attr a = {r->d.attr_keys[0], proto_err_code((enum proto_err)e)};
        point_value(r, v, ud, &a, 1, (int64_t)src->stats.hub_errors[e]);
    }
}

static void emit_api_refused(const struct row *r, const struct metrics_source *src,
                             const struct metrics_visitor *v, void *ud)
{
    for (int e = 1; e < PE_COUNT; e++) {
        struct metric_attr a = {r->d.attr_keys[0], proto_err_code((enum proto_err)e)};
        point_value(r, v, ud, &a, 1, (int64_t)src->stats.api_publish_refused[e]);
    }
}

static void emit_http_classes(const struct row *r, const struct metrics_source *src,
                              const struct metrics_visitor *v, void *ud)
{
    static const char *const classes[] = {NULL, "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int c = 1; c <= 5; c++) {
        struct metric_attr a = {r->d.attr_keys[0], classes[c]};
        point_value(r, v, ud, &a, 1, (int64_t)src->stats.http_status[c]);
    }
}

static void emit_rooms(const struct row *r, const struct metrics_source *src,
                       const struct metrics_visitor *v, void *ud)
{
    point_value(r, v, ud, NULL, 0, src->rooms);
}

static void emit_users(const struct row *r, const struct metrics_source *src,
                       const struct metrics_visitor *v, void *ud)
{
    point_value(r, v, ud, NULL, 0, src->online_users);
}

/* hub_recoveries[stream][result] */
static void emit_recoveries(const struct row *r, const struct metrics_source *src,
                            const struct metrics_visitor *v, void *ud)
{
    static const char *const streams[] = {"room", "user"};
    static const char *const results[] = {"recovered", "not_recovered"};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) {
            struct metric_attr a[2] = {{r->d.attr_keys[0], streams[s]},
                                       {r->d.attr_keys[1], results[k]}};
            point_value(r, v, ud, a, 2, (int64_t)src->stats.hub_recoveries[s][k]);
        }
}

static void histogram(const struct row *r, const struct metrics_visitor *v, void *ud,
                      const double *bounds, size_t n_bounds, const uint64_t *counts, double sum)
{
    uint64_t count = 0;
    for (size_t i = 0; i <= n_bounds; i++)
        count += counts[i];
    struct metric_point p = {.bounds = bounds,
                             .n_bounds = n_bounds,
                             .bucket_counts = counts,
                             .count = count,
                             .sum = sum};
    v->point(ud, &r->d, &p);
}

static const double qdepth_bounds[METRICS_QDEPTH_BOUNDS] = {1,   2,   4,   8,    16,   32,  64,
                                                            128, 256, 512, 1024, 2048, 4096};

static void emit_qdepth(const struct row *r, const struct metrics_source *src,
                        const struct metrics_visitor *v, void *ud)
{
    histogram(r, v, ud, qdepth_bounds, METRICS_QDEPTH_BOUNDS, src->stats.hub_qdepth_buckets,
              (double)src->stats.hub_qdepth_sum);
}

static void emit_latency(const struct row *r, const struct metrics_source *src,
                         const struct metrics_visitor *v, void *ud)
{
    double bounds[METRICS_LATENCY_BOUNDS];
    for (size_t i = 0; i < METRICS_LATENCY_BOUNDS; i++)
        bounds[i] = (double)stats_latency_bounds_us[i] / 1e6;
    histogram(r, v, ud, bounds, METRICS_LATENCY_BOUNDS, src->stats.hub_latency_buckets,
              (double)src->stats.hub_latency_sum_us / 1e6);
}

/* 1 when every Redis instance is up (the node is ready: /readyz), else 0. */
static void emit_cluster_up(const struct row *r, const struct metrics_source *src,
                            const struct metrics_visitor *v, void *ud)
{
    bool up = src->redis_instances > 0 && src->redis_instances_up >= src->redis_instances;
    point_value(r, v, ud, NULL, 0, up ? 1 : 0);
}

static void emit_redis_rtt(const struct row *r, const struct metrics_source *src,
                           const struct metrics_visitor *v, void *ud)
{
    double bounds[METRICS_REDIS_RTT_BUCKETS - 1];
    for (size_t i = 0; i < METRICS_REDIS_RTT_BUCKETS - 1; i++)
        bounds[i] = (double)redis_rtt_bounds_us[i] / 1e6;
    histogram(r, v, ud, bounds, METRICS_REDIS_RTT_BUCKETS - 1, src->redis_rtt_buckets,
              (double)src->redis_rtt_sum_us / 1e6);
}

/* emit_labelled reads these as arrays: keep them adjacent in struct wh_stats. */
#define ADJACENT(a, b) (offsetof(struct wh_stats, b) == offsetof(struct wh_stats, a) + 8)
_Static_assert(ADJACENT(hub_dropped_oldest, hub_dropped_slow), "drop counters adjacent");
_Static_assert(ADJACENT(ws_read_timeouts, ws_write_timeouts) &&
                   ADJACENT(ws_write_timeouts, ws_close_timeouts) &&
                   ADJACENT(ws_close_timeouts, ws_message_timeouts),
               "timeout counters adjacent");
_Static_assert(ADJACENT(ws_pings_sent, ws_pongs_sent), "ping and pong counters adjacent");

static const char *const drop_reasons[] = {"drop_oldest", "slow_consumer_closed", NULL};

/* The slow-consumer policy's two (adjacent counters), and a post to a shard that
 * could not be queued for want of memory. */
static void emit_dropped(const struct row *r, const struct metrics_source *src,
                         const struct metrics_visitor *v, void *ud)
{
    emit_labelled(r, src, v, ud);
    struct metric_attr a = {r->d.attr_keys[0], "out_of_memory"};
    point_value(r, v, ud, &a, 1, (int64_t)src->stats.hub_dropped_nomem);
}
static const char *const timeout_kinds[] = {"read", "write", "close", "message", NULL};

/* The four WebSocket deadlines, and the HTTP request deadline as kind="handshake". */
static void emit_timeouts(const struct row *r, const struct metrics_source *src,
                          const struct metrics_visitor *v, void *ud)
{
    emit_labelled(r, src, v, ud);
    struct metric_attr a = {r->d.attr_keys[0], "handshake"};
    point_value(r, v, ud, &a, 1, (int64_t)src->stats.handshake_timeouts);
}
static const char *const control_kinds[] = {"ping", "pong", NULL};

#define C  METRIC_COUNTER
#define UD METRIC_UPDOWN_COUNTER
#define G  METRIC_GAUGE
#define H  METRIC_HISTOGRAM

/* Prometheus names: wshub_ prefix, the base unit as a suffix (bytes, seconds), _total
 * on counters. Each row: {otel name, Prometheus name, unit, description, kind,
 * monotonic, attribute keys}, how its points are read, the first counter, labels. */
// clang-format off
static const struct row rows[] = {
    {{"websocket.active_connections", "wshub_websocket_active_connections", "{connection}",
      "WebSocket connections open (/ws and /echo)", UD, false, {NULL}},
     emit_field, FIELD(ws_open), NULL},
    {{"websocket.messages.received", "wshub_websocket_messages_received_total", "{message}",
      "WebSocket data messages received", C, true, {NULL}},
     emit_field, FIELD(ws_msgs_in), NULL},
    {{"websocket.messages.sent", "wshub_websocket_messages_sent_total", "{message}",
      "WebSocket data messages sent", C, true, {NULL}},
     emit_field, FIELD(ws_msgs_out), NULL},
    {{"websocket.bytes.received", "wshub_websocket_received_bytes_total", "By",
      "Payload bytes of WebSocket data messages received", C, true, {NULL}},
     emit_field, FIELD(ws_bytes_in), NULL},
    {{"websocket.bytes.sent", "wshub_websocket_sent_bytes_total", "By",
      "Bytes of WebSocket data frames sent (frame headers included)", C, true, {NULL}},
     emit_field, FIELD(ws_bytes_out), NULL},
    {{"websocket.upgrades", "wshub_websocket_upgrades_total", "{connection}",
      "HTTP connections upgraded to WebSocket", C, true, {NULL}},
     emit_field, FIELD(ws_upgrades), NULL},
    {{"websocket.handshake.failures", "wshub_websocket_handshake_failures_total", "{request}",
      "WebSocket upgrade requests refused, by reason", C, true, {"reason", NULL}},
     emit_handshake, FIELD(handshake_reason), hs_reasons},
    {{"websocket.closes.sent", "wshub_websocket_closes_sent_total", "{frame}",
      "Close frames sent, by close code (codes seen so far)", C, true, {"code", NULL}},
     emit_close_codes, FIELD(ws_close_sent), NULL},
    {{"websocket.closes.received", "wshub_websocket_closes_received_total", "{frame}",
      "Close frames received, by close code (codes seen so far)", C, true, {"code", NULL}},
     emit_close_codes, FIELD(ws_close_received), NULL},
    {{"websocket.protocol_errors", "wshub_websocket_protocol_errors_total", "{connection}",
      "Connections failed for breaking RFC 6455 (closed 1002, 1007 or 1009)", C, true, {NULL}},
     emit_field, FIELD(ws_protocol_errors), NULL},
    {{"websocket.timeouts", "wshub_websocket_timeouts_total", "{connection}",
      "Deadlines that ended a WebSocket connection (read, write, close, message) or an HTTP "
      "request (handshake)", C, true, {"kind", NULL}},
     emit_timeouts, FIELD(ws_read_timeouts), timeout_kinds},
    {{"websocket.pings.received", "wshub_websocket_pings_received_total", "{frame}",
      "Ping frames received", C, true, {NULL}},
     emit_field, FIELD(ws_pings_received), NULL},
    {{"websocket.ping_flood.pauses", "wshub_websocket_ping_flood_pauses_total", "{event}",
      "Times reading paused because pongs piled up unread (a ping flood)", C, true, {NULL}},
     emit_field, FIELD(ws_ping_pauses), NULL},
    {{"websocket.control_frames.sent", "wshub_websocket_control_frames_sent_total", "{frame}",
      "Pings and pongs sent", C, true, {"type", NULL}},
     emit_labelled, FIELD(ws_pings_sent), control_kinds},
    {{"websocket.deflate.connections", "wshub_deflate_connections_total", "{connection}",
      "WebSocket connections that negotiated permessage-deflate", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_negotiated), NULL},
    {{"websocket.deflate.inflated_messages", "wshub_deflate_inflated_messages_total", "{message}",
      "Compressed client messages inflated", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_msgs_in), NULL},
    {{"websocket.deflate.received_compressed_bytes", "wshub_deflate_received_compressed_bytes_total", "By",
      "Compressed payload bytes received", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_bytes_in_compressed), NULL},
    {{"websocket.deflate.received_inflated_bytes", "wshub_deflate_received_inflated_bytes_total", "By",
      "Bytes the received compressed payloads inflated to", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_bytes_in_inflated), NULL},
    {{"websocket.deflate.bombs", "wshub_deflate_bombs_total", "{message}",
      "Compressed messages refused for inflating past the limit (closed 1009)", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_bombs), NULL},
    {{"websocket.deflate.errors", "wshub_deflate_errors_total", "{message}",
      "Compressed messages with invalid data (closed 1002)", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_errors), NULL},
    {{"websocket.deflate.compressed_messages", "wshub_deflate_compressed_messages_total", "{message}",
      "Outgoing messages compressed (once per message and worker, not per recipient)", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_msgs_out), NULL},
    {{"websocket.deflate.sent_uncompressed_bytes", "wshub_deflate_sent_uncompressed_bytes_total", "By",
      "Payload bytes of outgoing messages before compression", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_bytes_out_raw), NULL},
    {{"websocket.deflate.sent_compressed_bytes", "wshub_deflate_sent_compressed_bytes_total", "By",
      "Payload bytes of outgoing messages after compression", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_bytes_out_compressed), NULL},
    {{"websocket.deflate.incompressible", "wshub_deflate_incompressible_total", "{message}",
      "Outgoing messages sent uncompressed because deflate did not shrink them", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_incompressible), NULL},
    {{"websocket.deflate.cache_hits", "wshub_deflate_cache_hits_total", "{frame}",
      "Compressed frames reused for another recipient instead of compressing again", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_cache_hits), NULL},
    {{"websocket.deflate.frames_sent", "wshub_deflate_frames_sent_total", "{frame}",
      "Compressed frames queued to clients", C, true, {NULL}},
     emit_field, FIELD(ws_deflate_frames_out), NULL},
    {{"tls.handshakes", "wshub_tls_handshakes_total", "{handshake}",
      "TLS handshakes completed", C, true, {NULL}},
     emit_field, FIELD(tls_handshakes), NULL},
    {{"tls.handshake.failures", "wshub_tls_handshake_failures_total", "{handshake}",
      "TLS handshakes failed or timed out", C, true, {NULL}},
     emit_field, FIELD(tls_handshake_failures), NULL},
    {{"tls.plaintext_refused", "wshub_tls_plaintext_refused_total", "{request}",
      "Plain HTTP sent to a TLS listener, answered 400", C, true, {NULL}},
     emit_field, FIELD(tls_plaintext_refused), NULL},
    {{"tls.reloads", "wshub_tls_reloads_total", "{event}",
      "Certificate reloads (SIGHUP) that took effect", C, true, {NULL}},
     emit_field, FIELD(tls_reloads), NULL},
    {{"tls.reload.failures", "wshub_tls_reload_failures_total", "{event}",
      "Certificate reloads refused: the previous certificate stays", C, true, {NULL}},
     emit_field, FIELD(tls_reload_failures), NULL},
    {{"wshub.connections.accepted", "wshub_connections_accepted_total", "{connection}",
      "TCP connections accepted", C, true, {NULL}},
     emit_field, FIELD(conns_accepted), NULL},
    {{"wshub.connections.open", "wshub_connections_open", "{connection}",
      "TCP connections open (HTTP and WebSocket)", UD, false, {NULL}},
     emit_field, FIELD(conns_open), NULL},
    {{"wshub.accept.backoffs", "wshub_accept_backoffs_total", "{event}",
      "Times accepting paused for lack of file descriptors or memory", C, true, {NULL}},
     emit_field, FIELD(accept_backoffs), NULL},
    {{"http.server.requests", "wshub_http_requests_total", "{request}",
      "HTTP requests routed", C, true, {NULL}},
     emit_field, FIELD(http_requests), NULL},
    {{"http.server.responses", "wshub_http_responses_total", "{response}",
      "HTTP responses sent, by status class", C, true, {"status_class", NULL}},
     emit_http_classes, 0, NULL},
    {{"http.server.bad_requests", "wshub_http_bad_requests_total", "{request}",
      "HTTP requests refused by the parser or a limit", C, true, {NULL}},
     emit_field, FIELD(http_bad_requests), NULL},
    {{"http.server.deferred", "wshub_http_deferred_total", "{request}",
      "HTTP requests whose handler answered later (waiting on another service)", C, true, {NULL}},
     emit_field, FIELD(http_deferred), NULL},
    {{"http.server.deferred.timeouts", "wshub_http_deferred_timeouts_total", "{request}",
      "Deferred HTTP requests not answered in time: 504", C, true, {NULL}},
     emit_field, FIELD(http_deferred_timeouts), NULL},
    {{"hub.messages.published", "wshub_hub_messages_published_total", "{message}",
      "Messages serialised and posted to the shards (once per message)", C, true, {NULL}},
     emit_field, FIELD(hub_published), NULL},
    {{"hub.deliveries", "wshub_hub_deliveries_total", "{message}",
      "Frames queued to /ws clients: deliveries and replies", C, true, {NULL}},
     emit_field, FIELD(hub_deliveries), NULL},
    {{"hub.messages.dropped", "wshub_hub_messages_dropped_total", "{message}",
      "Messages lost, by reason", C, true, {"reason", NULL}},
     emit_dropped, FIELD(hub_dropped_oldest), drop_reasons},
    {{"hub.slow_consumer_closes", "wshub_hub_slow_consumer_closes_total", "{connection}",
      "Connections closed 1013 because their send queue was full", C, true, {NULL}},
     emit_field, FIELD(hub_slow_closes), NULL},
    {{"hub.rate_limited", "wshub_hub_rate_limited_total", "{message}",
      "Messages refused by a rate limit", C, true, {NULL}},
     emit_field, FIELD(hub_rate_limited), NULL},
    {{"hub.query_rate_limited", "wshub_hub_query_rate_limited_total", "{request}",
      "Listing queries refused by the query rate limit (/ws and HTTP API)", C, true, {NULL}},
     emit_field, FIELD(hub_query_limited), NULL},
    {{"hub.shutdown_refused", "wshub_hub_shutdown_refused_total", "{message}",
      "Messages refused because shutdown had begun (/ws and POST /api/publish)", C, true, {NULL}},
     emit_field, FIELD(hub_shutdown_refused), NULL},
    {{"hub.strike_closes", "wshub_hub_strike_closes_total", "{connection}",
      "Connections closed 1008 after repeated bad messages", C, true, {NULL}},
     emit_field, FIELD(hub_strike_closes), NULL},
    {{"hub.token.expiring", "wshub_hub_token_expiring_total", "{message}",
      "token_expiring warnings sent to connections whose token is about to expire", C, true,
      {NULL}},
     emit_field, FIELD(hub_token_expiring), NULL},
    {{"hub.token.refreshes", "wshub_hub_token_refreshes_total", "{message}",
      "Tokens replaced on open connections (refresh accepted)", C, true, {NULL}},
     emit_field, FIELD(hub_token_refreshes), NULL},
    {{"hub.token.refresh_refused", "wshub_hub_token_refresh_refused_total", "{message}",
      "Refresh messages refused (token not valid, or for another user)", C, true, {NULL}},
     emit_field, FIELD(hub_token_refused), NULL},
    {{"hub.token.expired_closes", "wshub_hub_token_expired_closes_total", "{connection}",
      "Connections closed 4001 because their token expired without a refresh", C, true, {NULL}},
     emit_field, FIELD(hub_token_expired_closes), NULL},
    {{"hub.errors", "wshub_hub_errors_total", "{message}",
      "Error messages sent to clients, by error code", C, true, {"code", NULL}},
     emit_errors, 0, NULL},
    {{"hub.recoveries", "wshub_hub_recoveries_total", "{request}",
      "Recovery requests (join_room with since, ?since= with an epoch), by stream and result",
      C, true, {"stream", "result", NULL}},
     emit_recoveries, 0, NULL},
    {{"hub.replayed", "wshub_hub_replayed_messages_total", "{message}",
      "Messages sent from the history to recovering clients", C, true, {NULL}},
     emit_field, FIELD(hub_replayed), NULL},
    {{"hub.replay_aborts", "wshub_hub_replay_aborts_total", "{connection}",
      "Recoveries overtaken by the history (the client read too slowly): closed 1013", C, true,
      {NULL}},
     emit_field, FIELD(hub_replay_aborts), NULL},
    {{"history.bytes", "wshub_history_bytes", "By",
      "Memory held by the history: kept frames, entries and streams", G, false, {NULL}},
     emit_field, SRC(hist_bytes), NULL},
    {{"history.streams", "wshub_history_streams", "{stream}",
      "Room and user streams kept (position, epoch and history)", G, false, {NULL}},
     emit_field, SRC(hist_streams), NULL},
    {{"history.messages", "wshub_history_messages", "{message}",
      "Messages kept in the history", G, false, {NULL}},
     emit_field, SRC(hist_messages), NULL},
    {{"history.evicted.messages", "wshub_history_evicted_messages_total", "{message}",
      "Messages dropped from the history to stay under --history-memory", C, true, {NULL}},
     emit_field, SRC(hist_evicted_messages), NULL},
    {{"history.evicted.streams", "wshub_history_evicted_streams_total", "{stream}",
      "Streams whose history was dropped to stay under --history-memory", C, true, {NULL}},
     emit_field, SRC(hist_evicted_streams), NULL},
    {{"history.expired", "wshub_history_expired_messages_total", "{message}",
      "Messages dropped from the history for being older than their TTL", C, true, {NULL}},
     emit_field, SRC(hist_expired_messages), NULL},
    {{"api.publish.refused", "wshub_api_publish_refused_total", "{request}",
      "POST /api/publish requests refused (400, or 503 unavailable in cluster mode), by error code", C, true, {"code", NULL}},
     emit_api_refused, 0, NULL},
    {{"hub.rooms", "wshub_hub_rooms", "{room}",
      "Rooms with at least one member", G, false, {NULL}},
     emit_rooms, 0, NULL},
    {{"hub.online_users", "wshub_hub_online_users", "{user}",
      "Distinct users connected", G, false, {NULL}},
     emit_users, 0, NULL},
    {{"hub.send_queue.depth", "wshub_hub_send_queue_depth_messages", "{message}",
      "Frames queued on a connection (the new one included), observed at each queued frame",
      H, true, {NULL}},
     emit_qdepth, 0, NULL},
    {{"hub.delivery.latency", "wshub_hub_delivery_latency_seconds", "s",
      "Time from a message's publish until its frame was queued to a recipient", H, true,
      {NULL}},
     emit_latency, 0, NULL},
    {{"wshub.otel.spans.exported", "wshub_otel_spans_exported_total", "{span}",
      "Spans accepted by the OTLP collector", C, true, {NULL}},
     emit_field, offsetof(struct metrics_source, otel_spans_exported), NULL},
    {{"wshub.otel.spans.dropped", "wshub_otel_spans_dropped_total", "{span}",
      "Spans lost: export queue full, or a batch given up after its retries", C, true, {NULL}},
     emit_field, offsetof(struct metrics_source, otel_spans_dropped), NULL},
    {{"wshub.otel.export.failures", "wshub_otel_export_failures_total", "{request}",
      "OTLP exports given up (after retries, or refused)", C, true, {NULL}},
     emit_field, offsetof(struct metrics_source, otel_export_failures), NULL},
    {{"wshub.otel.export.retries", "wshub_otel_export_retries_total", "{request}",
      "OTLP requests retried (connection failure, 429, 502, 503, 504)", C, true, {NULL}},
     emit_field, offsetof(struct metrics_source, otel_export_retries), NULL},
    {{"wshub.otel.spans.queued", "wshub_otel_spans_queued", "{span}",
      "Spans waiting in the export queue", G, false, {NULL}},
     emit_field, offsetof(struct metrics_source, otel_spans_queued), NULL},
};

/* Cluster mode only (--redis): collected when the source has Redis instances. */
static const struct row cluster_rows[] = {
    {{"wshub.cluster.up", "wshub_cluster_up", "1",
      "1 when every Redis instance is reachable (the node is ready), else 0", G, false, {NULL}},
     emit_cluster_up, 0, NULL},
    {{"wshub.cluster.redis.instances", "wshub_cluster_redis_instances", "{instance}",
      "Redis instances the node is joined through (--redis)", G, false, {NULL}},
     emit_field, SRC(redis_instances), NULL},
    {{"wshub.cluster.redis.instances_up", "wshub_cluster_redis_instances_up", "{instance}",
      "Redis instances whose command and subscriber connections are both up", G, false, {NULL}},
     emit_field, SRC(redis_instances_up), NULL},
    {{"wshub.cluster.messages.published", "wshub_cluster_messages_published_total", "{message}",
      "Messages handed to Redis (one command each)", C, true, {NULL}},
     emit_field, SRC(cluster_published), NULL},
    {{"wshub.cluster.messages.received", "wshub_cluster_messages_received_total", "{message}",
      "Messages received from Redis on the streams this node watches (its own included)", C,
      true, {NULL}},
     emit_field, SRC(cluster_received), NULL},
    {{"wshub.cluster.unavailable", "wshub_cluster_unavailable_total", "{message}",
      "Publishes and joins refused or lost because Redis was unreachable or too far behind "
      "(error unavailable)",
      C, true, {NULL}},
     emit_field, SRC(cluster_unavailable), NULL},
    {{"wshub.cluster.stream_resets", "wshub_cluster_stream_resets_total", "{stream}",
      "Streams whose epoch changed in Redis under live members (told recovered false)", C,
      true, {NULL}},
     emit_field, SRC(cluster_resets), NULL},
    {{"wshub.cluster.catchups", "wshub_cluster_catchups_total", "{stream}",
      "Streams whose messages this node had missed, read back from Redis", C, true, {NULL}},
     emit_field, SRC(cluster_catchups), NULL},
    {{"wshub.cluster.history_reads", "wshub_cluster_history_reads_total", "{request}",
      "Reads of history from Redis for recoveries", C, true, {NULL}},
     emit_field, SRC(cluster_history_reads), NULL},
    {{"wshub.cluster.subscriptions", "wshub_cluster_subscriptions", "{channel}",
      "Redis channels subscribed now: one per room or user with local members", G, false,
      {NULL}},
     emit_field, SRC(cluster_subscriptions), NULL},
    {{"wshub.redis.commands", "wshub_redis_commands_total", "{command}",
      "Commands sent to Redis (connection handshakes included)", C, true, {NULL}},
     emit_field, SRC(redis_commands), NULL},
    {{"wshub.redis.replies", "wshub_redis_replies_total", "{reply}",
      "Replies received from Redis (error replies included)", C, true, {NULL}},
     emit_field, SRC(redis_replies), NULL},
    {{"wshub.redis.error_replies", "wshub_redis_error_replies_total", "{reply}",
      "Error replies received from Redis", C, true, {NULL}},
     emit_field, SRC(redis_error_replies), NULL},
    {{"wshub.redis.bytes.sent", "wshub_redis_sent_bytes_total", "By",
      "Bytes of the commands sent to Redis (RESP)", C, true, {NULL}},
     emit_field, SRC(redis_bytes_sent), NULL},
    {{"wshub.redis.bytes.received", "wshub_redis_received_bytes_total", "By",
      "Payload bytes of the pub/sub messages received from Redis", C, true, {NULL}},
     emit_field, SRC(redis_bytes_received), NULL},
    {{"wshub.redis.connects", "wshub_redis_connects_total", "{connection}",
      "Redis connections that came up (handshake done)", C, true, {NULL}},
     emit_field, SRC(redis_connects), NULL},
    {{"wshub.redis.reconnects", "wshub_redis_reconnects_total", "{connection}",
      "Redis connection attempts after a failure", C, true, {NULL}},
     emit_field, SRC(redis_reconnects), NULL},
    {{"wshub.redis.failures", "wshub_redis_failures_total", "{event}",
      "Redis connection attempts that failed and connections lost", C, true, {NULL}},
     emit_field, SRC(redis_failures), NULL},
    {{"wshub.redis.timeouts", "wshub_redis_timeouts_total", "{connection}",
      "Redis connections dropped for a stalled command or connect", C, true, {NULL}},
     emit_field, SRC(redis_timeouts), NULL},
    {{"wshub.redis.refused", "wshub_redis_refused_total", "{command}",
      "Commands refused because their Redis connection was down", C, true, {NULL}},
     emit_field, SRC(redis_refused), NULL},
    {{"wshub.redis.rtt", "wshub_redis_rtt_seconds", "s",
      "Round trip of a Redis command, from sending it to its reply", H, true, {NULL}},
     emit_redis_rtt, 0, NULL},
};
// clang-format on

#define N_ROWS    (sizeof rows / sizeof rows[0])
#define N_CLUSTER (sizeof cluster_rows / sizeof cluster_rows[0])

/* The registry is rows then cluster_rows. */
static const struct row *row_at(size_t i)
{
    return i < N_ROWS ? &rows[i] : i < N_ROWS + N_CLUSTER ? &cluster_rows[i - N_ROWS] : NULL;
}

size_t metrics_count(void)
{
    return N_ROWS + N_CLUSTER;
}

const struct metric_desc *metrics_desc(size_t i)
{
    const struct row *r = row_at(i);
    return r ? &r->d : NULL;
}

/* Cluster-mode metrics exist only on a node joined through Redis: a single node's
 * exposition is unchanged by them (no family of zeros that could never move). */
size_t metrics_collected_count(const struct metrics_source *src)
{
    return src->redis_instances > 0 ? metrics_count() : N_ROWS;
}

void metrics_collect(const struct metrics_source *src, const struct metrics_visitor *v, void *ud)
{
    for (size_t i = 0; i < metrics_collected_count(src); i++) {
        const struct row *r = row_at(i);
        if (v->begin) v->begin(ud, &r->d);
        r->emit(r, src, v, ud);
        if (v->end) v->end(ud, &r->d);
    }
}

uint64_t metrics_now_unix_nano(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
