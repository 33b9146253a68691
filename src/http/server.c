/* HTTP/1.1 connections. The common case costs no copy: a request that arrives whole
 * in one read is parsed and handled straight from the loop's shared buffer. Only a
 * request split across reads is gathered in a per-connection buffer, bounded by the
 * head and body limits, and freed as soon as it has been handled. */
#include "http/server.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/stats.h"
#include "net/tls_io.h"

/* HC_DEFERRED: a request was handed to a handler that answers later (http_defer);
 * the conn's timer is then the deferred request's timeout. */
enum { HC_IDLE = 0, HC_READING = 1, HC_DEFERRED = 2 };

struct http_conn {
    struct conn c; /* first: conn callbacks hand back this pointer */
    struct http_server *srv;
    char *buf; /* gathered bytes of an unfinished request, or NULL */
    uint32_t len, cap;
    uint8_t state;
    bool close_after;
    bool upgraded;
    uint64_t started_ms;
    struct http_deferred *deferred; /* the request awaiting its answer, or NULL */
    struct http_deferred *resuming; /* answered; its task serves the input that waited */
};

/* What the access line needs of a deferred request, copied out of the request (which
 * does not outlive the handler's call). */
struct http_deferred {
    struct http_conn *hc; /* NULL once gone (closed, timed out); after the answer, the
                             connection the resume task serves, or NULL */
    struct loop_task resume;
    uint64_t start_ms;
    int status; /* 504 or 499 once gone without the owner's answer, else 0 */
    bool head;
    int minor_version;
    char trace_id[2 * 32 + 1];
    char peer[64];
    uint32_t method_len, path_len;
    char text[]; /* the method, then the path */
};

static void hc_on_data(struct conn *c, uint8_t *data, size_t len);
static void hc_on_timer(struct conn *c);
static void hc_on_free(struct conn *c);

static const struct conn_ops http_ops = {
    .on_data = hc_on_data,
    .on_timer = hc_on_timer,
    .on_free = hc_on_free,
};

bool http_conn_is(const struct conn *c)
{
    return c->ops == &http_ops;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int http_conn_start(struct http_server *srv, struct loop *loop, int fd, struct conn_list *list)
{
    struct http_conn *hc = calloc(1, sizeof *hc);
    if (!hc) {
        close(fd);
        return -1;
    }
    hc->srv = srv;
    /* Under TCP_DEFER_ACCEPT the request is normally already here: read it now, and an
     * upgrade registers the WebSocket connection once (conn_init_read_first). */
    bool read_first = srv->read_first && !srv->tls;
    int rc = 0;
    if (read_first)
        conn_init_read_first(&hc->c, loop, fd, &http_ops, list);
    else
        rc = conn_init(&hc->c, loop, fd, &http_ops, list);
    if (rc < 0) {
        close(fd);
        free(hc);
        return rc;
    }
    STAT_INC(conns_accepted);
    STAT_INC(conns_open);
    if (srv->tls && (rc = tls_io_start(&hc->c, srv->tls)) < 0) {
        conn_close(&hc->c);
        return rc;
    }
    hc->state = HC_READING;
    hc->started_ms = loop_now(loop);
    conn_timer_arm(&hc->c, srv->handshake_timeout_ms);
    if (read_first) conn_read_first(&hc->c);
    return 0;
}

static void deferred_abandon(struct http_deferred *d, struct http_conn *hc);

static void hc_on_free(struct conn *c)
{
    struct http_conn *hc = (struct http_conn *)c;
    if (hc->deferred) deferred_abandon(hc->deferred, hc);
    if (hc->resuming) hc->resuming->hc = NULL; /* its task then only frees it */
    free(hc->buf);
    STAT_DEC(conns_open);
}

static void log_access(int status, size_t bytes, const char *method, size_t method_len,
                       const char *path, size_t path_len, int minor, uint64_t duration_ms,
                       const char *peer, const char *trace_id)
{
    if (LOG_INFO < log_min_level) return;
    if (status == 101 && LOG_DEBUG < log_min_level)
        return; /* one line per upgrade is
                   noise at scale */
    /* The fields of chi's middleware.Logger (method, path, proto, status, bytes,
     * duration, remote), and the trace when the request was traced. */
    log_write(status == 101 ? LOG_DEBUG : LOG_INFO, "http request",
              "method=%.*s path=%.*s proto=HTTP/1.%d status=%d bytes=%zu duration_ms=%llu "
              "remote=%s%s%s",
              (int)method_len, method, (int)path_len, path, minor, status, bytes,
              (unsigned long long)duration_ms, peer, trace_id ? " trace_id=" : "",
              trace_id ? trace_id : "");
}

static void access_log(struct http_ctx *ctx, int status, size_t bytes)
{
    if (LOG_INFO < log_min_level) return;
    char peer[64];
    const struct http_request *r = ctx->req;
    log_access(status, bytes, r->method, r->method_len, r->path, r->path_len, r->minor_version,
               loop_now(conn_loop(ctx->conn)) - ctx->start_ms,
               conn_peer(ctx->conn, peer, sizeof peer), ctx->trace_id);
}

static void deferred_log(const struct http_deferred *d, const struct http_conn *hc, int status,
                         size_t bytes)
{
    log_access(status, bytes, d->text, d->method_len, d->text + d->method_len, d->path_len,
               d->minor_version, loop_now(conn_loop(&hc->c)) - d->start_ms, d->peer,
               d->trace_id[0] ? d->trace_id : NULL);
}

static void count_status(int status)
{
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) STAT_INC(http_status[cls]);
}

