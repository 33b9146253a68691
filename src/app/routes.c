/* Route table and the small handlers that need no module of their own. */
#include "app/routes.h"

#include <stdio.h>
#include <string.h>

#include "app/echo.h"
#include "auth/origin.h"
#include "base/stats.h"

int routes_upgrade_check(struct http_ctx *ctx, struct ws_handshake *hs,
                         const char *const *subprotocols)
{
    int st = ws_handshake_check(ctx->req, subprotocols, hs);
    if (st != 0) {
        const char *extra = NULL;
        if (st == 426) extra = "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n";
        STAT_INC(handshake_failures);
        http_respond_error(ctx, st, "bad_handshake", hs->reason, extra);
        return -1;
    }
    if (!origin_allowed(ctx->req, NULL)) {
        STAT_INC(handshake_failures);
        http_respond_error(ctx, 403, "origin_not_allowed", "Origin not allowed", NULL);
        return -1;
    }
    return 0;
}

static void healthz(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    static const char body[] = "{\"status\":\"ok\"}\n";
    http_respond(ctx, 200, "application/json", NULL, body, sizeof body - 1);
}

static void index_page(struct http_ctx *ctx, void *ud)
{
    const struct routes_ctx *r = ud;
    char body[512];
    int n = snprintf(body, sizeof body,
                     "wshub %s: real-time WebSocket messaging server.\n"
                     "Endpoints: %s/healthz\n",
                     WSHUB_VERSION, r->cfg->echo ? "ws /echo (echo), " : "");
    http_respond(ctx, 200, "text/plain; charset=utf-8", NULL, body,
                 n > 0 && (size_t)n < sizeof body ? (size_t)n : 0);
}

static void add(struct routes_ctx *r, const char *method, const char *path, http_handler_fn fn)
{
    if (r->n < ROUTES_MAX)
        r->routes[r->n++] = (struct http_route){.method = method, .path = path, .fn = fn, .ud = r};
}

void routes_init(struct routes_ctx *r, const struct wh_config *cfg, const struct ws_options *wsopt)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->wsopt = wsopt;
    if (cfg->echo) add(r, "GET", "/echo", echo_route);
    add(r, "GET", "/healthz", healthz);
    add(r, "GET", "/", index_page);
}
