/* WebSocket connections on top of net/conn: reader callbacks, control frames, the
 * closing handshake and the single liveness timer (see ws/conn.h for the rules). */
#include "ws/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/stats.h"
#include "ws/utf8.h"

static void ws_on_data(struct conn *c, uint8_t *data, size_t len);
static void ws_on_timer(struct conn *c);
static void ws_on_drain(struct conn *c);
static void ws_on_free(struct conn *c);
static void ws_on_blocked(struct conn *c);

#define WS_OPS                                                                                     \
    {                                                                                              \
        .on_data = ws_on_data, .on_timer = ws_on_timer, .on_drain = ws_on_drain,                   \
        .on_free = ws_on_free, .on_blocked = ws_on_blocked,                                        \
    }

void ws_endpoint_init(struct ws_endpoint *ep, const struct ws_handler *h,
                      const struct ws_options *opt, void *ud, size_t data_size)
{
    *ep = (struct ws_endpoint){.ops = WS_OPS, .h = h, .opt = opt, .ud = ud, .data_size = data_size};
}

struct ws_conn *ws_conn_alloc(const struct ws_endpoint *ep)
{
    struct ws_conn *ws = calloc(1, WS_CONN_DATA_OFFSET + ep->data_size);
    if (ws) ws->c.ops = &ep->ops;
    return ws;
}

void ws_conn_discard(struct ws_conn *ws)
{
    if (!ws) return;
    if (ws_ep(ws)->h->on_abandon) ws_ep(ws)->h->on_abandon(ws);
    free(ws);
}

void ws_conn_keep(struct ws_conn *ws)
{
    ws->c.flags |= CONN_KEEP;
}

void ws_conn_release(struct ws_conn *ws)
{
    free(ws);
}

bool ws_conn_is(const struct conn *c)
{
    return c->ops->on_data == ws_on_data;
}

struct wh_msg *ws_frame_new(enum ws_opcode op, const void *payload, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl = ws_frame_header(hdr, op, true, false, len, NULL);
    struct wh_msg *m = msg_new(hl + len);
    if (!m) return NULL;
    memcpy(m->data, hdr, hl);
    if (len) memcpy(m->data + hl, payload, len);
    return m;
}

void ws_send_frame(struct ws_conn *ws, struct wh_msg *frame)
{
    if (ws->state != WS_OPEN) {
        msg_unref(frame);
        return;
    }
    if (ws->pmd.flags & WS_DEFLATE_ON) {
        /* Fan-out hands the same frame to many connections: the twin comes from the
         * thread's cache after the first of them. */
        struct wh_msg *z = ws_deflate_frame(frame, &ws->pmd, ws_ep(ws)->opt->compression_threshold);
        if (z) {
            msg_unref(frame);
            frame = z;
            STAT_INC(ws_deflate_frames_out);
        }
    }
    STAT_INC(ws_msgs_out);
    STAT_ADD(ws_bytes_out, frame->len);
    conn_send(&ws->c, frame);
}

/* Frames up to this size are corked rather than queued as messages: the size below
 * which the connection layer would copy a frame into its staging buffer anyway. */
#define WS_CORK_MAX 1024u

int ws_send(struct ws_conn *ws, enum ws_opcode op, const void *data, size_t len)
{
    if (ws->state != WS_OPEN || conn_closed(&ws->c)) return -EPIPE;
    if (len <= WS_CORK_MAX && !(ws->pmd.flags & WS_DEFLATE_ON)) {
        /* A small uncompressed frame is built in the cork: no message to allocate,
         * queue, copy again and release (see conn_cork). */
        uint8_t hdr[WS_MAX_HEADER];
        size_t hl = ws_frame_header(hdr, op, true, false, len, NULL);
        uint8_t *p = conn_cork(&ws->c, hl + len);
        if (p) {
            memcpy(p, hdr, hl);
            if (len) memcpy(p + hl, data, len);
            STAT_INC(ws_msgs_out);
            STAT_ADD(ws_bytes_out, hl + len);
            return 0;
        }
    }
    struct wh_msg *m = ws_frame_new(op, data, len);
    if (!m) return -ENOMEM;
    ws_send_frame(ws, m);
    return 0;
}

/* Control frames bypass the open-state check: a close or pong must go out while
 * closing too. */
static void send_control(struct ws_conn *ws, enum ws_opcode op, const void *data, size_t len)
{
    struct wh_msg *m = ws_frame_new(op, data, len);
    if (m)
        conn_send(&ws->c, m);
    else
        conn_close(&ws->c);
}

