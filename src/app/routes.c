/* Route table and the small handlers that need no module of their own. */
#include "app/routes.h"

#include <stdio.h>
#include <string.h>

#include <time.h>

#include "app/echo.h"
#include "history/history.h"
#include "auth/origin.h"
#include "base/log.h"
#include "base/stats.h"
#include "telemetry/spans.h"

int routes_upgrade_check(struct http_ctx *ctx, struct ws_handshake *hs,
                         const char *const *subprotocols, const char *const *origins)
{
    int st = ws_handshake_check(ctx->req, subprotocols, hs);
    if (st != 0) {
        const char *extra = NULL;
        if (st == 426) extra = "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n";
        STAT_HANDSHAKE_FAILED(st == 426 ? HSR_VERSION : st == 500 ? HSR_INTERNAL : HSR_BAD_REQUEST);
        http_respond_error(ctx, st, "bad_handshake", hs->reason, extra);
        return -1;
    }
    if (!origin_allowed(ctx->req, origins, conn_tls(ctx->conn) != NULL)) {
        STAT_HANDSHAKE_FAILED(HSR_ORIGIN);
        http_respond_error(ctx, 403, "origin_not_allowed", "Origin not allowed", NULL);
        return -1;
    }
    return 0;
}

static const char *const ws_subprotocols[] = {"wshub", NULL};

