/* Unit tests for the metrics registry and the Prometheus text writer: every descriptor
 * is well formed and unique; collection reports the summed counters with the declared
 * attributes; the workers' histogram recorders pick the right buckets; the text has
 * HELP/TYPE for every family, cumulative buckets, escaped labels and round-tripping
 * numbers; and docs/observability.md lists every metric exactly as the registry
 * describes it (the test prints the rows it expects, so the doc cannot go stale). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/stats.h"
#include "proto/envelope.h"
#include "telemetry/metrics.h"
#include "telemetry/prometheus.h"

static const struct metric_desc *find(const char *otel)
{
    for (size_t i = 0; i < metrics_count(); i++)
        if (strcmp(metrics_desc(i)->otel_name, otel) == 0) return metrics_desc(i);
    return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void test_descriptors(void **state)
{
    (void)state;
    size_t n = metrics_count();
    assert_true(n >= 25);
    assert_null(metrics_desc(n));
    for (size_t i = 0; i < n; i++) {
        const struct metric_desc *d = metrics_desc(i);
        assert_non_null(d->otel_name);
        assert_non_null(d->description);
        assert_true(d->unit && *d->unit);
        assert_int_equal(strncmp(d->prom_name, "wshub_", 6), 0);
        for (const char *p = d->prom_name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
        for (const char *p = d->otel_name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '.' || *p == '_');
        /* Prometheus conventions: _total on counters only, the base unit as suffix. */
        assert_int_equal(ends_with(d->prom_name, "_total"), d->kind == METRIC_COUNTER);
        if (strcmp(d->unit, "By") == 0)
            assert_true(ends_with(d->prom_name, "_bytes") ||
                        ends_with(d->prom_name, "_bytes_total"));
        if (strcmp(d->unit, "s") == 0) assert_true(ends_with(d->prom_name, "_seconds"));
        assert_int_equal(d->monotonic, d->kind == METRIC_COUNTER || d->kind == METRIC_HISTOGRAM);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(d->otel_name, metrics_desc(j)->otel_name);
            assert_string_not_equal(d->prom_name, metrics_desc(j)->prom_name);
        }
    }
    /* The guide's three, with its names and kinds. */
    assert_int_equal(find("websocket.active_connections")->kind, METRIC_UPDOWN_COUNTER);
    assert_int_equal(find("websocket.messages.received")->kind, METRIC_COUNTER);
    assert_int_equal(find("websocket.messages.sent")->kind, METRIC_COUNTER);
}

/* A visitor that records what it is shown. */
struct seen {
    int begins, ends, points;
    const struct metric_desc *open;
    char last[16][96]; /* "name{k=v,..}=value" of the points of the metric asked for */
    int n_last;
    const char *want;
    struct metric_point hist;
    uint64_t hist_counts[32];
    double hist_bounds[32];
};

static void v_begin(void *ud, const struct metric_desc *d)
{
    struct seen *s = ud;
    assert_null(s->open);
    s->open = d;
    s->begins++;
}

static void v_point(void *ud, const struct metric_desc *d, const struct metric_point *p)
{
    struct seen *s = ud;
    assert_ptr_equal(s->open, d);
    s->points++;
    size_t nk = 0;
    while (d->attr_keys[nk])
        nk++;
    assert_int_equal(p->n_attrs, nk);
    for (size_t i = 0; i < nk; i++)
        assert_string_equal(p->attrs[i].key, d->attr_keys[i]);
    if (!s->want || strcmp(d->otel_name, s->want) != 0) return;
    if (d->kind == METRIC_HISTOGRAM) {
        s->hist = *p;
        assert_true(p->n_bounds < 32);
        memcpy(s->hist_counts, p->bucket_counts, (p->n_bounds + 1) * sizeof(uint64_t));
        memcpy(s->hist_bounds, p->bounds, p->n_bounds * sizeof(double));
        return;
    }
    assert_true(s->n_last < 16);
    char *o = s->last[s->n_last++];
    int k = snprintf(o, 96, "%s", "");
    for (size_t i = 0; i < p->n_attrs; i++)
        k += snprintf(o + k, 96 - (size_t)k, "%s%s=%s", i ? "," : "", p->attrs[i].key,
                      p->attrs[i].value);
    snprintf(o + k, 96 - (size_t)k, "%s%lld", k ? ":" : "", (long long)p->value);
}

static void v_end(void *ud, const struct metric_desc *d)
{
    struct seen *s = ud;
    assert_ptr_equal(s->open, d);
    s->open = NULL;
    s->ends++;
}

static const struct metrics_visitor visitor = {v_begin, v_point, v_end};

