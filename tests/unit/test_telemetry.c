/* Unit tests for the telemetry core: the protobuf writer (read back with a small
 * decoder written here from the encoding spec), the OTLP span encoding, W3C
 * traceparent parsing and formatting, the samplers (names, ratios, parent-based
 * rules, the observed fraction), the per-thread span rings (bounds, drops, several
 * producers at once), and the OTEL_* configuration and resource attributes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/export.h"
#include "telemetry/otlp.h"
#include "telemetry/pb.h"
#include "telemetry/spanq.h"
#include "telemetry/trace.h"

/* ---- a minimal protobuf reader ---- */

struct rd {
    const uint8_t *p, *e;
};

static int rd_varint(struct rd *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->e) return -1;
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Next field: number, wire type, and for LEN its body (sub-reader), for varint and
 * fixed its value. */
struct field {
    uint32_t num;
    int wire;
    uint64_t v;
    struct rd body;
};

static int rd_field(struct rd *r, struct field *f)
{
    uint64_t tag;
    memset(f, 0, sizeof *f);
    if (r->p >= r->e || rd_varint(r, &tag)) return -1;
    f->num = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    switch (f->wire) {
    case PB_VARINT:
        return rd_varint(r, &f->v);
    case PB_I64:
    case PB_I32: {
        size_t n = f->wire == PB_I64 ? 8 : 4;
        if ((size_t)(r->e - r->p) < n) return -1;
        f->v = 0;
        for (size_t i = 0; i < n; i++)
            f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 0;
    }
    case PB_LEN: {
        uint64_t n;
        if (rd_varint(r, &n) || n > (uint64_t)(r->e - r->p)) return -1;
        f->body = (struct rd){r->p, r->p + n};
        r->p += n;
        return 0;
    }
    }
    return -1;
}

/* Finds the first field num in r (from the start). */
static bool find_field(struct rd r, uint32_t num, struct field *out)
{
    memset(out, 0, sizeof *out);
    struct field f;
    while (rd_field(&r, &f) == 0)
        if (f.num == num) {
            *out = f;
            return true;
        }
    return false;
}

static size_t count_fields(struct rd r, uint32_t num)
{
    size_t n = 0;
    struct field f;
    while (rd_field(&r, &f) == 0)
        n += f.num == num;
    return n;
}

static struct rd rd_of(const struct pb *pb)
{
    return (struct rd){pb->buf, pb->buf + pb->len};
}

/* ---- protobuf writer ---- */

static void test_pb_scalars(void **state)
{
    (void)state;
    struct pb pb;
    pb_init(&pb);
    const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        pb_varint(&pb, (uint32_t)(i + 1), vals[i]);
    pb_fixed64(&pb, 20, 0x0102030405060708ULL);
    pb_fixed32(&pb, 21, 0xdeadbeef);
    pb_double(&pb, 22, 3.5);
    pb_int64(&pb, 23, -2);
    pb_string(&pb, 1000, "hello");
    assert_false(pb.failed);
    /* Known bytes: field 4 (128) is tag 0x20 then 0x80 0x01; field 5 (300) 0xac 0x02. */
    const uint8_t start[] = {0x08, 0x00, 0x10, 0x01, 0x18, 0x7f,
                             0x20, 0x80, 0x01, 0x28, 0xac, 0x02};
    assert_memory_equal(pb.buf, start, sizeof start);
    struct rd r = rd_of(&pb);
    struct field f;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        assert_int_equal(rd_field(&r, &f), 0);
        assert_int_equal(f.num, i + 1);
        assert_int_equal(f.wire, PB_VARINT);
        assert_true(f.v == vals[i]);
    }
    assert_int_equal(rd_field(&r, &f), 0);
    assert_true(f.num == 20 && f.wire == PB_I64 && f.v == 0x0102030405060708ULL);
    assert_int_equal(rd_field(&r, &f), 0);
    assert_true(f.num == 21 && f.wire == PB_I32 && f.v == 0xdeadbeef);
    assert_int_equal(rd_field(&r, &f), 0);
    double d;
    memcpy(&d, &f.v, sizeof d);
    assert_true(f.num == 22 && d == 3.5);
    assert_int_equal(rd_field(&r, &f), 0);
    assert_true(f.num == 23 && f.v == (uint64_t)-2); /* ten bytes, two's complement */
    assert_int_equal(rd_field(&r, &f), 0);
    assert_int_equal(f.num, 1000);
    assert_int_equal(f.body.e - f.body.p, 5);
    assert_memory_equal(f.body.p, "hello", 5);
    assert_true(r.p == r.e);
    pb_free(&pb);
}

