/* OTLP protobuf encoders (see otlp.h). The field numbers below are written from the
 * opentelemetry-proto definitions:
 *   common.v1   AnyValue {string 1, bool 2, int 3, double 4}  KeyValue {key 1, value 2}
 *               InstrumentationScope {name 1, version 2}
 *   resource.v1 Resource {attributes 1}
 *   trace.v1    ResourceSpans {resource 1, scope_spans 2}  ScopeSpans {scope 1, spans 2}
 *               Span {trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
 *               start 7 (fixed64), end 8 (fixed64), attributes 9, status 15,
 *               flags 16 (fixed32)}  Status {message 2, code 3}
 *   metrics.v1  ResourceMetrics {resource 1, scope_metrics 2}  ScopeMetrics {scope 1,
 *               metrics 2}  Metric {name 1, description 2, unit 3, gauge 5, sum 7,
 *               histogram 9}  Sum {data_points 1, temporality 2, is_monotonic 3}
 *               NumberDataPoint {start 2, time 3, as_double 4, as_int 6 (sfixed64),
 *               attributes 7}  HistogramDataPoint {start 2, time 3, count 4, sum 5,
 *               bucket_counts 6, explicit_bounds 7, attributes 9}
 *   collector   Export*ServiceRequest {resource_spans / resource_metrics 1} */
#include "telemetry/otlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    TEMPORALITY_CUMULATIVE = 2,
    SPAN_FLAGS_HAS_IS_REMOTE = 0x100, /* SpanFlags: the parent's remoteness is known */
    SPAN_FLAGS_IS_REMOTE = 0x200
};

/* ---- attributes ---- */

static size_t kv_open(struct pb *pb, uint32_t field, const char *key)
{
    size_t kv = pb_begin(pb, field);
    pb_string(pb, 1, key);
    return kv;
}

void otlp_kv_str(struct pb *pb, uint32_t field, const char *key, const char *v, size_t n)
{
    size_t kv = kv_open(pb, field, key);
    size_t av = pb_begin(pb, 2);
    pb_bytes(pb, 1, v, n);
    pb_end(pb, av);
    pb_end(pb, kv);
}

void otlp_kv_int(struct pb *pb, uint32_t field, const char *key, int64_t v)
{
    size_t kv = kv_open(pb, field, key);
    size_t av = pb_begin(pb, 2);
    pb_int64(pb, 3, v);
    pb_end(pb, av);
    pb_end(pb, kv);
}

void otlp_kv_bool(struct pb *pb, uint32_t field, const char *key, bool v)
{
    size_t kv = kv_open(pb, field, key);
    size_t av = pb_begin(pb, 2);
    pb_bool(pb, 2, v);
    pb_end(pb, av);
    pb_end(pb, kv);
}

void otlp_kv_double(struct pb *pb, uint32_t field, const char *key, double v)
{
    size_t kv = kv_open(pb, field, key);
    size_t av = pb_begin(pb, 2);
    pb_double(pb, 4, v);
    pb_end(pb, av);
    pb_end(pb, kv);
}

/* ---- resource ---- */

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hexdigit(s[i + 1])) < 0 || (lo = hexdigit(s[i + 2])) < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (k + 1 >= cap) return -1;
        out[k++] = c;
    }
    out[k] = 0;
    return (int)k;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Walks "k=v,k2=v2": calls fn for each pair (decoded), or returns -1 on the first
 * malformed one without calling fn at all. */
static int each_pair(const char *attrs, void (*fn)(void *, const char *, const char *), void *ud)
{
    for (int pass = 0; pass < 2; pass++) {
        const char *p = attrs;
        while (p && *p) {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            if (!eq) {
                if (len == 0 || (trim(&p, &len), len == 0)) goto next; /* "a=b,," */
                return -1;
            }
            const char *k = p, *v = eq + 1;
            size_t kn = (size_t)(eq - p), vn = len - kn - 1;
            trim(&k, &kn);
            trim(&v, &vn);
            char key[256], val[1024];
            if (kn == 0 || pct_decode(k, kn, key, sizeof key) < 0 ||
                pct_decode(v, vn, val, sizeof val) < 0)
                return -1;
            if (pass == 1) fn(ud, key, val);
        next:
            p = end ? end + 1 : NULL;
        }
    }
    return 0;
}

struct res_build {
    struct otlp_resource *r;
    bool name_from_env;
};