static struct seen collect(const struct metrics_source *src, const char *want)
{
    struct seen s;
    memset(&s, 0, sizeof s);
    s.want = want;
    metrics_collect(src, &visitor, &s);
    assert_int_equal(s.begins, (int)metrics_collected_count(src));
    assert_int_equal(s.ends, (int)metrics_collected_count(src));
    return s;
}

static void test_collect_values(void **state)
{
    (void)state;
    struct metrics_source src;
    memset(&src, 0, sizeof src);
    src.stats.ws_msgs_in = 7;
    src.stats.ws_open = 3;
    src.stats.ws_close_sent[0] = 2;  /* 1000 */
    src.stats.ws_close_sent[11] = 5; /* 1011 */
    src.stats.hub_dropped_oldest = 4;
    src.stats.hub_dropped_slow = 9;
    src.stats.ws_read_timeouts = 1;
    src.stats.ws_close_timeouts = 6;
    src.stats.ws_message_timeouts = 2;
    src.stats.handshake_timeouts = 8;
    src.stats.hub_errors[PE_BAD_JSON] = 12;
    src.rooms = 17;

    struct seen s = collect(&src, "websocket.messages.received");
    assert_int_equal(s.n_last, 1);
    assert_string_equal(s.last[0], "7");
    s = collect(&src, "websocket.active_connections");
    assert_string_equal(s.last[0], "3");
    s = collect(&src, "hub.rooms");
    assert_string_equal(s.last[0], "17");
    /* Close codes: only those seen. */
    s = collect(&src, "websocket.closes.sent");
    assert_int_equal(s.n_last, 2);
    assert_string_equal(s.last[0], "code=1000:2");
    assert_string_equal(s.last[1], "code=1011:5");
    s = collect(&src, "websocket.closes.received");
    assert_int_equal(s.n_last, 0);
    src.stats.hub_dropped_nomem = 1;
    s = collect(&src, "hub.messages.dropped");
    assert_int_equal(s.n_last, 3);
    assert_string_equal(s.last[0], "reason=drop_oldest:4");
    assert_string_equal(s.last[1], "reason=slow_consumer_closed:9");
    assert_string_equal(s.last[2], "reason=out_of_memory:1");
    s = collect(&src, "websocket.timeouts");
    assert_int_equal(s.n_last, 5);
    assert_string_equal(s.last[0], "kind=read:1");
    assert_string_equal(s.last[1], "kind=write:0");
    assert_string_equal(s.last[2], "kind=close:6");
    assert_string_equal(s.last[3], "kind=message:2");
    assert_string_equal(s.last[4], "kind=handshake:8");
    /* Every error code, always. */
    s = collect(&src, "hub.errors");
    assert_int_equal(s.n_last, PE_COUNT - 1);
    assert_string_equal(s.last[0], "code=bad_json:12");
    assert_string_equal(s.last[1], "code=bad_envelope:0");
}

static void test_handshake_reasons(void **state)
{
    (void)state;
    struct metrics_source src;
    memset(&src, 0, sizeof src);
    struct wh_stats *saved = stats_cur;
    stats_cur = &src.stats;
    STAT_HANDSHAKE_FAILED(HSR_ORIGIN);
    STAT_HANDSHAKE_FAILED(HSR_UNAUTHORIZED);
    STAT_HANDSHAKE_FAILED(HSR_UNAUTHORIZED);
    stats_cur = saved;
    assert_int_equal(src.stats.handshake_failures, 3);
    struct seen s = collect(&src, "websocket.handshake.failures");
    assert_int_equal(s.n_last, HSR_COUNT);
    assert_string_equal(s.last[HSR_ORIGIN], "reason=origin_not_allowed:1");
    assert_string_equal(s.last[HSR_UNAUTHORIZED], "reason=unauthorized:2");
    assert_string_equal(s.last[HSR_BAD_REQUEST], "reason=bad_request:0");
    /* A refusal counted without a reason shows as "other": the reasons add up. */
    src.stats.handshake_failures += 2;
    s = collect(&src, "websocket.handshake.failures");
    assert_int_equal(s.n_last, HSR_COUNT + 1);
    assert_string_equal(s.last[HSR_COUNT], "reason=other:2");
}