/* Queues a response and counts its status. Returns false when the connection had to
 * be closed instead (out of memory). */
static bool send_response(struct http_conn *hc, bool head_only, int status,
                          const char *content_type, const char *extra_headers, const void *body,
                          size_t len)
{
    if (hc->srv->shutting_down) hc->close_after = true;
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: wshub\r\nContent-Length: %zu\r\n%s%s%s%s%s\r\n",
                     status, http_status_text(status), len, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     hc->close_after ? "Connection: close\r\n" : "",
                     extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof head) n = 0;
    size_t blen = head_only ? 0 : len;
    struct wh_msg *m = msg_new((size_t)n + blen);
    if (!m) {
        conn_close(&hc->c);
        return false;
    }
    memcpy(m->data, head, (size_t)n);
    if (blen) memcpy(m->data + n, body, blen);
    conn_send(&hc->c, m);
    count_status(status);
    return true;
}

void http_respond(struct http_ctx *ctx, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len)
{
    if (ctx->responded) return;
    ctx->responded = true;
    ctx->status = status;
    if (!send_response(ctx->hc, ctx->head, status, content_type, extra_headers, body, len)) return;
    if (ctx->req) access_log(ctx, status, len);
}

/* The JSON error body; code and message are our own constant strings: no escaping
 * needed. Returns its length. */