static void send_close(struct ws_conn *ws, unsigned code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > WS_MAX_CONTROL - 2) rl = WS_MAX_CONTROL - 2;
        if (rl) memcpy(p + 2, reason, rl);
        n += rl;
        stat_close_code(stats_cur->ws_close_sent, code);
    }
    send_control(ws, WS_OP_CLOSE, p, n);
}

/* Widen a 32-bit loop time (ms mod 2^32) in the past by less than 2^32 ms. */
static inline uint64_t past32(uint64_t now, uint32_t t)
{
    return now - (uint32_t)((uint32_t)now - t);
}

/* Pings: the k-th goes out k ping intervals into a silence (anything received ends
 * one), so a connection that talks is not pinged and one that is silent is pinged
 * at a steady rate until the read timeout; pings (mod 256) says how many went. */
static inline bool ping_due(const struct ws_conn *ws, uint64_t now, uint64_t last_rx)
{
    uint64_t k = (now - last_rx) / ws_ep(ws)->opt->ping_interval_ms;
    return k > 0 && (uint8_t)k != ws->pings;
}

static inline uint64_t next_ping_at(uint64_t now, uint64_t last_rx, const struct ws_options *o)
{
    return last_rx + ((now - last_rx) / o->ping_interval_ms + 1) * o->ping_interval_ms;
}

/* The next moment the timer must look at this connection. */
static void schedule(struct ws_conn *ws)
{
    const struct ws_options *o = ws_ep(ws)->opt;
    uint64_t now = loop_now(conn_loop(&ws->c)), at = UINT64_MAX;
    if (ws->state == WS_CLOSE_SENT) return; /* the close timer is armed instead */
    uint64_t last_rx = past32(now, ws->last_rx32);
    uint64_t blocked = conn_blocked_since(&ws->c);
    if (o->ping_interval_ms) {
        uint64_t next_ping = ping_due(ws, now, last_rx) ? now : next_ping_at(now, last_rx, o);
        if (next_ping < at) at = next_ping;
    }
    if (o->read_timeout_ms && last_rx + o->read_timeout_ms < at) at = last_rx + o->read_timeout_ms;
    if (o->write_timeout_ms && blocked && blocked + o->write_timeout_ms < at)
        at = blocked + o->write_timeout_ms;
    uint64_t msg_start = ws->part ? ws->part->msg_start_ms : 0;
    if (o->message_timeout_ms && msg_start && msg_start + o->message_timeout_ms < at)
        at = msg_start + o->message_timeout_ms;
    if (ws->app_deadline_s && (uint64_t)ws->app_deadline_s * 1000 < at)
        at = (uint64_t)ws->app_deadline_s * 1000;
    if (at == UINT64_MAX) {
        conn_timer_cancel(&ws->c);
        return;
    }
    conn_timer_arm(&ws->c, at > now ? at - now : 0);
}

void ws_set_deadline(struct ws_conn *ws, uint64_t at_ms)
{
    uint64_t s = (at_ms + 999) / 1000;
    ws->app_deadline_s = at_ms == 0 ? 0 : s > UINT32_MAX ? UINT32_MAX : s ? (uint32_t)s : 1;
    if (ws->state == WS_OPEN && !conn_closed(&ws->c)) schedule(ws);
}

void ws_close(struct ws_conn *ws, unsigned code, const char *reason)
{
    if (ws->state != WS_OPEN || conn_closed(&ws->c)) return;
    send_close(ws, code, reason);
    ws->state = WS_CLOSE_SENT;
    ws->close_code = (uint16_t)code;
    conn_timer_arm(&ws->c, ws_ep(ws)->opt->close_timeout_ms);
}

void ws_fail(struct ws_conn *ws, unsigned code, const char *reason)
{
    if (conn_closed(&ws->c)) return;
    if (ws->state == WS_OPEN) {
        send_close(ws, code, reason);
        ws->close_code = (uint16_t)code;
    }
    ws->state = WS_DONE;
    conn_finish(&ws->c, ws_ep(ws)->opt->close_timeout_ms);
}

void ws_conn_shutdown(struct conn *c)
{
    ws_close((struct ws_conn *)c, WS_CLOSE_GOING_AWAY, "server shutting down");
}

