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
 * Ownership: struct http_server (routes, limits) is shared read-only by all workers
 * and outlives every connection. Request data handed to a handler is valid only
 * during the call. */
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
    bool responded;
    bool head;            /* HEAD request: send headers only */
    int status;           /* the status answered, once responded */
    const char *trace_id; /* hex, set by a traced handler: logged on the access line */
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
