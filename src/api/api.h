/* The HTTP API (docs/protocol.md, "HTTP API"):
 *   GET  /api/online              {"online_users":[...],"count":N,"total":N,"next_cursor":..}
 *   GET  /api/rooms               {"rooms":[{"room_id":..,"members":N}],"count":N,...}
 *   GET  /api/rooms/{id}/members  {"room_id":..,"members":[...],"count":N,...}; 404 if none
 *        (the listings are paginated, ?limit=1..1000 (100)&cursor=<next_cursor>, and
 *        share the per-address listing budget of /ws: 429 rate_limited)
 *   POST /api/publish             to a room, a user or everyone; needs the API key
 *   GET  /readyz                  200 while serving, 503 once shutting down
 *   GET  /metrics                 Prometheus text format
 * Errors are JSON {"error":{"code","message"}} with the matching status.
 *
 * Cluster mode (hub_cluster): publish and the three listings wait for Redis (the
 * request is deferred, answered on the same worker when Redis replies, cut with 504
 * after 10 s): publish answers with the seq Redis assigned, the listings with the
 * cluster's presence; 503 unavailable when Redis cannot be reached. The history
 * endpoints still read this node's copy (docs/protocol.md 9.7).
 *
 * Ownership: struct api is filled by the app, shared read-only by every worker, and
 * outlives them; `shutting_down` is the one field written after start (atomically). */
#ifndef WSHUB_API_API_H
#define WSHUB_API_API_H

#include <stdatomic.h>
#include <stddef.h>

#include "telemetry/metrics.h"
#include "http/server.h"
#include "hub/hub.h"

struct api {
    struct hub *hub;
    const char *api_key;      /* NULL: POST /api/publish is disabled (403) */
    metrics_gather_fn gather; /* GET /metrics: any thread */
    void *gather_ud;
    atomic_int shutting_down;
};

/* Appends the API's routes to routes[*n..max). */
void api_add_routes(struct api *a, struct http_route *routes, size_t *n, size_t max);

#endif