static size_t error_body(char *out, size_t cap, const char *code, const char *message)
{
    int n = snprintf(out, cap, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n", code, message);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

void http_respond_error(struct http_ctx *ctx, int status, const char *code, const char *message,
                        const char *extra_headers)
{
    char body[512];
    size_t n = error_body(body, sizeof body, code, message);
    http_respond(ctx, status, "application/json", extra_headers, body, n);
}

void http_conn_upgraded(struct http_ctx *ctx, int status)
{
    ctx->responded = true;
    ctx->status = status;
    ctx->hc->upgraded = true;
    if (ctx->hc->resuming) { /* the old struct goes without on_free: its task must not
                                come back to it */
        ctx->hc->resuming->hc = NULL;
        ctx->hc->resuming = NULL;
    }
    count_status(status);
    access_log(ctx, status, 0);
}

/* Answers a request that could not be parsed or broke a limit, then closes: after a
 * malformed head there is no telling where the next request would start. */
static void fail(struct http_conn *hc, int status, const char *code, const char *message)
{
    struct http_ctx ctx = {.hc = hc, .conn = &hc->c, .start_ms = hc->started_ms};
    hc->close_after = true;
    STAT_INC(http_bad_requests);
    http_respond_error(&ctx, status, code, message, NULL);
    log_info("http request refused", "status=%d reason=%s", status, code);
    conn_finish(&hc->c, 2000);
}

static const struct http_route *route_find(const struct http_server *srv,
                                           const struct http_request *req, bool *path_seen)
{
    *path_seen = false;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const struct http_route *rt = &srv->routes[i];
        size_t plen = strlen(rt->path);
        bool match;
        if (plen && rt->path[plen - 1] == '*')
            match = req->path_len >= plen - 1 && memcmp(req->path, rt->path, plen - 1) == 0;
        else
            match = req->path_len == plen && memcmp(req->path, rt->path, plen) == 0;
        if (!match) continue;
        /* A catch-all (no method) does not take a path that an earlier route claimed
         * for another method: that stays a 405. */
        if (!rt->method && *path_seen) continue;
        *path_seen = true;
        if (!rt->method || (req->method_len == strlen(rt->method) &&
                            memcmp(req->method, rt->method, req->method_len) == 0))
            return rt;
        /* HEAD is served by the GET handler, without the body */
        if (req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0 && rt->method &&
            strcmp(rt->method, "GET") == 0)
            return rt;
    }
    return NULL;
}

static void dispatch(struct http_conn *hc, const struct http_request *req, const uint8_t *body,
                     size_t body_len, uint8_t *rest, size_t rest_len)
{
    struct http_ctx ctx = {
        .hc = hc,
        .conn = &hc->c,
        .req = req,
        .body = body,
        .body_len = body_len,
        .rest = rest,
        .rest_len = rest_len,
        .start_ms = hc->started_ms,
        .head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0,
    };
    STAT_INC(http_requests);
    const struct http_header *conn_hdr = http_header_find(req, "Connection");
    if (req->minor_version == 0)
        hc->close_after =
            !conn_hdr || !http_token_list_has(conn_hdr->value, conn_hdr->value_len, "keep-alive");
    else
        hc->close_after =
            conn_hdr && http_token_list_has(conn_hdr->value, conn_hdr->value_len, "close");
    bool path_seen;
    const struct http_route *rt = route_find(hc->srv, req, &path_seen);
    if (rt)
        rt->fn(&ctx, rt->ud);
    else if (path_seen)
        http_respond_error(&ctx, 405, "method_not_allowed", "method not allowed for this path",
                           NULL);
    else
        http_respond_error(&ctx, 404, "not_found", "no such endpoint", NULL);
    if (!ctx.responded && !conn_closed(&hc->c))
        http_respond_error(&ctx, 500, "internal", "handler sent no response", NULL);
}

static int parse_error_status(int rc, const char **code, const char **msg)
{
    switch (rc) {
    case HTTP_PARSE_URI_TOO_LONG:
        *code = "uri_too_long";
        *msg = "request line too long";
        return 414;
    case HTTP_PARSE_HEADERS_TOO_LARGE:
        *code = "headers_too_large";
        *msg = "request header section too large or too many fields";
        return 431;
    case HTTP_PARSE_BAD_VERSION:
        *code = "http_version";
        *msg = "only HTTP/1.0 and HTTP/1.1 are supported";
        return 505;
    default:
        *code = "bad_request";
        *msg = "malformed request";
        return 400;
    }
}

/* A request has been answered: the connection waits for the next one, or closes. */
static void request_done(struct http_conn *hc)
{
    hc->state = HC_IDLE;
    if (hc->close_after)
        conn_finish(&hc->c, 2000);
    else
        conn_timer_arm(&hc->c, hc->srv->idle_timeout_ms);
}

/* Handles every complete request in p[0..n). Returns the number of bytes consumed; the
 * caller keeps the rest for later. Returns n when the connection was closed or taken
 * over (nothing more to keep). Stops behind a deferred request: what follows it waits
 * for its answer. */
static size_t process(struct http_conn *hc, uint8_t *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        if (hc->state == HC_DEFERRED) return done;
        /* Anything after a last request is ignored; but a request already under way
         * when the shutdown began is still answered (with Connection: close). */
        if (hc->close_after && hc->state == HC_IDLE) return n;
        if (hc->state == HC_IDLE) {
            hc->state = HC_READING;
            hc->started_ms = loop_now(conn_loop(&hc->c));
            conn_timer_arm(&hc->c, hc->srv->handshake_timeout_ms);
        }
        struct http_request req;
        int rc = http_parse_request((const char *)p + done, n - done, &req, &hc->srv->limits);
        if (rc == HTTP_PARSE_INCOMPLETE) return done;
        if (rc < 0) {
            const char *code, *msg;
            int st = parse_error_status(rc, &code, &msg);
            fail(hc, st, code, msg);
            return n;
        }
        /* RFC 9112 section 3.2, on every endpoint: a 1.1 request names its host once.
         * Two Host lines could be read differently by a proxy in front and by us. */
        if (http_host_check(&req) != 0) {
            fail(hc, 400, "bad_host", "HTTP/1.1 requests need exactly one valid Host header");
            return n;
        }
        /* Bodies are taken with Content-Length only. Any Transfer-Encoding is refused
         * before routing: serving such a request as bodiless would leave its body to
         * be read as the next request (request smuggling). */
        if (http_header_find(&req, "Transfer-Encoding")) {
            if (http_header_find(&req, "Content-Length"))
                fail(hc, 400, "bad_framing", "Transfer-Encoding with Content-Length");
            else
                fail(hc, 411, "length_required", "request bodies need Content-Length");
            return n;
        }
        long long cl = http_content_length(&req);
        if (cl < 0) {
            fail(hc, 400, "bad_content_length", "malformed Content-Length");
            return n;
        }
        if ((unsigned long long)cl > hc->srv->max_body) {
            fail(hc, 413, "body_too_large", "request body over the limit");
            return n;
        }
        size_t total = (size_t)rc + (size_t)cl;
        if (n - done < total) return done;
        uint8_t *body = p + done + rc;
        dispatch(hc, &req, body, (size_t)cl, p + done + total, n - done - total);
        if (conn_closed(&hc->c)) return n;
        done += total;
        if (hc->state == HC_DEFERRED) return done;
        /* (A handler that deferred and answered at once has already done this.) */
        if (hc->state != HC_IDLE) request_done(hc);
        if (hc->close_after) return n;
    }
    return done;
}

