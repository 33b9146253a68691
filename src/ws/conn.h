/* Server-side WebSocket connections: the opening handshake's 101 answer, frames in
 * (through ws_reader), frames out (through the connection's corked queue), pings and
 * deadlines, and the closing handshake.
 *
 * Liveness, with one timer per connection: a ping every ping_interval; the connection
 * is dropped when nothing has been received for read_timeout (any bytes count, so a
 * pong renews it), or when queued output has made no progress for write_timeout.
 * After a close frame is sent, the peer has close_timeout to answer before the TCP
 * connection is dropped. A message (or frame) in progress must be complete within
 * message_timeout of its first byte, or the connection is failed with 1008.
 *
 * Ownership: a ws_conn is allocated by ws_conn_alloc with the endpoint's data_size
 * bytes of handler state in the same allocation (ws_conn_data: one allocation and no
 * pointer between them, which is 16 B and a cache miss less per connection), handed
 * to ws_accept, and freed by the connection layer after it closes;
 * handler->on_close is called exactly once, just before that, whatever ended the
 * connection, and may keep the memory for later (ws_conn_keep, ws_conn_release). A
 * connection that never opens gets on_abandon instead. Frames sent with ws_send_frame
 * are shared by reference.
 *
 * permessage-deflate (ws/deflate.h): ws_accept negotiates it from the request when
 * opt->compression is set; then compressed messages are inflated (under
 * max_message_size) before on_message sees them, and data frames of at least
 * compression_threshold payload bytes go out as their compressed twin, made once per
 * frame and thread, whoever sends them. */
#ifndef WSHUB_WS_CONN_H
#define WSHUB_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"
#include "net/conn.h"
#include "ws/deflate.h"
#include "ws/frame.h"
#include "ws/handshake.h"
#include "ws/reader.h"

struct ws_conn;

struct ws_options {
    uint64_t max_message_size;
    uint32_t ping_interval_ms; /* 0: no pings */
    uint32_t read_timeout_ms;  /* 0: no read deadline */
    uint32_t write_timeout_ms; /* 0: no write deadline */
    /* Most time from a message's first byte to its last (0: no limit). Bytes dribbled
     * one at a time renew the read deadline, so this is what ends a slow-frame
     * attack: it is answered 1008 and counted. */
    uint32_t message_timeout_ms;
    /* Queued bytes past which a ping pauses reading until the queue drains: pongs
     * to a flood from a peer that does not read must not pile up (0: no bound). */
    uint64_t max_queue_bytes;
    uint32_t close_timeout_ms;
    bool compression;               /* negotiate permessage-deflate when offered */
    uint32_t compression_threshold; /* smaller payloads go uncompressed */
};

struct ws_handler {
    void (*on_open)(struct ws_conn *ws); /* optional */
    /* A complete text or binary message; data valid during the call only. */
    void (*on_message)(struct ws_conn *ws, enum ws_opcode op, uint8_t *data, size_t len);
    /* The queue has drained (optional): a paused producer may resume. */
    void (*on_drain)(struct ws_conn *ws);
    /* Last call for this connection (optional). code: the close code received or
     * sent, or 1006 when the connection ended without a closing handshake. */
    void (*on_close)(struct ws_conn *ws, unsigned code);
    /* The deadline set with ws_set_deadline has come (optional). It may close. */
    void (*on_deadline)(struct ws_conn *ws);
    /* The connection will not open (ws_accept failed, or ws_conn_discard): release
     * what the handler put in its data (optional). The memory is not the handler's
     * to free. */
    void (*on_abandon)(struct ws_conn *ws);
};

enum ws_state { WS_OPEN = 0, WS_CLOSE_SENT = 1, WS_DONE = 2 };

/* The reader of a connection with a frame or message left unfinished by the last
 * read, and when that message began. Allocated only then (see ws_on_data): between
 * messages, which is where an idle connection always is, input is parsed by a
 * per-thread reader, so a connection does not carry one. */
struct ws_partial {
    struct ws_reader r;
    uint64_t msg_start_ms; /* 0 unless message_timeout_ms is set */
};

/* What every connection of one endpoint shares: the connection layer's callbacks,
 * the handler's, the options, the endpoint's own data (ud) and how many bytes of
 * handler state each connection carries after its ws_conn (data_size). A
 * connection's conn.ops points at the endpoint (ops comes first), so the whole costs
 * each connection one pointer. Set up with ws_endpoint_init; the caller keeps it
 * alive while connections live. */
struct ws_endpoint {
    struct conn_ops ops; /* first */
    const struct ws_handler *h;
    const struct ws_options *opt;
    void *ud;
    size_t data_size;
};