static void test_histogram_recording(void **state)
{
    (void)state;
    struct metrics_source src;
    memset(&src, 0, sizeof src);
    struct wh_stats *saved = stats_cur;
    stats_cur = &src.stats;
    const uint64_t depths[] = {0, 1, 2, 3, 4, 5, 4096, 4097, 100000};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++)
        stat_qdepth(depths[i]);
    stat_latency(5, 1);       /* on the first bound: le="5e-06" */
    stat_latency(6, 2);       /* just above: the next bucket, twice */
    stat_latency(2500000, 1); /* the last bound */
    stat_latency(9000000, 3); /* above every bound */
    stats_cur = saved;

    struct seen s = collect(&src, "hub.send_queue.depth");
    assert_int_equal(s.hist.n_bounds, METRICS_QDEPTH_BOUNDS);
    assert_true(s.hist_bounds[0] == 1.0 && s.hist_bounds[12] == 4096.0);
    const uint64_t want_q[STATS_QDEPTH_BUCKETS] = {2, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2};
    assert_memory_equal(s.hist_counts, want_q, sizeof want_q);
    assert_int_equal(s.hist.count, 9);
    assert_true(s.hist.sum == 0 + 1 + 2 + 3 + 4 + 5 + 4096 + 4097 + 100000);

    s = collect(&src, "hub.delivery.latency");
    assert_int_equal(s.hist.n_bounds, METRICS_LATENCY_BOUNDS);
    assert_true(s.hist_bounds[0] == 5e-6 && s.hist_bounds[METRICS_LATENCY_BOUNDS - 1] == 2.5);
    for (size_t i = 1; i < METRICS_LATENCY_BOUNDS; i++)
        assert_true(s.hist_bounds[i] > s.hist_bounds[i - 1]);
    assert_int_equal(s.hist_counts[0], 1);
    assert_int_equal(s.hist_counts[1], 2);
    assert_int_equal(s.hist_counts[METRICS_LATENCY_BOUNDS - 1], 1);
    assert_int_equal(s.hist_counts[METRICS_LATENCY_BOUNDS], 3);
    assert_int_equal(s.hist.count, 7);
    assert_true(fabs(s.hist.sum - (5 + 2 * 6 + 2500000 + 3 * 9000000) / 1e6) < 1e-9);
}

static void test_format_double(void **state)
{
    (void)state;
    char b[40];
    prom_format_double(b, sizeof b, 5e-05);
    assert_string_equal(b, "5e-05");
    prom_format_double(b, sizeof b, 0.0001);
    assert_string_equal(b, "0.0001");
    prom_format_double(b, sizeof b, 2.5);
    assert_string_equal(b, "2.5");
    prom_format_double(b, sizeof b, 4096);
    assert_string_equal(b, "4096");
    prom_format_double(b, sizeof b, 5000);
    assert_string_equal(b, "5000");
    prom_format_double(b, sizeof b, 0);
    assert_string_equal(b, "0");
    prom_format_double(b, sizeof b, 1e300);
    assert_true(strtod(b, NULL) == 1e300);
    prom_format_double(b, sizeof b, 0.1 + 0.2);
    assert_true(strtod(b, NULL) == 0.1 + 0.2);
    prom_format_double(b, sizeof b, INFINITY);
    assert_string_equal(b, "+Inf");
    prom_format_double(b, sizeof b, -INFINITY);
    assert_string_equal(b, "-Inf");
    prom_format_double(b, sizeof b, NAN);
    assert_string_equal(b, "NaN");
}

static void test_escape(void **state)
{
    (void)state;
    char b[64];
    assert_int_equal(prom_escape(b, sizeof b, "a\"b\\c\nd", true), 10);
    assert_string_equal(b, "a\\\"b\\\\c\\nd");
    assert_int_equal(prom_escape(b, sizeof b, "a\"b\\c\nd", false), 9);
    assert_string_equal(b, "a\"b\\\\c\\nd");
    /* Truncation: the full length is returned, the buffer stays terminated. */
    assert_int_equal(prom_escape(b, 4, "\\\\\\", true), 6);
    assert_string_equal(b, "\\\\\\");
}