/* A compressed message: inflated under the message limit, then checked as text. */
static int inflate_message(struct ws_conn *ws, enum ws_opcode op, uint8_t **data, size_t *len)
{
    uint8_t *out;
    size_t n;
    int rc = ws_deflate_inflate(&ws->dfl, &ws->pmd, *data, *len, ws_ep(ws)->opt->max_message_size,
                                &out, &n);
    if (rc == WS_CLOSE_TOO_BIG) {
        STAT_INC(ws_deflate_bombs);
        return rc;
    }
    if (rc == WS_CLOSE_PROTOCOL) {
        STAT_INC(ws_deflate_errors);
        return rc;
    }
    if (rc) return rc;
    if (op == WS_OP_TEXT && !ws_utf8_valid(out, n)) return WS_CLOSE_BAD_DATA;
    STAT_INC(ws_deflate_msgs_in);
    STAT_ADD(ws_deflate_bytes_in_compressed, *len);
    STAT_ADD(ws_deflate_bytes_in_inflated, n);
    *data = out;
    *len = n;
    return 0;
}

static const char *close_reason(int code);

static int rd_message(void *ud, enum ws_opcode op, bool rsv1, uint8_t *data, size_t len)
{
    struct ws_conn *ws = ud;
    /* After our close frame, data is discarded (RFC 6455 section 1.4): not even
     * inflated. */
    if (ws->state != WS_OPEN) return conn_closed(&ws->c) || ws->state == WS_DONE ? -1 : 0;
    if (rsv1) {
        int rc = inflate_message(ws, op, &data, &len);
        if (rc) {
            /* A bomb grows the thread's inflate buffer to the message limit: give it
             * back now, not at the next good compressed message. */
            ws_deflate_trim();
            STAT_INC(ws_protocol_errors);
            log_debug("websocket compressed message refused", "close_code=%d", rc);
            ws_fail(ws, (unsigned)rc,
                    rc == WS_CLOSE_PROTOCOL ? "invalid compressed data" : close_reason(rc));
            return -1;
        }
    }
    STAT_INC(ws_msgs_in);
    STAT_ADD(ws_bytes_in, len);
    ws_ep(ws)->h->on_message(ws, op, data, len);
    if (rsv1) ws_deflate_trim();
    return conn_closed(&ws->c) || ws->state == WS_DONE ? -1 : 0;
}

static int rd_control(void *ud, enum ws_opcode op, unsigned code, uint8_t *data, size_t len)
{
    struct ws_conn *ws = ud;
    switch (op) {
    case WS_OP_PING:
        STAT_INC(ws_pings_received);
        if (ws->state == WS_OPEN) {
            STAT_INC(ws_pongs_sent);
            send_control(ws, WS_OP_PONG, data, len);
            /* Every ping is answered, but a peer that sends pings without reading the
             * pongs is read no further until they drain: TCP pushes back on it and
             * the write deadline ends it, with the queue bounded meanwhile. */
            if (ws_ep(ws)->opt->max_queue_bytes &&
                conn_out_bytes(&ws->c) > ws_ep(ws)->opt->max_queue_bytes &&
                !(ws->c.flags & WS_PING_PAUSED)) {
                ws->c.flags |= WS_PING_PAUSED;
                STAT_INC(ws_ping_pauses);
                conn_pause(&ws->c);
            }
        }
        break;
    case WS_OP_PONG:
        break; /* liveness is renewed by any bytes; unsolicited pongs are fine */
    case WS_OP_CLOSE:
        stat_close_code(stats_cur->ws_close_received, code);
        if (ws->state == WS_OPEN) {
            /* Echo the peer's code (RFC 6455 section 5.5.1); an empty close gets an
             * empty one. */
            if (code == WS_CLOSE_NO_STATUS)
                send_control(ws, WS_OP_CLOSE, NULL, 0);
            else
                send_close(ws, code, NULL);
            ws->close_code = (uint16_t)code;
        }
        ws->state = WS_DONE;
        /* The server closes the TCP connection first (section 7.1.1): flush, FIN,
         * and drop after a short wait for the peer's FIN. */
        conn_finish(&ws->c, ws_ep(ws)->opt->close_timeout_ms);
        return -1;
    default:
        break;
    }
    return conn_closed(&ws->c) ? -1 : 0;
}

static const struct ws_reader_callbacks reader_cb = {
    .on_message = rd_message,
    .on_control = rd_control,
};

static const char *close_reason(int code)
{
    switch (code) {
    case WS_CLOSE_PROTOCOL:
        return "protocol error";
    case WS_CLOSE_BAD_DATA:
        return "invalid UTF-8";
    case WS_CLOSE_INTERNAL:
        return "out of memory";
    case WS_CLOSE_TRY_AGAIN:
        return "too many compressing connections";
    case WS_CLOSE_TOO_BIG:
        return "message too big";
    default:
        return "";
    }
}

static uint32_t reader_flags(const struct ws_conn *ws)
{
    return WS_READER_SERVER | ((ws->pmd.flags & WS_DEFLATE_ON) ? WS_READER_ALLOW_RSV1 : 0);
}