/* A position: 1-20 decimal digits fitting 64 bits. */
static int parse_seq(const char *s, int len, uint64_t *out)
{
    if (len < 1 || len > 20) return -1;
    uint64_t v = 0;
    for (int i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* GET /ws: the hub's endpoint. Order of checks: handshake and Origin (400/403/426),
 * connection limits (503/429), token (401); then the connection is upgraded. Returns
 * the client when it was accepted. */
static bool ws_upgrade(struct http_ctx *ctx, struct routes_ctx *r, const char *ip,
                       struct upgrade_trace *ut)
{
    struct ws_handshake hs;
    if (routes_upgrade_check(ctx, &hs, ws_subprotocols, r->origins) != 0) return false;
    int st = hub_admit(r->hub, ip);
    if (st) {
        STAT_HANDSHAKE_FAILED(st == 503 ? HSR_SERVER_FULL : HSR_IP_LIMIT);
        http_respond_error(ctx, st, st == 503 ? "server_full" : "too_many_connections",
                           st == 503 ? "the server is at its connection limit"
                                     : "too many connections from this address",
                           "Retry-After: 5\r\n");
        return false;
    }
    static _Thread_local char qbuf[AUTH_MAX_TOKEN + 1];
    const char *tok = NULL;
    size_t tok_len = 0;
    int proto_index = -1;
    struct auth_identity id;
    memset(&id, 0, sizeof id);
    enum auth_error ae = AUTH_MISSING;
    if (auth_token_find_for(r->auth, ctx->req, qbuf, &tok, &tok_len, &proto_index) == 0)
        ae = auth_verify(r->auth, tok, tok_len, (int64_t)time(NULL), &id);
    if (ae != AUTH_OK) {
        hub_release(r->hub, ip);
        auth_identity_free(&id);
        STAT_HANDSHAKE_FAILED(HSR_UNAUTHORIZED);
        log_info("upgrade refused", "reason=%s remote=%s%s%s", auth_error_code(ae), ip,
                 ctx->trace_id ? " trace_id=" : "", ctx->trace_id ? ctx->trace_id : "");
        http_respond_error(ctx, 401, auth_error_code(ae), auth_error_text(ae),
                           "WWW-Authenticate: Bearer\r\n");
        return false;
    }
    /* A browser that offered subprotocols fails the connection unless one is chosen:
     * when the token rode in one and "wshub" was not offered, answer with that one. */
    char proto[AUTH_MAX_TOKEN + 8];
    if (!hs.subprotocol && proto_index >= 0 && tok_len + 8 < sizeof proto) {
        snprintf(proto, sizeof proto, "bearer.%.*s", (int)tok_len, tok);
        hs.subprotocol = proto;
    }
    /* ?since=N[&epoch=E]: the client wants its user stream's position (and what it
     * missed since N in epoch E); checked before anything is allocated for it. */
    char since_s[24], epoch_s[HIST_EPOCH_LEN + 2];
    int since_len =
        http_query_param(ctx->req->query, ctx->req->query_len, "since", since_s, sizeof since_s);
    int epoch_len =
        http_query_param(ctx->req->query, ctx->req->query_len, "epoch", epoch_s, sizeof epoch_s);
    uint64_t since = 0;
    if (since_len != -1 && (parse_seq(since_s, since_len, &since) < 0 || epoch_len < -1)) {
        hub_release(r->hub, ip);
        auth_identity_free(&id);
        STAT_HANDSHAKE_FAILED(HSR_BAD_REQUEST);
        http_respond_error(ctx, 400, "bad_request",
                           "since must be a whole number and epoch at most 16 characters", NULL);
        return false;
    }
    struct ws_conn *ws = ws_conn_alloc(&r->hub_ep);
    struct client *c =
        ws ? hub_client_init(ws_conn_data(ws), hub_shard_current(), id.user, &id, ip) : NULL;
    if (!c) {
        ws_conn_discard(ws);
        hub_release(r->hub, ip);
        auth_identity_free(&id);
        STAT_HANDSHAKE_FAILED(HSR_INTERNAL);
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return false;
    }
    if (since_len != -1 && hub_client_resume(c, since, epoch_len > 0 ? epoch_s : "") < 0) {
        ws_conn_discard(ws); /* releases the address and the identity the client took */
        STAT_HANDSHAKE_FAILED(HSR_INTERNAL);
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return false;
    }
    if (ut) {
        /* Before ws_accept: frames right behind the request may close and free c. */
        hub_client_trace(c, &ut->span.ctx);
        upgrade_trace_client(ut, hub_client_user(c), hub_client_id(c));
    }
    return ws_accept(ctx, &hs, ws, NULL); /* when false, on_abandon released the client */
}

static void ws_route(struct http_ctx *ctx, void *ud)
{
    char ip[64];
    conn_peer(ctx->conn, ip, sizeof ip);
    struct upgrade_trace ut;
    bool traced = upgrade_trace_begin(&ut, ctx->req, ip);
    if (traced && ut.trace_hex[0]) ctx->trace_id = ut.trace_hex;
    ws_upgrade(ctx, ud, ip, traced ? &ut : NULL);
    if (traced) upgrade_trace_end_slow(&ut, ctx->status);
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
                     "Endpoints: ws /ws (rooms and users), %s/api/online, /api/rooms,\n"
                     "/api/rooms/{id}/members, POST /api/publish, /healthz, /readyz, /metrics\n",
                     WSHUB_VERSION, r->cfg->echo ? "ws /echo (echo), " : "");
    http_respond(ctx, 200, "text/plain; charset=utf-8", NULL, body,
                 n > 0 && (size_t)n < sizeof body ? (size_t)n : 0);
}

static void add(struct routes_ctx *r, const char *method, const char *path, http_handler_fn fn)
{
    if (r->n < ROUTES_MAX)
        r->routes[r->n++] = (struct http_route){.method = method, .path = path, .fn = fn, .ud = r};
}

int routes_init(struct routes_ctx *r, const struct wh_config *cfg, const struct ws_options *wsopt,
                struct hub *hub, struct auth *auth, const char *const *origins, struct api *api)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->wsopt = wsopt;
    ws_endpoint_init(&r->hub_ep, &hub_ws_handler, wsopt, NULL, hub_client_size(hub));
    ws_endpoint_init(&r->echo_ep, &echo_ws_handler, wsopt, r, 0);
    r->hub = hub;
    r->auth = auth;
    r->origins = origins;
    r->api = api;
    add(r, "GET", "/ws", ws_route);
    if (cfg->echo) add(r, "GET", "/echo", echo_route);
    api_add_routes(api, r->routes, &r->n, ROUTES_MAX);
    add(r, "GET", "/healthz", healthz);
    if (!cfg->web) {
        add(r, "GET", "/", index_page);
        return 0;
    }
    if (web_init(&r->web, cfg->web_root && *cfg->web_root ? cfg->web_root : NULL) < 0) {
        fprintf(stderr, "wshub: --web-root %s: not a readable folder\n", cfg->web_root);
        return -1;
    }
    /* Last: every path no other route took, any method (a non-GET gets 405 for a file
     * that exists and 404 otherwise, as unknown paths always did). */
    if (r->n < ROUTES_MAX)
        r->routes[r->n++] =
            (struct http_route){.method = NULL, .path = "/*", .fn = web_route, .ud = &r->web};
    return 0;
}