static void test_render(void **state)
{
    (void)state;
    struct metrics_source src;
    memset(&src, 0, sizeof src);
    src.stats.ws_msgs_in = 7;
    src.stats.ws_bytes_out = 12345;
    src.stats.ws_close_received[1] = 4;
    src.stats.hub_qdepth_buckets[0] = 1;
    src.stats.hub_qdepth_buckets[2] = 2;
    src.stats.hub_qdepth_buckets[STATS_QDEPTH_BUCKETS - 1] = 1;
    src.stats.hub_qdepth_sum = 5000;
    src.stats.hub_latency_buckets[1] = 3;
    src.stats.hub_latency_sum_us = 250;
    src.online_users = 2;
    size_t n = 0;
    char *t = prom_render(&src, &n);
    assert_non_null(t);
    assert_int_equal(strlen(t), n);
    assert_int_equal(t[n - 1], '\n');

    assert_non_null(strstr(t, "\nwshub_websocket_messages_received_total 7\n"));
    assert_non_null(strstr(t, "# HELP wshub_websocket_messages_received_total WebSocket data "
                              "messages received.\n# TYPE "
                              "wshub_websocket_messages_received_total counter\n"));
    assert_non_null(strstr(t, "# TYPE wshub_websocket_sent_bytes_total counter\n"
                              "# UNIT wshub_websocket_sent_bytes_total bytes\n"
                              "wshub_websocket_sent_bytes_total 12345\n"));
    assert_non_null(strstr(t, "# TYPE wshub_websocket_active_connections gauge\n"));
    assert_non_null(strstr(t, "\nwshub_websocket_closes_received_total{code=\"1001\"} 4\n"));
    assert_non_null(strstr(t, "\nwshub_hub_online_users 2\n"));
    /* Cumulative buckets, +Inf equal to _count. */
    assert_non_null(strstr(t, "# TYPE wshub_hub_send_queue_depth_messages histogram\n"
                              "wshub_hub_send_queue_depth_messages_bucket{le=\"1\"} 1\n"
                              "wshub_hub_send_queue_depth_messages_bucket{le=\"2\"} 1\n"
                              "wshub_hub_send_queue_depth_messages_bucket{le=\"4\"} 3\n"));
    assert_non_null(strstr(t, "wshub_hub_send_queue_depth_messages_bucket{le=\"4096\"} 3\n"
                              "wshub_hub_send_queue_depth_messages_bucket{le=\"+Inf\"} 4\n"
                              "wshub_hub_send_queue_depth_messages_sum 5000\n"
                              "wshub_hub_send_queue_depth_messages_count 4\n"));
    assert_non_null(strstr(t, "# UNIT wshub_hub_delivery_latency_seconds seconds\n"
                              "wshub_hub_delivery_latency_seconds_bucket{le=\"5e-06\"} 0\n"
                              "wshub_hub_delivery_latency_seconds_bucket{le=\"1e-05\"} 3\n"));
    assert_non_null(strstr(t, "wshub_hub_delivery_latency_seconds_sum 0.00025\n"
                              "wshub_hub_delivery_latency_seconds_count 3\n"));
    /* No UNIT for counts of things: the name carries no unit suffix. */
    assert_null(strstr(t, "# UNIT wshub_websocket_messages_received_total"));

    /* Every sample belongs to the family whose HELP and TYPE came just before. */
    char family[128] = "";
    int samples = 0, helps = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            helps++;
            size_t k = strcspn(line + 7, " ");
            snprintf(family, sizeof family, "%.*s", (int)k, line + 7);
            continue;
        }
        if (line[0] == '#') continue;
        samples++;
        assert_int_equal(strncmp(line, family, strlen(family)), 0);
        const char *rest = line + strlen(family);
        assert_true(*rest == ' ' || *rest == '{' || strncmp(rest, "_bucket{", 8) == 0 ||
                    strncmp(rest, "_sum ", 5) == 0 || strncmp(rest, "_count ", 7) == 0);
    }
    assert_int_equal(helps, (int)metrics_collected_count(&src));
    assert_true(samples > helps);
    free(t);
}

/* Cluster mode's metrics: none on a single node (its exposition is unchanged), all of
 * them with the source's values once the node has Redis instances. */