/* Appends to the gathering buffer. Returns 0, or -1 out of memory. */
static int buf_append(struct http_conn *hc, const uint8_t *data, size_t len)
{
    if (hc->len + len > hc->cap) {
        size_t cap = hc->cap ? hc->cap : 1024;
        while (cap < hc->len + len)
            cap *= 2;
        char *nb = realloc(hc->buf, cap);
        if (!nb) return -1;
        hc->buf = nb;
        hc->cap = (uint32_t)cap;
    }
    memcpy(hc->buf + hc->len, data, len);
    hc->len += (uint32_t)len;
    return 0;
}

/* Drops the first `used` bytes of the gathering buffer; an empty one is freed so that
 * an idle keep-alive connection holds no heap. */
static void buf_consume(struct http_conn *hc, size_t used)
{
    if (used == hc->len) {
        free(hc->buf);
        hc->buf = NULL;
        hc->len = hc->cap = 0;
    } else if (used > 0) {
        memmove(hc->buf, hc->buf + used, hc->len - used);
        hc->len -= (uint32_t)used;
    }
}

static size_t input_limit(const struct http_conn *hc)
{
    return hc->srv->limits.max_head_bytes + hc->srv->max_body;
}

/* Keeps bytes that arrive behind a deferred request. Reading goes on (so that a
 * peer's close is seen) until a request's worth is held, then pauses: the answer
 * resumes it. */
static void stash(struct http_conn *hc, const uint8_t *data, size_t len)
{
    if (len && buf_append(hc, data, len) < 0) {
        conn_close(&hc->c);
        return;
    }
    if (hc->len >= input_limit(hc)) conn_pause(&hc->c);
}