struct ws_conn {
    struct conn c;           /* first: conn callbacks hand back this pointer */
    struct ws_partial *part; /* NULL between messages */
    /* Loop time in ms mod 2^32 of the last bytes received (ws/conn.c widens it
     * against the loop's clock). Pings go out every ping interval of silence,
     * counted from it; `pings` is how many have (mod 256). */
    uint32_t last_rx32;
    /* The handler's deadline, whole seconds of loop time (0: none). */
    uint32_t app_deadline_s;
    uint16_t close_code;
    struct ws_deflate dfl; /* inflater slot when the client keeps context */
    uint8_t state;
    uint8_t pings;
    struct ws_deflate_params pmd; /* all zero unless permessage-deflate was agreed */
};

/* Reading paused by a ping flood, resumed on drain (a bit of c.flags). */
#define WS_PING_PAUSED CONN_PROTO_BIT0

void ws_endpoint_init(struct ws_endpoint *ep, const struct ws_handler *h,
                      const struct ws_options *opt, void *ud, size_t data_size);

static inline const struct ws_endpoint *ws_ep(const struct ws_conn *ws)
{
    return (const struct ws_endpoint *)ws->c.ops;
}

/* Where a connection's handler state starts (data_size bytes, zeroed at allocation),
 * and back. Aligned for any object of up to 8-byte alignment. */
#define WS_CONN_DATA_OFFSET ((sizeof(struct ws_conn) + 7) & ~(size_t)7)
static inline void *ws_conn_data(struct ws_conn *ws)
{
    return (char *)ws + WS_CONN_DATA_OFFSET;
}
static inline struct ws_conn *ws_conn_of_data(void *data)
{
    return (struct ws_conn *)(void *)((char *)data - WS_CONN_DATA_OFFSET);
}

/* A connection of ep before its upgrade: the ws_conn and ep->data_size bytes of
 * handler state, zeroed; NULL without memory. The caller fills in its data and passes
 * it to ws_accept, or gives it up with ws_conn_discard (on_abandon, then freed). */
struct ws_conn *ws_conn_alloc(const struct ws_endpoint *ep);
void ws_conn_discard(struct ws_conn *ws);

/* From on_close: the memory (and so the handler's data) outlives the connection until
 * ws_conn_release. Nothing but the data may be used after on_close. */
void ws_conn_keep(struct ws_conn *ws);
void ws_conn_release(struct ws_conn *ws);

/* Completes the upgrade of ctx's connection onto ws (from ws_conn_alloc): sends the
 * 101 answer for hs (with the Sec-WebSocket-Extensions line when permessage-deflate
 * is agreed, then extra_headers, CRLF-terminated, or NULL), moves the connection to
 * WebSocket, calls on_open and feeds it any bytes that followed the request. Returns
 * true when the connection opened (it may have closed since, and is then freed at the
 * end of the turn). false: it could not be set up (the connection is closed, with a
 * 500 when nothing was sent yet); on_abandon was called and the memory is freed, now
 * or at the end of the turn. */
bool ws_accept(struct http_ctx *ctx, const struct ws_handshake *hs, struct ws_conn *ws,
               const char *extra_headers);

/* A server frame (unmasked, FIN set) holding payload, with one reference. */
struct wh_msg *ws_frame_new(enum ws_opcode op, const void *payload, size_t len);

/* Sends a message as one frame: under 1 KiB and uncompressed it is written straight
 * into the connection's cork when it can be (conn_cork), else queued as a message.
 * Returns 0, -ENOMEM, or -EPIPE when closing. */
int ws_send(struct ws_conn *ws, enum ws_opcode op, const void *data, size_t len);

/* Queues a frame built by ws_frame_new, taking one reference. */
void ws_send_frame(struct ws_conn *ws, struct wh_msg *frame);

/* Arms the handler's deadline at loop time at_ms, rounded up to a whole second (0
 * cancels): on_deadline is called then, by the connection's one liveness timer (no
 * timer of its own). */
void ws_set_deadline(struct ws_conn *ws, uint64_t at_ms);

/* Starts the closing handshake (no-op unless open). */
void ws_close(struct ws_conn *ws, unsigned code, const char *reason);

/* Sends a close frame with code and drops the connection without waiting for the
 * answer: how protocol errors end a connection. */
void ws_fail(struct ws_conn *ws, unsigned code, const char *reason);

/* Graceful-shutdown hook for the worker: close with 1001. */
void ws_conn_shutdown(struct conn *c);

bool ws_conn_is(const struct conn *c);

#endif