static void test_cluster_metrics(void **state)
{
    (void)state;
    struct metrics_source src;
    memset(&src, 0, sizeof src);
    size_t n = 0;
    char *t = prom_render(&src, &n);
    assert_non_null(t);
    assert_null(strstr(t, "wshub_cluster_"));
    assert_null(strstr(t, "wshub_redis_"));
    free(t);
    struct seen s = collect(&src, "wshub.cluster.up");
    assert_int_equal(s.n_last, 0);
    assert_true(metrics_collected_count(&src) < metrics_count());

    src.redis_instances = 2;
    src.redis_instances_up = 1;
    src.cluster_received = 41;
    src.cluster_unavailable = 3;
    src.cluster_subscriptions = 5;
    src.redis_bytes_sent = 999;
    src.redis_rtt_buckets[0] = 2;
    src.redis_rtt_buckets[3] = 1;
    src.redis_rtt_buckets[METRICS_REDIS_RTT_BUCKETS - 1] = 4;
    src.redis_rtt_sum_us = 1500;
    assert_int_equal(metrics_collected_count(&src), metrics_count());
    s = collect(&src, "wshub.cluster.up");
    assert_string_equal(s.last[0], "0"); /* one instance of two is down */
    s = collect(&src, "wshub.cluster.redis.instances_up");
    assert_string_equal(s.last[0], "1");
    s = collect(&src, "wshub.redis.rtt");
    assert_int_equal(s.hist.n_bounds, METRICS_REDIS_RTT_BUCKETS - 1);
    assert_true(s.hist_bounds[0] == 1e-4);
    assert_int_equal(s.hist.count, 7);
    assert_true(fabs(s.hist.sum - 0.0015) < 1e-12);
    src.redis_instances_up = 2;
    s = collect(&src, "wshub.cluster.up");
    assert_string_equal(s.last[0], "1");

    t = prom_render(&src, &n);
    assert_non_null(t);
    assert_non_null(strstr(t, "\nwshub_cluster_up 1\n"));
    assert_non_null(strstr(t, "\nwshub_cluster_messages_received_total 41\n"));
    assert_non_null(strstr(t, "\nwshub_cluster_unavailable_total 3\n"));
    assert_non_null(strstr(t, "\nwshub_cluster_subscriptions 5\n"));
    assert_non_null(strstr(t, "# UNIT wshub_redis_sent_bytes_total bytes\n"
                              "wshub_redis_sent_bytes_total 999\n"));
    /* Cumulative buckets, +Inf equal to _count. */
    assert_non_null(strstr(t, "wshub_redis_rtt_seconds_bucket{le=\"0.0001\"} 2\n"
                              "wshub_redis_rtt_seconds_bucket{le=\"0.00025\"} 2\n"
                              "wshub_redis_rtt_seconds_bucket{le=\"0.0005\"} 2\n"
                              "wshub_redis_rtt_seconds_bucket{le=\"0.001\"} 3\n"));
    assert_non_null(strstr(t, "wshub_redis_rtt_seconds_bucket{le=\"+Inf\"} 7\n"
                              "wshub_redis_rtt_seconds_sum 0.0015\n"
                              "wshub_redis_rtt_seconds_count 7\n"));
    free(t);
}

/* ---- docs/observability.md lists every metric as the registry has it ---- */

static const char *kind_name(enum metric_kind k)
{
    switch (k) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_UPDOWN_COUNTER:
        return "up-down counter";
    case METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

static void doc_row(const struct metric_desc *d, char *buf, size_t cap)
{
    char attrs[64] = "";
    size_t k = 0;
    for (size_t i = 0; d->attr_keys[i]; i++)
        k +=
            (size_t)snprintf(attrs + k, sizeof attrs - k, "%s`%s`", i ? ", " : "", d->attr_keys[i]);
    snprintf(buf, cap, "| `%s` | `%s` | %s | `%s` | %s | %s |", d->otel_name, d->prom_name,
             kind_name(d->kind), d->unit, k ? attrs : "—", d->description);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (n + 4096 + 1 > cap) {
            cap = cap * 2 + 4096 + 1;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static void test_doc_lists_every_metric(void **state)
{
    (void)state;
    /* The source tree, from this file's own path (CMake compiles it by absolute path). */
    char path[1024];
    const char *me = __FILE__, *cut = strstr(me, "tests/unit/test_metrics.c");
    assert_non_null(cut);
    snprintf(path, sizeof path, "%.*sdocs/observability.md", (int)(cut - me), me);
    char *doc = read_file(path);
    if (!doc) fail_msg("cannot read %s", path);
    char *sec = strstr(doc, "\n## Metrics\n");
    assert_non_null(sec);
    char *next = strstr(sec + 1, "\n## ");
    if (next) next[1] = 0; /* only this section */
    int missing = 0;
    for (size_t i = 0; i < metrics_count(); i++) {
        char row[512];
        doc_row(metrics_desc(i), row, sizeof row);
        if (!strstr(sec, row)) {
            if (!missing++) printf("docs/observability.md lacks these rows (or has them stale):\n");
            printf("%s\n", row);
            fflush(stdout);
        }
    }
    /* And nothing that the registry does not have: one row per metric (a row whose
     * second cell is a Prometheus name). */
    int rows = 0;
    for (char *p = sec; (p = strstr(p, "\n| `")); p++) {
        char *eol = strchr(p + 1, '\n'), *cell = strstr(p, "` | `");
        if (cell && (!eol || cell < eol) && strncmp(cell + 5, "wshub_", 6) == 0) rows++;
    }
    free(doc);
    assert_int_equal(missing, 0);
    assert_int_equal(rows, (int)metrics_count());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_collect_values),
        cmocka_unit_test(test_handshake_reasons),
        cmocka_unit_test(test_histogram_recording),
        cmocka_unit_test(test_format_double),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_cluster_metrics),
        cmocka_unit_test(test_doc_lists_every_metric),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
