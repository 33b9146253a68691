/* HTTP/1.1 server connections: request heads and bodies gathered within limits,
 * routed to handlers, answered, kept alive or closed. A handler may also take the
 * connection over (the WebSocket upgrade) by migrating it to another protocol.
 *
 * Timers: from accept until the first request is complete, the handshake timeout
 * (slow or silent clients cannot hold sockets); between keep-alive requests, the idle
 * timeout; once a new request starts, the handshake timeout again. A request cut off
 * by its timeout gets 408; an idle connection is simply closed. Under TLS the first
 * handshake timeout also covers the TLS handshake: a client that has not finished it
 * in time is dropped without an answer (it has no channel to receive one).
 *
 * A handler that can only answer later (it waits on Redis, say) defers the request
 * (http_defer below) and answers through the handle from the same loop thread.
 *
 * Ownership: struct http_server (routes, limits) is shared read-only by all workers
 * and outlives every connection. Request data handed to a handler (ctx->req and what
 * it points to, body, rest, trace_id) is valid only during the call: it lies in the
 * loop's shared read buffer or the connection's gathering buffer, both reused as
 * soon as the handler returns. A deferring handler copies what it needs. */
#ifndef WSHUB_HTTP_SERVER_H
#define WSHUB_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"
#include "net/conn.h"
#include "net/tls.h"

struct http_conn;

struct http_ctx {
    struct http_conn *hc;
    struct conn *conn; /* the transport, for handlers that take it over */
    const struct http_request *req;
    const uint8_t *body;
    size_t body_len;
    uint8_t *rest; /* bytes received after this request (a client may send frames
                      right behind its upgrade request) */
    size_t rest_len;
    uint64_t start_ms;
    bool responded;       /* answered, upgraded or deferred: the server adds no 500 */
    bool head;            /* HEAD request: send headers only */
    int status;           /* the status answered, once responded (0 when deferred) */
    const char *trace_id; /* hex, set by a traced handler: logged on the access line
                             (copied by http_defer, so set it before deferring) */
};

typedef void (*http_handler_fn)(struct http_ctx *ctx, void *ud);

struct http_route {
    const char *method; /* "GET", ...; NULL matches any method, but not on a path
                         * an earlier route has (for another method) */
    const char *path;   /* exact path, or a prefix when it ends with '*' */
    http_handler_fn fn;
    void *ud;
};

struct http_server {
    const struct http_route *routes;
    size_t n_routes;
    struct http_limits limits;
    uint32_t max_body;
    uint32_t handshake_timeout_ms;
    uint32_t idle_timeout_ms;
    bool shutting_down;     /* set per worker copy; answers close connections */
    struct tls_server *tls; /* every connection starts with a TLS handshake, or NULL */
    bool read_first;        /* the listeners defer accept (TCP_DEFER_ACCEPT): read a
                               plaintext connection's request before registering it */
};

/* Takes ownership of fd and starts serving HTTP on it. Returns 0 or -errno (fd is
 * closed on failure). */
int http_conn_start(struct http_server *srv, struct loop *loop, int fd, struct conn_list *list);

/* Sends a complete response. extra_headers: CRLF-terminated lines, or NULL. */
void http_respond(struct http_ctx *ctx, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len);

/* A JSON error body {"error":{"code":..,"message":..}} with the given status. */
void http_respond_error(struct http_ctx *ctx, int status, const char *code, const char *message,
                        const char *extra_headers);

/* ---- deferred answers ----
 *
 * http_defer keeps the request open after the handler returns: the handler must not
 * respond itself (http_respond on ctx is then a no-op); the answer comes later through
 * the handle, on the same loop thread. While a request is deferred:
 *  - the connection parses nothing more: a pipelined request is kept and served
 *    after the answer, in order; reading goes on so that a peer that closes is
 *    noticed, until a request's worth (head and body limits) is held, then pauses
 *    (the timeout then bounds a peer gone unnoticed);
 *  - the handshake and idle timers do not cut it, but a request not answered within
 *    timeout_ms gets 504 {"error":{"code":"timeout",...}}, so nothing waits for ever;
 *  - if the peer closes (a half-close counts, as for any request), the connection
 *    is torn down and the handle stays valid (the answer is dropped) until the
 *    owner answers;
 *  - graceful shutdown (http_conn_shutdown) waits for the answer or the timeout, then
 *    closes (the worker's --shutdown-timeout still cuts everything).
 * The answer behaves as a synchronous one: the same keep-alive decision, HEAD without
 * body, status counts, and the access line with the real status, the duration since
 * the request began and the trace id. A peer that closed first is logged as 499.
 *
 * The handle copies what it needs (method, path, version, peer, trace id); it holds
 * nothing of the request's data. It is freed by http_deferred_respond or
 * http_deferred_respond_error: the owner calls exactly one of them exactly once, even
 * after a timeout or a close (then it is only freed). Neither calls a handler: input
 * that waited behind the answer is served at the end of the loop turn. The answer's
 * body and headers are copied. A handler may also answer through the handle before
 * it returns (the answer is known at once after all).
 *
 * http_defer returns NULL (the handler then just returns) when the connection is
 * already closed or out of memory; in the latter case it has answered 500 itself.
 * Call it at most once per request, before any answer. */
struct http_deferred;

struct http_deferred *http_defer(struct http_ctx *ctx, uint32_t timeout_ms);
void http_deferred_respond(struct http_deferred *d, int status, const char *content_type,
                           const char *extra_headers, const void *body, size_t len);
void http_deferred_respond_error(struct http_deferred *d, int status, const char *code,
                                 const char *message, const char *extra_headers);
/* True once the client can no longer get the answer (closed, timed out): the owner
 * may skip building it. */
bool http_deferred_gone(const struct http_deferred *d);
/* What the client got without the owner: 504 (timed out), 499 (it closed first), or
 * 0 (nothing yet): for the owner's span or log of the request. */
int http_deferred_status(const struct http_deferred *d);

/* Standard reason phrase for a status. */
const char *http_status_text(int status);

/* Ends every idle keep-alive connection of a worker and marks the rest to close
 * after their current response (graceful shutdown). */
void http_conn_shutdown(struct conn *c);

/* True when c is an HTTP connection (not yet upgraded). */
bool http_conn_is(const struct conn *c);

/* Called by a handler that took the connection over (after conn_migrate), so the
 * HTTP layer logs the request and stops touching the old connection. */
void http_conn_upgraded(struct http_ctx *ctx, int status);

#endif
