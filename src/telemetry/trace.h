/* Spans: the W3C trace context, the sampler, and span records built on the stack of
 * the code they time and handed to the exporter when they end (see spanq.h).
 *
 * Cost model. trace_enabled is set once before the workers start and never changes;
 * every call site tests trace_on() first, so with no exporter configured a traced
 * point costs one predictable branch. A span that is not sampled is never recorded:
 * span_start returns false, fills only the context its children need to inherit
 * the decision, and nothing is copied, timed or queued.
 *
 * Context. As OpenTelemetry's implicit context does, the calling thread's active
 * span is a thread-local (trace_active), set by span_activate and put back by
 * span_deactivate; a span started with no explicit parent uses it. trace_out is the
 * span whose ids proto_frame writes into the frame being built (a websocket.send).
 *
 * Ownership: a struct span belongs to the caller (usually on the stack); strings
 * given as attribute values are copied into it, attribute keys and span names must
 * be static. */
#ifndef WSHUB_TELEMETRY_TRACE_H
#define WSHUB_TELEMETRY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_LEN       16
#define SPAN_ID_LEN        8
#define TRACEPARENT_LEN    55 /* version 00 */
#define SPAN_MAX_ATTRS     16
#define SPAN_STR_BYTES     768 /* attribute string values, copied */
#define TRACE_FLAG_SAMPLED 0x01

enum span_kind {
    SPAN_INTERNAL = 1,
    SPAN_SERVER = 2,
    SPAN_CLIENT = 3,
    SPAN_PRODUCER = 4,
    SPAN_CONSUMER = 5
};
enum span_status { SPAN_UNSET = 0, SPAN_OK = 1, SPAN_ERROR = 2 };

struct trace_ctx {
    uint8_t trace_id[TRACE_ID_LEN];
    uint8_t span_id[SPAN_ID_LEN];
    uint8_t flags; /* W3C trace-flags; bit 0: sampled */
    bool valid;    /* ids present (all-zero ids are never valid) */
    bool remote;   /* came from a traceparent (header or message) */
};

enum attr_type { ATTR_STR = 0, ATTR_INT = 1, ATTR_BOOL = 2, ATTR_DOUBLE = 3 };

struct span_attr {
    const char *key; /* static */
    uint8_t type;
    uint16_t off, len; /* ATTR_STR: into span.str */
    union {
        int64_t i;
        double d;
    } v;
};

struct span {
    struct trace_ctx ctx;
    uint8_t parent_id[SPAN_ID_LEN];
    bool has_parent, parent_remote, recording;
    uint8_t kind, status, n_attrs;
    uint16_t str_used;
    uint64_t start_ns, end_ns;
    const char *name;       /* static */
    const char *status_msg; /* static, or NULL */
    struct span_attr attrs[SPAN_MAX_ATTRS];
    char str[SPAN_STR_BYTES];
};

/* ---- sampler ---- */

enum sampler_kind {
    SAMPLER_ALWAYS_ON,
    SAMPLER_ALWAYS_OFF,
    SAMPLER_RATIO,
    SAMPLER_PB_ALWAYS_ON,
    SAMPLER_PB_ALWAYS_OFF,
    SAMPLER_PB_RATIO
};

struct sampler {
    enum sampler_kind kind;
    double ratio;       /* for the ratio kinds, 0..1 */
    uint64_t threshold; /* sampled when the trace id's low 56 bits are below it */
};

/* OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG: name NULL or empty means the spec's
 * default (parentbased_always_on); arg NULL or empty means ratio 1. Returns 0, or -1
 * for an unknown name or an argument that is not a number in [0, 1]. */
int sampler_parse(const char *name, const char *arg, struct sampler *out);

/* The decision for a new span in trace_id whose parent is parent (NULL or invalid:
 * a root span). */
bool sampler_decide(const struct sampler *s, const struct trace_ctx *parent,
                    const uint8_t trace_id[TRACE_ID_LEN]);

/* ---- W3C trace context ---- */

/* Parses a traceparent value (W3C Trace Context level 1: version 00 exactly 55
 * characters; a later version may be longer, with '-' after the flags; version ff,
 * upper-case hex and all-zero ids are invalid). Returns 0 with out->valid and
 * out->remote set, or -1. */
int traceparent_parse(const char *s, size_t n, struct trace_ctx *out);

/* Writes "00-<trace>-<span>-<flags>" and a NUL into out (>= 56 bytes). */
void traceparent_format(const struct trace_ctx *c, char *out);

/* The guide's message fields: trace_id (32 hex) and span_id (16 hex), lower or upper
 * case. Taken as a sampled remote parent. Returns 0 or -1. */
int trace_ids_parse(const char *trace_hex, size_t tn, const char *span_hex, size_t sn,
                    struct trace_ctx *out);

/* Lower-case hex of n bytes, NUL-terminated (out >= 2n+1). */
void trace_hex(const uint8_t *b, size_t n, char *out);

/* ---- spans ---- */

extern bool trace_enabled;
extern struct sampler trace_sampler;
extern _Thread_local const struct trace_ctx *trace_active;
extern _Thread_local const struct trace_ctx *trace_out;

static inline bool trace_on(void)
{
    return __builtin_expect(trace_enabled, 0);
}

/* Starts a span under parent (or, when parent is NULL, under trace_active). Returns
 * true when it is sampled and recording; false otherwise, with s->ctx still carrying
 * the (unsampled) decision for children. */
bool span_start(struct span *s, const char *name, enum span_kind kind,
                const struct trace_ctx *parent);
/* The same with a start time already read (a child starting with its parent:
 * clock reads are a good part of a sampled span's cost). */
bool span_start_at(struct span *s, const char *name, enum span_kind kind,
                   const struct trace_ctx *parent, uint64_t start_ns);
void span_attr_str(struct span *s, const char *key, const char *v, size_t n);
void span_attr_cstr(struct span *s, const char *key, const char *v); /* NULL: skipped */
void span_attr_int(struct span *s, const char *key, int64_t v);
void span_attr_bool(struct span *s, const char *key, bool v);
void span_set_status(struct span *s, enum span_status st, const char *msg);
/* Ends a recording span and hands it to the exporter (dropped and counted when the
 * queue is full). No-op for a span that is not recording. */
void span_end(struct span *s);
/* Ends inner, then outer, at one instant (nested spans that finish together). */
void span_end_pair(struct span *inner, struct span *outer);

/* Makes s the active span of this thread; returns the one it replaces, to hand back
 * to span_deactivate. */
static inline const struct trace_ctx *span_activate(const struct span *s)
{
    const struct trace_ctx *prev = trace_active;
    trace_active = &s->ctx;
    return prev;
}
static inline void span_deactivate(const struct trace_ctx *prev)
{
    trace_active = prev;
}

/* Random ids from this thread's generator (seeded from getrandom on first use). */
void trace_random_bytes(uint8_t *out, size_t n);
uint64_t trace_random64(void);

/* Wall clock, nanoseconds since the epoch. */
uint64_t trace_now_ns(void);

#endif