/* Nested messages whose bodies cross the one-byte length (127/128) and deeper sizes:
 * the body slides forward and every level reads back. */
static void test_pb_nested_lengths(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 125, 126, 127, 128, 129, 16383, 16384, 70000};
    struct pb pb;
    pb_init(&pb);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        pb_reset(&pb);
        size_t outer = pb_begin(&pb, 1);
        size_t inner = pb_begin(&pb, 2);
        char *blob = malloc(sizes[i] + 1);
        for (size_t k = 0; k < sizes[i]; k++)
            blob[k] = (char)('a' + k % 26);
        pb_bytes(&pb, 3, blob, sizes[i]);
        pb_end(&pb, inner);
        pb_varint(&pb, 4, 42);
        pb_end(&pb, outer);
        assert_false(pb.failed);
        struct field o, in, b, v;
        struct rd r = rd_of(&pb);
        assert_int_equal(rd_field(&r, &o), 0);
        assert_true(r.p == r.e);
        assert_true(find_field(o.body, 2, &in));
        assert_true(find_field(in.body, 3, &b));
        assert_int_equal((size_t)(b.body.e - b.body.p), sizes[i]);
        assert_memory_equal(b.body.p, blob, sizes[i]);
        assert_true(find_field(o.body, 4, &v));
        assert_int_equal(v.v, 42);
        free(blob);
    }
    pb_free(&pb);
}

/* ---- OTLP span ---- */

