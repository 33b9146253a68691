/* The echo endpoint (see echo.h). */
#include "app/echo.h"

#include <errno.h>

#include "app/routes.h"
#include "ws/conn.h"

static void echo_message(struct ws_conn *ws, enum ws_opcode op, uint8_t *data, size_t len)
{
    const struct routes_ctx *r = ws_ep(ws)->ud;
    if (ws_send(ws, op, data, len) == -ENOMEM) {
        ws_fail(ws, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    if (conn_out_count(&ws->c) > r->cfg->send_queue_msgs ||
        conn_out_bytes(&ws->c) > r->cfg->send_queue_bytes)
        conn_pause(&ws->c);
}

static void echo_drain(struct ws_conn *ws)
{
    conn_resume(&ws->c);
}

const struct ws_handler echo_ws_handler = {
    .on_message = echo_message,
    .on_drain = echo_drain,
};

void echo_route(struct http_ctx *ctx, void *ud)
{
    struct routes_ctx *r = ud;
    struct ws_handshake hs;
    if (routes_upgrade_check(ctx, &hs, NULL, r->origins) != 0) return;
    struct ws_conn *ws = ws_conn_alloc(&r->echo_ep);
    if (!ws) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    ws_accept(ctx, &hs, ws, NULL);
}