/* The reader for connections that are between messages. A read that ends inside a
 * frame or message moves it to the connection's own ws_partial; one that ends on a
 * message boundary leaves nothing behind (the reader frees its gather buffers when a
 * message completes). `busy` guards against a handler that would make another
 * connection parse input from inside a callback. */
static _Thread_local struct ws_reader between;
static _Thread_local bool between_busy;

static bool alloc_partial(struct ws_conn *ws)
{
    ws->part = malloc(sizeof *ws->part);
    if (!ws->part) return false;
    ws->part->msg_start_ms = 0;
    return true;
}

static void drop_partial(struct ws_conn *ws)
{
    if (!ws->part) return;
    ws_reader_free(&ws->part->r);
    free(ws->part);
    ws->part = NULL;
}

static void ws_on_data(struct conn *c, uint8_t *data, size_t len)
{
    struct ws_conn *ws = (struct ws_conn *)c;
    uint64_t now = loop_now(conn_loop(c));
    ws->last_rx32 = (uint32_t)now;
    ws->pings = 0;
    if (ws->state == WS_DONE) return;
    struct ws_reader *r;
    bool borrowed = false;
    if (ws->part) {
        r = &ws->part->r;
    } else if (!between_busy) {
        r = &between;
        ws_reader_init(r, ws_ep(ws)->opt->max_message_size, reader_flags(ws));
        between_busy = borrowed = true;
    } else if (alloc_partial(ws)) {
        r = &ws->part->r;
        ws_reader_init(r, ws_ep(ws)->opt->max_message_size, reader_flags(ws));
    } else {
        ws_fail(ws, WS_CLOSE_INTERNAL, close_reason(WS_CLOSE_INTERNAL));
        return;
    }
    int rc = ws_reader_feed(r, data, len, &reader_cb, ws);
    /* A reader that failed or stopped is closed: keep it, so that nothing after the
     * error is parsed, as long as the connection lives on. */
    bool unfinished = rc != 0 || ws_reader_busy(r);
    if (borrowed) {
        between_busy = false;
        if (!unfinished || conn_closed(c)) {
            ws_reader_free(r);
        } else if (alloc_partial(ws)) {
            ws->part->r = *r; /* takes over its gather buffers */
        } else {
            ws_reader_free(r);
            ws_fail(ws, WS_CLOSE_INTERNAL, close_reason(WS_CLOSE_INTERNAL));
            return;
        }
    } else if (!unfinished) {
        drop_partial(ws);
    }
    if (rc > 0 && !conn_closed(c)) {
        STAT_INC(ws_protocol_errors);
        log_debug("websocket protocol error", "close_code=%d", rc);
        ws_fail(ws, (unsigned)rc, close_reason(rc));
        return;
    }
    if (conn_closed(c) || ws->state != WS_OPEN) return;
    /* Start the message clock when a message is left unfinished (only a change
     * re-arms the timer, so whole messages cost one branch); the clock goes with the
     * partial state when the message completes. */
    if (ws->part && !ws->part->msg_start_ms && ws_ep(ws)->opt->message_timeout_ms) {
        ws->part->msg_start_ms = now ? now : 1;
        schedule(ws);
    }
}

static void ws_on_timer(struct conn *c)
{
    struct ws_conn *ws = (struct ws_conn *)c;
    const struct ws_options *o = ws_ep(ws)->opt;
    uint64_t now = loop_now(conn_loop(c));
    if (ws->state == WS_CLOSE_SENT) {
        STAT_INC(ws_close_timeouts);
        conn_close(c);
        return;
    }
    uint64_t blocked = conn_blocked_since(c), last_rx = past32(now, ws->last_rx32);
    if (o->write_timeout_ms && blocked && now >= blocked + o->write_timeout_ms &&
        !conn_write_progressed(c)) {
        STAT_INC(ws_write_timeouts);
        log_debug("websocket write timeout", "queued_bytes=%llu",
                  (unsigned long long)conn_out_bytes(c));
        conn_close(c);
        return;
    }
    uint64_t msg_start = ws->part ? ws->part->msg_start_ms : 0;
    if (o->message_timeout_ms && msg_start && now >= msg_start + o->message_timeout_ms) {
        STAT_INC(ws_message_timeouts);
        log_debug("websocket message timeout", "elapsed_ms=%llu",
                  (unsigned long long)(now - msg_start));
        ws_fail(ws, WS_CLOSE_POLICY, "message too slow");
        return;
    }
    if (o->read_timeout_ms && now >= last_rx + o->read_timeout_ms) {
        STAT_INC(ws_read_timeouts);
        log_debug("websocket read timeout", "idle_ms=%llu", (unsigned long long)(now - last_rx));
        ws_fail(ws, WS_CLOSE_GOING_AWAY, "read timeout");
        return;
    }
    if (ws->app_deadline_s && now >= (uint64_t)ws->app_deadline_s * 1000) {
        ws->app_deadline_s = 0;
        if (ws_ep(ws)->h->on_deadline) ws_ep(ws)->h->on_deadline(ws);
        if (ws->state != WS_OPEN || conn_closed(c)) return; /* it closed: no more timers */
    }
    if (o->ping_interval_ms && ping_due(ws, now, last_rx)) {
        STAT_INC(ws_pings_sent);
        send_control(ws, WS_OP_PING, NULL, 0);
        ws->pings = (uint8_t)((now - last_rx) / o->ping_interval_ms);
    }
    schedule(ws);
}