static void test_otlp_span(void **state)
{
    (void)state;
    struct span s;
    memset(&s, 0, sizeof s);
    trace_sampler =
        (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1, .threshold = 1ULL << 56};
    struct trace_ctx parent;
    assert_int_equal(
        traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 55, &parent),
        0);
    assert_true(span_start(&s, "websocket.receive", SPAN_CONSUMER, &parent));
    span_attr_cstr(&s, "message.type", "chat_message");
    span_attr_int(&s, "recipients.count", 10000);
    span_attr_bool(&s, "flag", true);
    span_set_status(&s, SPAN_ERROR, "bad");
    s.end_ns = s.start_ns + 1000;

    struct otlp_resource res;
    char err[128];
    assert_int_equal(otlp_resource_init(&res, "svc", "a=b", err, sizeof err), 0);
    struct pb pb;
    pb_init(&pb);
    struct otlp_marks m;
    otlp_traces_begin(&pb, &res, &m);
    otlp_span(&pb, &s);
    otlp_traces_end(&pb, &m);
    assert_false(pb.failed);

    struct field rs, ss, sp, f;
    assert_true(find_field(rd_of(&pb), 1, &rs));  /* resource_spans */
    assert_true(find_field(rs.body, 1, &f));      /* resource */
    assert_int_equal(count_fields(f.body, 1), 8); /* a, service.name/version, host, pid, sdk x3 */
    assert_true(find_field(rs.body, 2, &ss));     /* scope_spans */
    assert_true(find_field(ss.body, 1, &f));      /* scope */
    assert_true(find_field(f.body, 1, &f));
    assert_memory_equal(f.body.p, "wshub", 5);
    assert_true(find_field(ss.body, 2, &sp)); /* the span */
    assert_true(find_field(sp.body, 1, &f));
    assert_memory_equal(f.body.p, parent.trace_id, 16);
    assert_true(find_field(sp.body, 2, &f));
    assert_memory_equal(f.body.p, s.ctx.span_id, 8);
    assert_true(find_field(sp.body, 4, &f));
    assert_memory_equal(f.body.p, parent.span_id, 8);
    assert_true(find_field(sp.body, 5, &f));
    assert_memory_equal(f.body.p, "websocket.receive", 17);
    assert_true(find_field(sp.body, 6, &f));
    assert_int_equal(f.v, 5);
    assert_true(find_field(sp.body, 7, &f));
    assert_true(f.v == s.start_ns && f.wire == PB_I64);
    assert_true(find_field(sp.body, 8, &f));
    assert_true(f.v == s.start_ns + 1000);
    assert_int_equal(count_fields(sp.body, 9), 3);
    assert_true(find_field(sp.body, 15, &f));
    struct field code;
    assert_true(find_field(f.body, 3, &code));
    assert_int_equal(code.v, 2);
    assert_true(find_field(sp.body, 16, &f));
    assert_int_equal(f.v, 0x301); /* sampled, parent remoteness known, remote */
    /* The int attribute: KeyValue{key 1, value 2 {int_value 3}}. */
    struct rd r = sp.body;
    struct field kv;
    bool seen = false;
    while (rd_field(&r, &kv) == 0) {
        struct field k, v, iv;
        if (kv.num != 9 || !find_field(kv.body, 1, &k)) continue;
        if ((size_t)(k.body.e - k.body.p) == 16 && !memcmp(k.body.p, "recipients.count", 16)) {
            assert_true(find_field(kv.body, 2, &v));
            assert_true(find_field(v.body, 3, &iv));
            assert_int_equal(iv.v, 10000);
            seen = true;
        }
    }
    assert_true(seen);
    pb_free(&pb);
    otlp_resource_free(&res);
}

/* ---- traceparent ---- */

static void test_traceparent(void **state)
{
    (void)state;
    struct trace_ctx c;
    const char *ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(traceparent_parse(ok, strlen(ok), &c), 0);
    assert_true(c.valid && c.remote && c.flags == 1);
    assert_int_equal(c.trace_id[0], 0x4b);
    assert_int_equal(c.span_id[7], 0xb7);
    char out[56];
    traceparent_format(&c, out);
    assert_string_equal(out, ok);
    /* A later version may carry more after a dash; version 00 may not. */
    const char *future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever";
    assert_int_equal(traceparent_parse(future, strlen(future), &c), 0);
    assert_int_equal(c.flags, 9);
    static const char *const bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(traceparent_parse(bad[i], strlen(bad[i]), &c), -1);
        assert_false(c.valid);
    }
    /* The guide's fields: any case, exact lengths, not all zero. */
    assert_int_equal(
        trace_ids_parse("4BF92F3577B34DA6A3CE929D0E0E4736", 32, "00f067aa0ba902b7", 16, &c), 0);
    assert_true(c.valid && c.flags == TRACE_FLAG_SAMPLED);
    assert_int_equal(trace_ids_parse("4bf92f", 6, "00f067aa0ba902b7", 16, &c), -1);
    assert_int_equal(
        trace_ids_parse("00000000000000000000000000000000", 32, "00f067aa0ba902b7", 16, &c), -1);
}

/* ---- samplers ---- */

