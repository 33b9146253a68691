/* The HTTP routes of the binary: which path goes to which handler, and the
 * WebSocket endpoints' admission (handshake, Origin, connection limits, token).
 * Built once at start-up, shared read-only by every worker. */
#ifndef WSHUB_APP_ROUTES_H
#define WSHUB_APP_ROUTES_H

#include <stddef.h>

#include "api/api.h"
#include "api/web.h"
#include "app/config.h"
#include "auth/token.h"
#include "http/server.h"
#include "hub/hub.h"
#include "ws/conn.h"

#define ROUTES_MAX 32

struct routes_ctx {
    struct http_route routes[ROUTES_MAX];
    size_t n;
    const struct wh_config *cfg;
    const struct ws_options *wsopt;
    struct ws_endpoint hub_ep, echo_ep; /* what each endpoint's connections point at */
    struct hub *hub;
    struct auth *auth;
    const char *const *origins; /* allow-list, NULL-terminated, or NULL */
    struct api *api;
    struct web web; /* the page at / (cfg->web) */
};

/* Returns 0, or -1 (with a message on stderr) when --web-root is not a folder. */
int routes_init(struct routes_ctx *r, const struct wh_config *cfg, const struct ws_options *wsopt,
                struct hub *hub, struct auth *auth, const char *const *origins, struct api *api);

/* Checks a WebSocket upgrade request (handshake rules and Origin) and answers a bad
 * one with the right status; returns 0 when the caller may accept it. */
int routes_upgrade_check(struct http_ctx *ctx, struct ws_handshake *hs,
                         const char *const *subprotocols, const char *const *origins);

#endif