static void ws_on_blocked(struct conn *c)
{
    schedule((struct ws_conn *)c);
}

static void ws_on_drain(struct conn *c)
{
    struct ws_conn *ws = (struct ws_conn *)c;
    if (ws->c.flags & WS_PING_PAUSED) {
        ws->c.flags &= ~WS_PING_PAUSED;
        conn_resume(c);
    }
    if (ws_ep(ws)->h->on_drain && ws->state == WS_OPEN) ws_ep(ws)->h->on_drain(ws);
}

static void ws_on_free(struct conn *c)
{
    struct ws_conn *ws = (struct ws_conn *)c;
    if (ws_ep(ws)->h->on_close)
        ws_ep(ws)->h->on_close(ws, ws->close_code ? ws->close_code : WS_CLOSE_ABNORMAL);
    drop_partial(ws);
    ws_deflate_conn_free(&ws->dfl);
    STAT_DEC(ws_open);
    STAT_DEC(conns_open);
}

bool ws_accept(struct http_ctx *ctx, const struct ws_handshake *hs, struct ws_conn *ws,
               const char *extra_headers)
{
    const struct ws_endpoint *ep = ws_ep(ws);
    const struct ws_options *opt = ep->opt;
    /* Negotiated here so that every WebSocket endpoint gets it alike; the extension
     * line goes before the caller's extra headers. */
    struct ws_deflate_params pmd = {0};
    char ext[WS_DEFLATE_RESPONSE_MAX + 512];
    if (opt->compression && ws_deflate_negotiate(ctx->req, &pmd)) {
        size_t el = ws_deflate_response(&pmd, ext, WS_DEFLATE_RESPONSE_MAX);
        size_t xl = extra_headers ? strlen(extra_headers) : 0;
        if (el == 0 || el + xl >= sizeof ext) {
            memset(&pmd, 0, sizeof pmd); /* cannot answer it: go uncompressed */
        } else {
            memcpy(ext + el, extra_headers ? extra_headers : "", xl + 1);
            extra_headers = ext;
        }
    }
    char resp[1024];
    size_t n = ws_handshake_response(resp, sizeof resp, hs, extra_headers);
    if (n == 0) {
        ws_conn_discard(ws);
        http_respond_error(ctx, 500, "internal", "cannot set up the connection", NULL);
        return false;
    }
    struct conn *from = ctx->conn;

    ws->pmd = pmd;
    STAT_INC(ws_open); /* before migrating: on_free, which undoes it, may run from here */
    if (conn_migrate(from, &ws->c, &ep->ops) < 0) {
        static const struct ws_handler none = {0};
        static const struct ws_endpoint never_opened = {.ops = WS_OPS, .h = &none};
        if (ep->h->on_abandon) ep->h->on_abandon(ws);
        ws->c.ops = &never_opened.ops; /* its handler must not hear a close */
        http_conn_upgraded(ctx, 500);
        return false; /* conn_migrate closed it; the end of the turn frees ws */
    }
    http_conn_upgraded(ctx, 101);
    STAT_INC(ws_upgrades);
    if (pmd.flags & WS_DEFLATE_ON) STAT_INC(ws_deflate_negotiated);
    conn_send_copy(&ws->c, resp, n);
    uint64_t now = loop_now(conn_loop(&ws->c));
    ws->last_rx32 = (uint32_t)now;
    schedule(ws);
    if (ep->h->on_open) ep->h->on_open(ws);
    if (ctx->rest_len && !conn_closed(&ws->c) && ws->state == WS_OPEN)
        ws_on_data(&ws->c, ctx->rest, ctx->rest_len);
    return true;
}