static void test_sampler_parse(void **state)
{
    (void)state;
    struct sampler s;
    assert_int_equal(sampler_parse(NULL, NULL, &s), 0);
    assert_int_equal(s.kind, SAMPLER_PB_ALWAYS_ON);
    assert_int_equal(sampler_parse("always_off", "", &s), 0);
    assert_int_equal(s.kind, SAMPLER_ALWAYS_OFF);
    assert_int_equal(sampler_parse("traceidratio", "0.25", &s), 0);
    assert_true(s.kind == SAMPLER_RATIO && s.ratio == 0.25 && s.threshold == 1ULL << 54);
    assert_int_equal(sampler_parse("parentbased_traceidratio", NULL, &s), 0);
    assert_true(s.ratio == 1.0); /* the spec's default argument */
    assert_int_equal(sampler_parse("sometimes", NULL, &s), -1);
    assert_int_equal(sampler_parse("traceidratio", "1.5", &s), -1);
    assert_int_equal(sampler_parse("traceidratio", "-0.1", &s), -1);
    assert_int_equal(sampler_parse("traceidratio", "nan", &s), -1);
    assert_int_equal(sampler_parse("traceidratio", "0.5x", &s), -1);
}

static void test_sampler_decide(void **state)
{
    (void)state;
    struct sampler s;
    uint8_t id[16];
    struct trace_ctx on = {.valid = true, .flags = 1}, off = {.valid = true, .flags = 0};
    /* The observed fraction of random ids follows the ratio. */
    const double ratios[] = {0.0, 0.01, 0.25, 1.0};
    for (size_t k = 0; k < 4; k++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%g", ratios[k]);
        assert_int_equal(sampler_parse("traceidratio", arg, &s), 0);
        int kept = 0, n = 100000;
        for (int i = 0; i < n; i++) {
            trace_random_bytes(id, sizeof id);
            kept += sampler_decide(&s, NULL, id);
        }
        double got = (double)kept / n;
        assert_true(fabs(got - ratios[k]) < 0.01);
        /* Not parent-based: the parent's flag does not matter, the id does. */
        trace_random_bytes(id, sizeof id);
        assert_int_equal(sampler_decide(&s, &on, id), sampler_decide(&s, &off, id));
    }
    assert_int_equal(sampler_parse("parentbased_traceidratio", "0", &s), 0);
    trace_random_bytes(id, sizeof id);
    assert_false(sampler_decide(&s, NULL, id));
    assert_true(sampler_decide(&s, &on, id));
    assert_int_equal(sampler_parse("parentbased_always_on", NULL, &s), 0);
    assert_true(sampler_decide(&s, NULL, id));
    assert_false(sampler_decide(&s, &off, id));
    assert_int_equal(sampler_parse("parentbased_always_off", NULL, &s), 0);
    assert_false(sampler_decide(&s, NULL, id));
    assert_true(sampler_decide(&s, &on, id));
    assert_int_equal(sampler_parse("always_on", NULL, &s), 0);
    assert_true(sampler_decide(&s, &off, id));
    /* An unsampled span costs no id and no recording; its children inherit that. */
    trace_sampler = (struct sampler){.kind = SAMPLER_PB_ALWAYS_ON, .ratio = 1};
    struct span sp, child;
    assert_false(span_start(&sp, "x", SPAN_INTERNAL, &off));
    assert_false(sp.recording);
    assert_false(span_start(&child, "y", SPAN_INTERNAL, &sp.ctx));
}

/* ---- span rings ---- */