/* Serves the input that waited behind a deferred request, and reads again. */
static void serve_waiting(struct http_conn *hc)
{
    if (hc->len) {
        size_t used = process(hc, (uint8_t *)hc->buf, hc->len);
        if (hc->upgraded || conn_closed(&hc->c)) {
            free(hc->buf);
            hc->buf = NULL;
            hc->len = hc->cap = 0;
            return;
        }
        buf_consume(hc, used);
    }
    if (hc->state != HC_DEFERRED) conn_resume(&hc->c);
}

static void hc_on_data(struct conn *c, uint8_t *data, size_t len)
{
    struct http_conn *hc = (struct http_conn *)c;
    if (hc->state == HC_DEFERRED) {
        stash(hc, data, len);
        return;
    }
    bool fresh = hc->len == 0;
    if (fresh) {
        size_t used = process(hc, data, len);
        if (conn_closed(c) || used == len) {
            if (hc->upgraded) {
                free(hc->buf);
                hc->buf = NULL;
            }
            return;
        }
        data += used;
        len -= used;
        if (hc->state == HC_DEFERRED) {
            stash(hc, data, len);
            return;
        }
    }
    if ((size_t)hc->len + len > input_limit(hc) + 4096) {
        fail(hc, 431, "request_too_large", "request too large");
        return;
    }
    if (buf_append(hc, data, len) < 0) {
        conn_close(c);
        return;
    }
    if (fresh) return; /* process() has just seen these bytes: still incomplete */
    size_t used = process(hc, (uint8_t *)hc->buf, hc->len);
    if (hc->upgraded || conn_closed(c)) {
        free(hc->buf);
        hc->buf = NULL;
        hc->len = hc->cap = 0;
        return;
    }
    buf_consume(hc, used);
}

static void deferred_timeout(struct http_conn *hc);

static void hc_on_timer(struct conn *c)
{
    struct http_conn *hc = (struct http_conn *)c;
    if (hc->state == HC_DEFERRED) {
        deferred_timeout(hc);
    } else if (hc->state == HC_READING) {
        STAT_INC(handshake_timeouts);
        fail(hc, 408, "request_timeout", "request not received in time");
    } else {
        conn_close(c);
    }
}

void http_conn_shutdown(struct conn *c)
{
    struct http_conn *hc = (struct http_conn *)c;
    hc->srv->shutting_down = true;
    /* A connection that holds no byte of a request since its last answer (or at all: a
     * browser's preconnect, a TLS handshake not finished) has asked for nothing, and is
     * closed as an idle one is. Waiting for its request would hold the shutdown until
     * --shutdown-timeout. The client cannot tell this close from a keep-alive timeout,
     * and retries elsewhere. */
    bool asked = hc->state == HC_DEFERRED || (hc->state == HC_READING && hc->len > 0);
    if (!asked && !conn_out_count(c))
        conn_close(c);
    else if (!asked)
        conn_finish(c, 1000); /* deliver the last response, then close */
    else
        hc->close_after = true; /* answer the request under way (a deferred one: its
                                   answer or timeout), then close */
}

/* ---- deferred answers ---- */

struct http_deferred *http_defer(struct http_ctx *ctx, uint32_t timeout_ms)
{
    struct http_conn *hc = ctx->hc;
    const struct http_request *r = ctx->req;
    if (ctx->responded || !r || hc->deferred || conn_closed(&hc->c)) return NULL;
    struct http_deferred *d = malloc(sizeof *d + r->method_len + r->path_len);
    if (!d) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return NULL;
    }
    d->hc = hc;
    d->start_ms = ctx->start_ms;
    d->status = 0;
    d->head = ctx->head;
    d->minor_version = r->minor_version;
    snprintf(d->trace_id, sizeof d->trace_id, "%s", ctx->trace_id ? ctx->trace_id : "");
    conn_peer(&hc->c, d->peer, sizeof d->peer);
    d->method_len = (uint32_t)r->method_len;
    d->path_len = (uint32_t)r->path_len;
    memcpy(d->text, r->method, r->method_len);
    memcpy(d->text + r->method_len, r->path, r->path_len);
    ctx->responded = true; /* the server adds no 500, and http_respond is a no-op */
    hc->deferred = d;
    hc->state = HC_DEFERRED;
    conn_timer_arm(&hc->c, timeout_ms); /* replaces the handshake timer */
    STAT_INC(http_deferred);
    return d;
}

