/* The cluster relay's state and the helpers its two halves share; private to
 * src/hub/relay.c (watched streams: subscribe, anchor, deliver; start, stop, stats)
 * and src/hub/relay_publish.c (publishes to Redis, reads of what a mirror lacks).
 *
 * Ownership: the hub owns its relay (h->relay, relay_start/relay_stop). `streams` is
 * touched on the cluster thread only; the counters are atomics read by any thread. */
#ifndef WSHUB_HUB_RELAY_H
#define WSHUB_HUB_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hub/internal.h"
#include "telemetry/trace.h"

#define MAX_SCRIPTS 24

struct node;
struct rstate;

struct relay {
    struct hub *h;
    const char *scripts[MAX_SCRIPTS + 1];
    struct node *node;
    struct rstate *streams; /* cluster thread only */
    atomic_uint_fast64_t published, received, unavailable, resets, catchups, fetches;
    atomic_uint_fast64_t inflight; /* publishes handed to Redis, not answered yet */
};

/* A server frame's header: 2, 4 or 10 bytes by its payload length (never masked). */
static inline size_t frame_header_len(const struct wh_msg *f)
{
    uint8_t l = f->len >= 2 ? f->data[1] & 0x7f : 0;
    return l == 126 ? 4 : l == 127 ? 10 : 2;
}

/* The trace context a message carries: the hub writes the ids of its websocket.send
 * span as the last members of the JSON (`,"trace_id":"<32>","span_id":"<16>"}`), so
 * a trace crosses nodes inside the message itself. */
static inline bool text_parent(const char *t, size_t len, struct trace_ctx *out)
{
    static const char key[] = ",\"trace_id\":\"";
    if (len < 76 || memcmp(t + len - 76, key, sizeof key - 1)) return false;
    return trace_ids_parse(t + len - 76 + 13, 32, t + len - 76 + 58, 16, out) == 0;
}

static inline size_t stream_name(enum hist_kind kind, const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s:%s", kind == HIST_ROOM ? "room" : "user", id);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

#endif