static void test_spanq_bounds(void **state)
{
    (void)state;
    spanq_init(16, 8, NULL);
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    struct span s;
    for (int i = 0; i < 20; i++) {
        assert_true(span_start(&s, "s", SPAN_INTERNAL, NULL));
        span_attr_int(&s, "i", i);
        span_end(&s);
    }
    assert_int_equal(spanq_pending(), 16);
    assert_int_equal(spanq_dropped(), 4);
    const struct span *got[32];
    assert_int_equal(spanq_take(got, 10), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(got[i]->attrs[0].v.i, i); /* oldest first */
    spanq_release();
    assert_int_equal(spanq_pending(), 6);
    assert_int_equal(spanq_take(got, 32), 6);
    assert_int_equal(got[5]->attrs[0].v.i, 15);
    spanq_release();
    assert_int_equal(spanq_pending(), 0);
    spanq_destroy();
}

static int wakes;
static void count_wake(void)
{
    wakes++;
}

/* A ring smaller than a batch (the queue split over many workers) must still wake
 * the exporter before it fills, not only when the schedule delay passes. */
static void test_spanq_wakes_before_full(void **state)
{
    (void)state;
    wakes = 0;
    spanq_init(256, 512, count_wake);
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    struct span s;
    for (int i = 0; i < 200; i++) {
        assert_true(span_start(&s, "s", SPAN_INTERNAL, NULL));
        span_end(&s);
    }
    assert_int_equal(wakes, 1);
    assert_int_equal(spanq_dropped(), 0);
    spanq_destroy();
}

/* Two producer threads, one of which keeps its ring full: every take still serves
 * the other ring in turn. */
static void *fill_ring(void *arg)
{
    intptr_t t = (intptr_t)arg;
    struct span s;
    for (int i = 0; i < 16; i++) {
        span_start(&s, "f", SPAN_INTERNAL, NULL);
        span_attr_int(&s, "t", t);
        span_end(&s);
    }
    return NULL;
}

static void test_spanq_take_rotates(void **state)
{
    (void)state;
    spanq_init(16, 8, NULL);
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    pthread_t a, b;
    pthread_create(&a, NULL, fill_ring, (void *)(intptr_t)1);
    pthread_join(a, NULL);
    pthread_create(&b, NULL, fill_ring, (void *)(intptr_t)2);
    pthread_join(b, NULL);
    const struct span *got[8];
    int seen[3] = {0};
    for (int round = 0; round < 2; round++) {
        assert_int_equal(spanq_take(got, 8), 8);
        seen[got[0]->attrs[0].v.i]++;
        spanq_release();
    }
    assert_int_equal(seen[1], 1); /* the two takes started at different rings */
    assert_int_equal(seen[2], 1);
    spanq_destroy();
}

/* String attributes are UTF-8 whatever the input, and cut on a character boundary. */
static void test_span_attr_utf8(void **state)
{
    (void)state;
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    struct span s;
    assert_true(span_start(&s, "u", SPAN_INTERNAL, NULL));
    span_attr_str(&s, "ua", "a\xff\xc3\xa9\xed\xa0\x80z", 8);
    assert_int_equal(s.attrs[0].len, 8);
    assert_memory_equal(s.str + s.attrs[0].off, "a?\xc3\xa9???z", 8);
    /* Fill the string area up to 1 byte short of a 3-byte character. */
    char big[SPAN_STR_BYTES];
    memset(big, 'x', sizeof big);
    size_t left = SPAN_STR_BYTES - s.str_used;
    memcpy(big + left - 2, "\xe2\x82\xac", 3); /* a euro sign straddling the end */
    span_attr_str(&s, "big", big, left + 1);
    assert_int_equal(s.attrs[1].len, left - 2);
    assert_int_equal(s.str_used, SPAN_STR_BYTES - 2);
}

#define PRODUCERS  4
#define PER_THREAD 20000

static void *producer(void *arg)
{
    intptr_t t = (intptr_t)arg;
    struct span s;
    for (int i = 0; i < PER_THREAD; i++) {
        span_start(&s, "p", SPAN_INTERNAL, NULL);
        span_attr_int(&s, "t", t);
        span_attr_int(&s, "i", i);
        span_attr_cstr(&s, "text", "abcdefgh");
        span_end(&s);
    }
    return NULL;
}

/* Several producers and one consumer at once: nothing is lost without being counted,
 * each producer's spans arrive in order and intact. */
static void test_spanq_threads(void **state)
{
    (void)state;
    spanq_init(256, 64, NULL);
    trace_sampler = (struct sampler){.kind = SAMPLER_ALWAYS_ON, .ratio = 1};
    pthread_t th[PRODUCERS];
    for (intptr_t t = 0; t < PRODUCERS; t++)
        pthread_create(&th[t], NULL, producer, (void *)t);
    int64_t last[PRODUCERS];
    for (int t = 0; t < PRODUCERS; t++)
        last[t] = -1;
    uint64_t taken = 0;
    const struct span *got[128];
    for (int rounds = 0; rounds < 10000000; rounds++) {
        size_t n = spanq_take(got, 128);
        for (size_t k = 0; k < n; k++) {
            const struct span *s = got[k];
            assert_int_equal(s->n_attrs, 3);
            int64_t t = s->attrs[0].v.i, i = s->attrs[1].v.i;
            assert_true(t >= 0 && t < PRODUCERS);
            assert_true(i > last[t]);
            last[t] = i;
            assert_memory_equal(s->str + s->attrs[2].off, "abcdefgh", 8);
        }
        spanq_release();
        taken += n;
        if (taken + spanq_dropped() == (uint64_t)PRODUCERS * PER_THREAD) break;
    }
    for (int t = 0; t < PRODUCERS; t++)
        pthread_join(th[t], NULL);
    taken += spanq_take(got, 128);
    spanq_release();
    assert_true(taken + spanq_dropped() == (uint64_t)PRODUCERS * PER_THREAD);
    assert_true(taken > 0);
    spanq_destroy();
}

/* ---- configuration ---- */

static const char *const *env_table;

static const char *table_get(const char *name)
{
    for (const char *const *p = env_table; p && *p; p += 2)
        if (strcmp(p[0], name) == 0) return p[1];
    return NULL;
}

static int load(const char *const *table, struct otel_config *c, char *err)
{
    env_table = table;
    return otel_config_load(c, table_get, err, 256);
}

static void test_config(void **state)
{
    (void)state;
    struct otel_config c;
    char err[256];
    assert_int_equal(load((const char *const[]){NULL}, &c, err), 0);
    assert_false(c.traces.on || c.metrics.on); /* no endpoint: nothing starts */
    assert_int_equal(c.bsp_delay_ms, 5000);
    assert_int_equal(c.bsp_queue, 2048);
    assert_int_equal(c.bsp_batch, 512);
    assert_int_equal(c.metric_interval_ms, 60000);
    assert_int_equal(c.traces.timeout_ms, 10000);
    assert_int_equal(c.sampler.kind, SAMPLER_PB_ALWAYS_ON);

    assert_int_equal(load((const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/",
                                                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                                                "http://m:9/custom", "OTEL_EXPORTER_OTLP_TIMEOUT",
                                                "700", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300",
                                                "OTEL_EXPORTER_OTLP_HEADERS", "a=b",
                                                "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "c=d", NULL},
                          &c, err),
                     0);
    assert_true(c.traces.on && c.metrics.on);
    assert_string_equal(c.traces.url, "http://c:4318/v1/traces");
    assert_string_equal(c.metrics.url, "http://m:9/custom"); /* per-signal: as it is */
    assert_int_equal(c.traces.timeout_ms, 300);
    assert_int_equal(c.metrics.timeout_ms, 700);
    assert_string_equal(c.traces.headers, "a=b");
    assert_string_equal(c.metrics.headers, "c=d");
    assert_false(c.traces.gzip || c.metrics.gzip);

    assert_int_equal(
        load((const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c",
                                   "OTEL_EXPORTER_OTLP_COMPRESSION", "gzip",
                                   "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none", NULL},
             &c, err),
        0);
    assert_true(c.traces.gzip);
    assert_false(c.metrics.gzip);

    assert_int_equal(
        load((const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c",
                                   "OTEL_TRACES_EXPORTER", "none", "OTEL_BSP_MAX_QUEUE_SIZE", "100",
                                   "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500", NULL},
             &c, err),
        0);
    assert_false(c.traces.on);
    assert_true(c.metrics.on);
    assert_int_equal(c.bsp_batch, 100); /* never more than the queue */

    assert_int_equal(load((const char *const[]){"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c",
                                                "OTEL_SDK_DISABLED", "TRUE", NULL},
                          &c, err),
                     0);
    assert_false(c.traces.on || c.metrics.on);

    static const char *const bad[][4] = {
        {"OTEL_BSP_SCHEDULE_DELAY", "-1"},
        {"OTEL_BSP_SCHEDULE_DELAY", "5s"},
        {"OTEL_BSP_MAX_QUEUE_SIZE", "0"},
        {"OTEL_METRIC_EXPORT_INTERVAL", "99999999999"},
        {"OTEL_TRACES_SAMPLER", "sometimes"},
        {"OTEL_TRACES_EXPORTER", "zipkin"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"},
        {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(load((const char *const[]){bad[i][0], bad[i][1], NULL}, &c, err), -1);
        assert_non_null(
            strstr(err, bad[i][0][0] == 'O' && strstr(bad[i][0], "ENDPOINT") ? "http" : bad[i][0]));
    }
}

/* Resource attributes: decoded pairs, service.name precedence, malformed lists. */
static void test_resource(void **state)
{
    (void)state;
    struct otlp_resource r;
    char err[160];
    assert_int_equal(otlp_resource_init(&r, NULL, " k1 = v%201 ,service.name=fromattrs,,k2=%2C",
                                        err, sizeof err),
                     0);
    assert_string_equal(r.service_name, "fromattrs");
    /* Find every key and value. */
    struct rd rd = rd_of(&r.enc);
    struct field kv;
    int found = 0;
    while (rd_field(&rd, &kv) == 0) {
        struct field k, v, s;
        assert_true(find_field(kv.body, 1, &k));
        assert_true(find_field(kv.body, 2, &v));
        size_t kl = (size_t)(k.body.e - k.body.p);
        if (!find_field(v.body, 1, &s)) continue;
        size_t sl = (size_t)(s.body.e - s.body.p);
        if (kl == 2 && !memcmp(k.body.p, "k1", 2)) {
            assert_true(sl == 3 && !memcmp(s.body.p, "v 1", 3));
            found++;
        }
        if (kl == 2 && !memcmp(k.body.p, "k2", 2)) {
            assert_true(sl == 1 && s.body.p[0] == ',');
            found++;
        }
        if (kl == 12 && !memcmp(k.body.p, "service.name", 12)) found++;
    }
    assert_int_equal(found, 3); /* service.name once */
    otlp_resource_free(&r);
    assert_int_equal(otlp_resource_init(&r, "env-name", "service.name=x", err, sizeof err), 0);
    assert_string_equal(r.service_name, "env-name");
    otlp_resource_free(&r);
    assert_int_equal(otlp_resource_init(&r, NULL, "a=b,novalue,c=d", err, sizeof err), -1);
    assert_string_equal(r.service_name, "wshub");
    assert_int_equal(count_fields(rd_of(&r.enc), 1), 7); /* none of the list's pairs */
    otlp_resource_free(&r);
    assert_int_equal(otlp_resource_init(&r, NULL, "a=%zz", err, sizeof err), -1);
    otlp_resource_free(&r);
    /* Found by fuzz_traceparent: an empty service.name left the service unnamed. */
    assert_int_equal(otlp_resource_init(&r, NULL, "service.name=", err, sizeof err), 0);
    assert_string_equal(r.service_name, "wshub");
    otlp_resource_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pb_scalars),
        cmocka_unit_test(test_pb_nested_lengths),
        cmocka_unit_test(test_otlp_span),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_sampler_parse),
        cmocka_unit_test(test_sampler_decide),
        cmocka_unit_test(test_spanq_bounds),
        cmocka_unit_test(test_spanq_threads),
        cmocka_unit_test(test_spanq_wakes_before_full),
        cmocka_unit_test(test_spanq_take_rotates),
        cmocka_unit_test(test_span_attr_utf8),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_resource),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
