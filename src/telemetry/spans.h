/* The guide's spans, at wshub's call sites: small inline entry points that cost one
 * predictable branch when tracing is off (trace_on), and out-of-line bodies for
 * when it is on.
 *
 *   websocket.upgrade    SERVER    GET /ws, continues a traceparent header
 *   websocket.receive    CONSUMER  one per message read from a client; its parent
 *                                  is the message's traceparent (or the guide's
 *                                  trace_id/span_id), else the connection's upgrade
 *     hub.process_message  INTERNAL  the hub carrying the message out
 *       hub.broadcast      INTERNAL  a publish to a room, a user or everyone, with
 *                                    recipients.count (one span however many)
 *         websocket.send   PRODUCER  the one frame built for it; its ids are
 *                                    written into the frame (trace_out)
 *       websocket.send     PRODUCER  a reply to the sender (ack, error, answer)
 *       hub.recover        INTERNAL  a recovery (join_room with since): position
 *                                    asked, recovered or not, messages to replay
 *   hub.recover          INTERNAL  the same for the user stream at the open (?since=),
 *                                  under the connection's upgrade
 *
 * Ownership: the structs live on the caller's stack between begin and end. */
#ifndef WSHUB_TELEMETRY_SPANS_H
#define WSHUB_TELEMETRY_SPANS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"
#include "telemetry/trace.h"

/* ---- upgrade ---- */
struct upgrade_trace {
    struct span span;
    bool on;
    char trace_hex[2 * TRACE_ID_LEN + 1]; /* for the access log; "" when unsampled */
};
bool upgrade_trace_begin_slow(struct upgrade_trace *t, const struct http_request *req,
                              const char *peer);
/* The accepted client's user and id, as attributes. */
void upgrade_trace_client(struct upgrade_trace *t, const char *user, const char *client_id);
void upgrade_trace_end_slow(struct upgrade_trace *t, int status);
static inline bool upgrade_trace_begin(struct upgrade_trace *t, const struct http_request *req,
                                       const char *peer)
{
    t->on = false;
    t->trace_hex[0] = 0;
    return trace_on() && upgrade_trace_begin_slow(t, req, peer);
}

/* ---- one received message ---- */
struct msg_trace {
    struct span rx, proc;
    const struct trace_ctx *prev;
    struct msg_trace *prev_mt;
    bool on;
};
bool msg_trace_begin_slow(struct msg_trace *t, const struct trace_ctx *conn, json_t *root,
                          const char *type, const char *client_id, const char *user, size_t len);
void msg_trace_end_slow(struct msg_trace *t);
static inline bool msg_trace_begin(struct msg_trace *t, const struct trace_ctx *conn, json_t *root,
                                   const char *type, const char *client_id, const char *user,
                                   size_t len)
{
    t->on = false;
    return trace_on() && conn->valid &&
           msg_trace_begin_slow(t, conn, root, type, client_id, user, len);
}
static inline void msg_trace_end(struct msg_trace *t)
{
    if (t->on) msg_trace_end_slow(t);
}
/* Marks the message being processed on this thread as failed with an error code. */
void msg_trace_error_slow(const char *code);
static inline void msg_trace_error(const char *code)
{
    if (trace_on()) msg_trace_error_slow(code);
}

/* ---- a publish (hub.broadcast + websocket.send) ---- */
struct pub_trace {
    struct span bc, send;
    const struct trace_ctx *prev_active, *prev_out;
    bool on;
};
bool pub_trace_begin_slow(struct pub_trace *t, const char *type, const char *dest_kind,
                          const char *dest);
void pub_trace_end_slow(struct pub_trace *t, int64_t recipients);
/* True when the publish is sampled: the caller then counts its recipients. */
static inline bool pub_trace_begin(struct pub_trace *t, const char *type, const char *dest_kind,
                                   const char *dest)
{
    t->on = false;
    return trace_on() && pub_trace_begin_slow(t, type, dest_kind, dest);
}
static inline void pub_trace_end(struct pub_trace *t, int64_t recipients)
{
    if (t->on) pub_trace_end_slow(t, recipients);
}

/* ---- a reply to the sender (websocket.send under the active message) ---- */
struct send_trace {
    struct span send;
    const struct trace_ctx *prev_out;
    bool on;
};
bool send_trace_begin_slow(struct send_trace *t, const char *type);
void send_trace_end_slow(struct send_trace *t);
static inline void send_trace_begin(struct send_trace *t, const char *type)
{
    t->on = trace_on() && trace_active && send_trace_begin_slow(t, type);
}
static inline void send_trace_end(struct send_trace *t)
{
    if (t->on) send_trace_end_slow(t);
}

/* ---- a recovery (hub.recover) ---- */
struct recover_trace {
    struct span span;
    bool on;
};
bool recover_trace_begin_slow(struct recover_trace *t, const struct trace_ctx *parent,
                              const char *dest_kind, const char *dest, uint64_t since);
void recover_trace_end_slow(struct recover_trace *t, bool recovered, uint64_t replayed);
/* parent: the connection's upgrade context for the user stream, NULL for a join (the
 * message being processed). */
static inline void recover_trace_begin(struct recover_trace *t, const struct trace_ctx *parent,
                                       const char *dest_kind, const char *dest, uint64_t since)
{
    t->on = trace_on() && recover_trace_begin_slow(t, parent, dest_kind, dest, since);
}
static inline void recover_trace_end(struct recover_trace *t, bool recovered, uint64_t replayed)
{
    if (t->on) recover_trace_end_slow(t, recovered, replayed);
}

/* The sampled trace id active on this thread as hex (for log lines), or NULL. */
const char *trace_log_id(char *buf33);

#endif
