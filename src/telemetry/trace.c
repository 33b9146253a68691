/* Trace context, sampling and span recording (see trace.h). */
#include "telemetry/trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "telemetry/spanq.h"

bool trace_enabled;
struct sampler trace_sampler = {.kind = SAMPLER_PB_ALWAYS_ON, .ratio = 1.0};
_Thread_local const struct trace_ctx *trace_active;
_Thread_local const struct trace_ctx *trace_out;

/* ---- random ids: xoshiro256** per thread ---- */

static _Thread_local uint64_t rng[4];
static _Thread_local bool rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void rng_seed(void)
{
    if (getrandom(rng, sizeof rng, 0) != (ssize_t)sizeof rng) {
        /* No entropy source: still distinct per thread and per run. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&rng;
        for (int i = 0; i < 4; i++) {
            x += 0x9e3779b97f4a7c15ULL; /* splitmix64 */
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            rng[i] = z ^ (z >> 31);
        }
    }
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) rng[0] = 1; /* the one bad state */
    rng_seeded = true;
}

uint64_t trace_random64(void)
{
    if (!rng_seeded) rng_seed();
    uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return r;
}

void trace_random_bytes(uint8_t *out, size_t n)
{
    while (n) {
        uint64_t r = trace_random64();
        size_t k = n < 8 ? n : 8;
        memcpy(out, &r, k);
        out += k;
        n -= k;
    }
}

static bool all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

static void new_id(uint8_t *out, size_t n)
{
    do
        trace_random_bytes(out, n);
    while (all_zero(out, n));
}

uint64_t trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- sampler ---- */

static const struct {
    const char *name;
    enum sampler_kind kind;
} sampler_names[] = {
    {"always_on", SAMPLER_ALWAYS_ON},
    {"always_off", SAMPLER_ALWAYS_OFF},
    {"traceidratio", SAMPLER_RATIO},
    {"parentbased_always_on", SAMPLER_PB_ALWAYS_ON},
    {"parentbased_always_off", SAMPLER_PB_ALWAYS_OFF},
    {"parentbased_traceidratio", SAMPLER_PB_RATIO},
};

int sampler_parse(const char *name, const char *arg, struct sampler *out)
{
    out->kind = SAMPLER_PB_ALWAYS_ON;
    out->ratio = 1.0;
    if (name && *name) {
        bool found = false;
        for (size_t i = 0; i < sizeof sampler_names / sizeof sampler_names[0]; i++) {
            if (strcmp(name, sampler_names[i].name) == 0) {
                out->kind = sampler_names[i].kind;
                found = true;
            }
        }
        if (!found) return -1;
    }
    if ((out->kind == SAMPLER_RATIO || out->kind == SAMPLER_PB_RATIO) && arg && *arg) {
        char *end;
        double r = strtod(arg, &end);
        if (*end || !(r >= 0.0 && r <= 1.0)) return -1; /* also refuses NaN */
        out->ratio = r;
    }
    /* The low 56 bits of a random trace id are uniform (W3C level 2 "random" flag);
     * ratio r keeps ids whose value is below r * 2^56. */
    out->threshold = out->ratio >= 1.0 ? (1ULL << 56) : (uint64_t)ldexp(out->ratio, 56);
    return 0;
}

static bool ratio_keeps(const struct sampler *s, const uint8_t id[TRACE_ID_LEN])
{
    uint64_t low = 0;
    for (int i = 9; i < 16; i++)
        low = (low << 8) | id[i];
    return low < s->threshold;
}

bool sampler_decide(const struct sampler *s, const struct trace_ctx *parent,
                    const uint8_t trace_id[TRACE_ID_LEN])
{
    bool has_parent = parent && parent->valid;
    switch (s->kind) {
    case SAMPLER_ALWAYS_ON:
        return true;
    case SAMPLER_ALWAYS_OFF:
        return false;
    case SAMPLER_RATIO:
        return ratio_keeps(s, trace_id);
    case SAMPLER_PB_ALWAYS_ON:
        return has_parent ? (parent->flags & TRACE_FLAG_SAMPLED) != 0 : true;
    case SAMPLER_PB_ALWAYS_OFF:
        return has_parent ? (parent->flags & TRACE_FLAG_SAMPLED) != 0 : false;
    case SAMPLER_PB_RATIO:
        return has_parent ? (parent->flags & TRACE_FLAG_SAMPLED) != 0 : ratio_keeps(s, trace_id);
    }
    return false;
}

/* ---- W3C trace context ---- */

static int hexval(char c, bool lower_only)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (!lower_only && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int unhex(const char *s, size_t n, uint8_t *out, bool lower_only)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i], lower_only), lo = hexval(s[2 * i + 1], lower_only);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int traceparent_parse(const char *s, size_t n, struct trace_ctx *out)
{
    memset(out, 0, sizeof *out);
    uint8_t version, flags;
    if (n < TRACEPARENT_LEN || !s) return -1;
    if (unhex(s, 1, &version, true) < 0 || version == 0xff) return -1;
    if (version == 0 && n != TRACEPARENT_LEN) return -1;
    if (n > TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-') return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
    if (unhex(s + 3, TRACE_ID_LEN, out->trace_id, true) < 0 ||
        unhex(s + 36, SPAN_ID_LEN, out->span_id, true) < 0 || unhex(s + 53, 1, &flags, true) < 0)
        return -1;
    if (all_zero(out->trace_id, TRACE_ID_LEN) || all_zero(out->span_id, SPAN_ID_LEN)) return -1;
    out->flags = flags;
    out->valid = true;
    out->remote = true;
    return 0;
}

void trace_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = 0;
}