static void res_pair(void *ud, const char *k, const char *v)
{
    struct res_build *b = ud;
    if (strcmp(k, "service.name") == 0) {
        /* An empty name would leave the service unnamed: the default stays. */
        if (!b->name_from_env && *v)
            snprintf(b->r->service_name, sizeof b->r->service_name, "%s", v);
        return; /* written once, below */
    }
    otlp_kv_str(&b->r->enc, 1, k, v, strlen(v));
}

int otlp_resource_init(struct otlp_resource *r, const char *service_name, const char *attrs,
                       char *err, size_t cap)
{
    pb_init(&r->enc);
    struct res_build b = {.r = r, .name_from_env = service_name && *service_name};
    snprintf(r->service_name, sizeof r->service_name, "%s",
             b.name_from_env ? service_name : "wshub");
    int rc = 0;
    if (attrs && *attrs && each_pair(attrs, res_pair, &b) < 0) {
        snprintf(err, cap, "OTEL_RESOURCE_ATTRIBUTES is not a list of key=value pairs: ignored");
        rc = -1;
    }
    otlp_kv_str(&r->enc, 1, "service.name", r->service_name, strlen(r->service_name));
    otlp_kv_str(&r->enc, 1, "service.version", WSHUB_VERSION, strlen(WSHUB_VERSION));
    char host[256];
    if (gethostname(host, sizeof host) == 0) {
        host[sizeof host - 1] = 0;
        otlp_kv_str(&r->enc, 1, "host.name", host, strlen(host));
    }
    otlp_kv_int(&r->enc, 1, "process.pid", (int64_t)getpid());
    otlp_kv_str(&r->enc, 1, "telemetry.sdk.name", "wshub", 5);
    otlp_kv_str(&r->enc, 1, "telemetry.sdk.language", "c", 1);
    otlp_kv_str(&r->enc, 1, "telemetry.sdk.version", WSHUB_VERSION, strlen(WSHUB_VERSION));
    if (r->enc.failed) return -1;
    return rc;
}

void otlp_resource_free(struct otlp_resource *r)
{
    pb_free(&r->enc);
}

static void resource_and_scope(struct pb *pb, const struct otlp_resource *r, struct otlp_marks *m,
                               uint32_t scope_field)
{
    size_t res = pb_begin(pb, 1);
    pb_raw(pb, r->enc.buf, r->enc.len);
    pb_end(pb, res);
    m->ss = pb_begin(pb, scope_field);
    size_t scope = pb_begin(pb, 1);
    pb_string(pb, 1, OTLP_SCOPE_NAME);
    pb_string(pb, 2, WSHUB_VERSION);
    pb_end(pb, scope);
}

/* ---- traces ---- */

void otlp_traces_begin(struct pb *pb, const struct otlp_resource *r, struct otlp_marks *m)
{
    m->rs = pb_begin(pb, 1);
    resource_and_scope(pb, r, m, 2);
}

void otlp_span(struct pb *pb, const struct span *s)
{
    size_t sp = pb_begin(pb, 2);
    pb_bytes(pb, 1, s->ctx.trace_id, TRACE_ID_LEN);
    pb_bytes(pb, 2, s->ctx.span_id, SPAN_ID_LEN);
    if (s->has_parent) pb_bytes(pb, 4, s->parent_id, SPAN_ID_LEN);
    pb_string(pb, 5, s->name);
    pb_varint(pb, 6, s->kind);
    pb_fixed64(pb, 7, s->start_ns);
    pb_fixed64(pb, 8, s->end_ns);
    for (uint8_t i = 0; i < s->n_attrs; i++) {
        const struct span_attr *a = &s->attrs[i];
        switch (a->type) {
        case ATTR_STR:
            otlp_kv_str(pb, 9, a->key, s->str + a->off, a->len);
            break;
        case ATTR_INT:
            otlp_kv_int(pb, 9, a->key, a->v.i);
            break;
        case ATTR_BOOL:
            otlp_kv_bool(pb, 9, a->key, a->v.i != 0);
            break;
        case ATTR_DOUBLE:
            otlp_kv_double(pb, 9, a->key, a->v.d);
            break;
        }
    }
    if (s->status != SPAN_UNSET) {
        size_t st = pb_begin(pb, 15);
        if (s->status_msg && s->status == SPAN_ERROR) pb_string(pb, 2, s->status_msg);
        pb_varint(pb, 3, s->status);
        pb_end(pb, st);
    }
    uint32_t flags = (uint32_t)(s->ctx.flags & 0xff) | SPAN_FLAGS_HAS_IS_REMOTE;
    if (s->has_parent && s->parent_remote) flags |= SPAN_FLAGS_IS_REMOTE;
    pb_fixed32(pb, 16, flags);
    pb_end(pb, sp);
}