bool http_deferred_gone(const struct http_deferred *d)
{
    return !d->hc || conn_closed(&d->hc->c);
}

int http_deferred_status(const struct http_deferred *d)
{
    /* A close this turn is seen before on_free has marked the handle. */
    return d->status ? d->status : d->hc && conn_closed(&d->hc->c) ? 499 : 0;
}

/* Sends the answer of hc's deferred request d (already detached from hc) and moves
 * on as after a synchronous answer. */
static void deferred_send(struct http_deferred *d, struct http_conn *hc, int status,
                          const char *content_type, const char *extra_headers, const void *body,
                          size_t len)
{
    if (!send_response(hc, d->head, status, content_type, extra_headers, body, len)) return;
    deferred_log(d, hc, status, len);
    request_done(hc);
}

/* The peer left before the answer (hc is closing): logged with nginx's 499 "client
 * closed request"; nothing is sent, so no status class is counted. */
static void deferred_abandon(struct http_deferred *d, struct http_conn *hc)
{
    hc->deferred = NULL;
    d->hc = NULL;
    d->status = 499;
    deferred_log(d, hc, 499, 0);
}

static void deferred_timeout(struct http_conn *hc)
{
    struct http_deferred *d = hc->deferred;
    hc->deferred = NULL;
    d->hc = NULL; /* the owner's answer will only free it */
    d->status = 504;
    STAT_INC(http_deferred_timeouts);
    char body[128];
    size_t n = error_body(body, sizeof body, "timeout", "no answer in time");
    deferred_send(d, hc, 504, "application/json", NULL, body, n);
    /* A timer callback, not the owner's call: the input can be served now. */
    if (!(hc->c.flags & (CONN_CLOSED | CONN_FINISHING))) serve_waiting(hc);
}

static void resume_task(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct http_deferred *d =
        (struct http_deferred *)((char *)t - offsetof(struct http_deferred, resume));
    struct http_conn *hc = d->hc;
    free(d);
    if (!hc) return; /* freed meanwhile */
    hc->resuming = NULL;
    if (!conn_closed(&hc->c) && hc->state != HC_DEFERRED) serve_waiting(hc);
}

void http_deferred_respond(struct http_deferred *d, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t len)
{
    struct http_conn *hc = d->hc;
    if (hc && conn_closed(&hc->c)) {
        deferred_abandon(d, hc); /* closed this turn: on_free has not run yet */
    } else if (hc) {
        hc->deferred = NULL;
        d->hc = NULL;
        deferred_send(d, hc, status, content_type, extra_headers, body, len);
        /* Input that waited (or reading paused) is served at the end of the turn, not
         * here: the owner's call must not run another handler. While the handler that
         * deferred is still on the stack (an answer given at once), process() goes on
         * by itself and the task finds nothing left to do. */
        if (!hc->resuming && !(hc->c.flags & (CONN_CLOSED | CONN_FINISHING)) &&
            (hc->len || (hc->c.flags & CONN_PAUSED))) {
            d->hc = hc;
            hc->resuming = d;
            loop_task_init(&d->resume, resume_task);
            loop_defer(conn_loop(&hc->c), &d->resume);
            return; /* the task frees d */
        }
    }
    free(d);
}

void http_deferred_respond_error(struct http_deferred *d, int status, const char *code,
                                 const char *message, const char *extra_headers)
{
    char body[512];
    size_t n = error_body(body, sizeof body, code, message);
    http_deferred_respond(d, status, "application/json", extra_headers, body, n);
}