void traceparent_format(const struct trace_ctx *c, char *out)
{
    memcpy(out, "00-", 3);
    trace_hex(c->trace_id, TRACE_ID_LEN, out + 3);
    out[35] = '-';
    trace_hex(c->span_id, SPAN_ID_LEN, out + 36);
    out[52] = '-';
    uint8_t f = c->flags & TRACE_FLAG_SAMPLED; /* only the bits version 00 defines */
    trace_hex(&f, 1, out + 53);
}

int trace_ids_parse(const char *trace_hex_s, size_t tn, const char *span_hex_s, size_t sn,
                    struct trace_ctx *out)
{
    memset(out, 0, sizeof *out);
    if (tn != 2 * TRACE_ID_LEN || sn != 2 * SPAN_ID_LEN) return -1;
    if (unhex(trace_hex_s, TRACE_ID_LEN, out->trace_id, false) < 0 ||
        unhex(span_hex_s, SPAN_ID_LEN, out->span_id, false) < 0)
        return -1;
    if (all_zero(out->trace_id, TRACE_ID_LEN) || all_zero(out->span_id, SPAN_ID_LEN)) return -1;
    out->flags = TRACE_FLAG_SAMPLED; /* ids only ever travel on sampled messages */
    out->valid = true;
    out->remote = true;
    return 0;
}

/* ---- spans ---- */

bool span_start(struct span *s, const char *name, enum span_kind kind,
                const struct trace_ctx *parent)
{
    return span_start_at(s, name, kind, parent, 0);
}

bool span_start_at(struct span *s, const char *name, enum span_kind kind,
                   const struct trace_ctx *parent, uint64_t start_ns)
{
    if (!parent) parent = trace_active;
    bool has_parent = parent && parent->valid;
    s->recording = false;
    s->has_parent = has_parent;
    if (has_parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, TRACE_ID_LEN);
    } else {
        new_id(s->ctx.trace_id, TRACE_ID_LEN);
    }
    bool sampled = sampler_decide(&trace_sampler, parent, s->ctx.trace_id);
    s->ctx.flags = sampled ? TRACE_FLAG_SAMPLED : 0;
    s->ctx.valid = true;
    s->ctx.remote = false;
    if (!sampled) {
        /* Children inherit the decision through ctx; the span id itself is never
         * seen by anyone, so it is not drawn. */
        memset(s->ctx.span_id, 0xff, SPAN_ID_LEN);
        return false;
    }
    new_id(s->ctx.span_id, SPAN_ID_LEN);
    if (has_parent) memcpy(s->parent_id, parent->span_id, SPAN_ID_LEN);
    s->parent_remote = has_parent && parent->remote;
    s->recording = true;
    s->kind = (uint8_t)kind;
    s->status = SPAN_UNSET;
    s->status_msg = NULL;
    s->n_attrs = 0;
    s->str_used = 0;
    s->name = name;
    s->start_ns = start_ns ? start_ns : trace_now_ns();
    s->end_ns = 0;
    return true;
}

static struct span_attr *attr_add(struct span *s, const char *key, uint8_t type)
{
    if (!s->recording || s->n_attrs >= SPAN_MAX_ATTRS) return NULL;
    struct span_attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->type = type;
    return a;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0 when malformed. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* OTLP string values must be UTF-8 (a strict receiver refuses the whole request
 * otherwise), and values come from untrusted headers and messages: malformed bytes
 * become '?', and truncation never splits a character. */
void span_attr_str(struct span *s, const char *key, const char *v, size_t n)
{
    if (!s->recording) return;
    size_t room = SPAN_STR_BYTES - s->str_used;
    struct span_attr *a = attr_add(s, key, ATTR_STR);
    if (!a) return;
    const unsigned char *in = (const unsigned char *)v;
    char *out = s->str + s->str_used;
    size_t i = 0, k = 0;
    while (i < n) {
        size_t len = utf8_seq(in + i, n - i);
        if (len == 0) {
            if (k + 1 > room) break;
            out[k++] = '?';
            i++;
            continue;
        }
        if (k + len > room) break; /* truncated rather than lost, on a boundary */
        memcpy(out + k, in + i, len);
        k += len;
        i += len;
    }
    a->off = s->str_used;
    a->len = (uint16_t)k;
    s->str_used = (uint16_t)(s->str_used + k);
}

void span_attr_cstr(struct span *s, const char *key, const char *v)
{
    if (v) span_attr_str(s, key, v, strlen(v));
}

void span_attr_int(struct span *s, const char *key, int64_t v)
{
    struct span_attr *a = attr_add(s, key, ATTR_INT);
    if (a) a->v.i = v;
}

void span_attr_bool(struct span *s, const char *key, bool v)
{
    struct span_attr *a = attr_add(s, key, ATTR_BOOL);
    if (a) a->v.i = v;
}

void span_set_status(struct span *s, enum span_status st, const char *msg)
{
    if (!s->recording) return;
    s->status = (uint8_t)st;
    s->status_msg = msg;
}

static void end_at(struct span *s, uint64_t now)
{
    if (!s->recording) return;
    s->recording = false;
    s->end_ns = now;
    spanq_push(s);
}

void span_end(struct span *s)
{
    if (s->recording) end_at(s, trace_now_ns());
}

void span_end_pair(struct span *inner, struct span *outer)
{
    if (!inner->recording && !outer->recording) return;
    uint64_t now = trace_now_ns();
    end_at(inner, now);
    end_at(outer, now);
}