void otlp_traces_end(struct pb *pb, struct otlp_marks *m)
{
    pb_end(pb, m->ss);
    pb_end(pb, m->rs);
}

/* ---- metrics ---- */

void otlp_metrics_begin(struct pb *pb, const struct otlp_resource *r, struct otlp_marks *m)
{
    m->rs = pb_begin(pb, 1);
    resource_and_scope(pb, r, m, 2);
}

void otlp_metric_begin(struct pb *pb, struct otlp_metric *om, const char *name, const char *desc,
                       const char *unit, enum otlp_metric_kind kind)
{
    om->kind = kind;
    om->metric = pb_begin(pb, 2);
    pb_string(pb, 1, name);
    if (desc && *desc) pb_string(pb, 2, desc);
    if (unit && *unit) pb_string(pb, 3, unit);
    static const uint32_t data_field[] = {
        [OTLP_GAUGE] = 5, [OTLP_SUM_MONOTONIC] = 7, [OTLP_SUM_UPDOWN] = 7, [OTLP_HISTOGRAM] = 9};
    om->data = pb_begin(pb, data_field[kind]);
}

static void point_attrs(struct pb *pb, uint32_t field, const char *const *keys,
                        const char *const *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        otlp_kv_str(pb, field, keys[i], vals[i], strlen(vals[i]));
}

void otlp_point_int(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                    uint64_t time_ns, int64_t v, const char *const *keys, const char *const *vals,
                    size_t n_attrs)
{
    size_t dp = pb_begin(pb, 1);
    if (om->kind != OTLP_GAUGE) pb_fixed64(pb, 2, start_ns);
    pb_fixed64(pb, 3, time_ns);
    pb_fixed64(pb, 6, (uint64_t)v); /* sfixed64: the same bits */
    point_attrs(pb, 7, keys, vals, n_attrs);
    pb_end(pb, dp);
}

void otlp_point_double(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                       uint64_t time_ns, double v, const char *const *keys, const char *const *vals,
                       size_t n_attrs)
{
    size_t dp = pb_begin(pb, 1);
    if (om->kind != OTLP_GAUGE) pb_fixed64(pb, 2, start_ns);
    pb_fixed64(pb, 3, time_ns);
    pb_double(pb, 4, v);
    point_attrs(pb, 7, keys, vals, n_attrs);
    pb_end(pb, dp);
}

void otlp_point_histogram(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                          uint64_t time_ns, uint64_t count, double sum, const double *bounds,
                          size_t n_bounds, const uint64_t *counts, const char *const *keys,
                          const char *const *vals, size_t n_attrs)
{
    (void)om;
    size_t dp = pb_begin(pb, 1);
    pb_fixed64(pb, 2, start_ns);
    pb_fixed64(pb, 3, time_ns);
    pb_fixed64(pb, 4, count);
    pb_double(pb, 5, sum);
    size_t bc = pb_begin(pb, 6); /* packed repeated fixed64 */
    for (size_t i = 0; i <= n_bounds; i++)
        pb_put_fixed64(pb, counts[i]);
    pb_end(pb, bc);
    if (n_bounds) {
        size_t eb = pb_begin(pb, 7); /* packed repeated double */
        for (size_t i = 0; i < n_bounds; i++)
            pb_put_double(pb, bounds[i]);
        pb_end(pb, eb);
    }
    point_attrs(pb, 9, keys, vals, n_attrs);
    pb_end(pb, dp);
}

void otlp_metric_end(struct pb *pb, struct otlp_metric *om)
{
    if (om->kind != OTLP_GAUGE) pb_varint(pb, 2, TEMPORALITY_CUMULATIVE);
    if (om->kind == OTLP_SUM_MONOTONIC) pb_bool(pb, 3, true);
    pb_end(pb, om->data);
    pb_end(pb, om->metric);
}

void otlp_metrics_end(struct pb *pb, struct otlp_marks *m)
{
    pb_end(pb, m->ss);
    pb_end(pb, m->rs);
}
