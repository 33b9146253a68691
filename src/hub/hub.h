/* The hub: clients, users (many connections each) and rooms, sharded per worker
 * thread, and the routing of messages between them (docs/protocol.md says what goes
 * over the wire; docs/design.md how it is routed).
 *
 * Sharding. Each worker owns a shard: its own clients, and for each room and user
 * that has local clients, a local entry listing them. A message is serialised once
 * into one ref-counted frame and posted by reference to every shard's inbox; each
 * shard delivers it to its own members. A shard's inbox is fed by every shard
 * (itself included, so that one room's messages reach every member in one order).
 * The only process-wide state is the registry (rooms with their de-duplicated
 * members, online users), behind one mutex, touched on join, leave, connect,
 * disconnect and queries, never per delivered message; and one mutex per room, held
 * while a message to that room gets its sequence number and is posted.
 *
 * Threads: hub_create runs before the workers start; each worker calls
 * hub_shard_attach on its own thread before running its loop and hub_shard_detach
 * after. Publishing and queries may be called from any worker thread.
 *
 * Ownership: struct hub owns the shards and the registry; hub_destroy runs after
 * every worker has detached. */
#ifndef WSHUB_HUB_HUB_H
#define WSHUB_HUB_HUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/ratelimit.h"
#include "auth/token.h"
#include "cluster/node.h"
#include "history/history.h"
#include "loop/loop.h"
#include "proto/envelope.h"
#include "telemetry/trace.h"
#include "ws/conn.h"

enum hub_send_policy { HUB_SEND_ANY = 0, HUB_SEND_MEMBERS = 1 };
enum hub_slow_policy { HUB_SLOW_CLOSE = 0, HUB_SLOW_DROP_OLDEST = 1 };

struct hub_config {
    enum hub_send_policy send_policy; /* who may send to a room */
    enum hub_slow_policy slow_policy; /* what a full send queue means */
    uint32_t queue_msgs;              /* per-connection send queue bound, messages */
    uint64_t queue_bytes;             /* and bytes */
    bool presence;                    /* publish presence events on join/leave */
    bool client_broadcast;            /* clients may broadcast without a token claim */
    uint32_t max_rooms_per_conn;
    uint32_t max_rooms;           /* rooms on this node (0: unlimited) */
    uint32_t max_rooms_per_ip;    /* memberships from one address (0: unlimited) */
    struct rate_limit query_rate; /* listing queries per connection (and per address on HTTP) */
    struct rate_limit conn_rate;  /* messages per connection */
    struct rate_limit user_rate;  /* messages per user (per worker) */
    uint32_t strikes_to_close;    /* consecutive bad messages before close 1008 */
    uint32_t max_conns;           /* /ws connections in total (0: unlimited) */
    uint32_t max_conns_per_ip;    /* from one address (0: unlimited) */
    struct hist_config hist;      /* streams' history (history/history.h) */
    const struct auth *auth;      /* verifies `refresh` tokens; NULL: refresh refused */
    /* Cluster mode (docs/cluster.md): the Redis instances (--redis), none: one node. */
    struct redis_url redis[NODE_MAX_REDIS];
    int n_redis;
    uint32_t presence_timeout_ms; /* a dead node's users are listed at most this long */
};

struct hub;
struct shard;
struct client;

struct hub *hub_create(const struct hub_config *cfg, int n_shards);
void hub_destroy(struct hub *h);

struct shard *hub_shard_attach(struct hub *h, int idx, struct loop *loop);
void hub_shard_detach(struct shard *sh);

/* On the shard's own thread, when the server is quiet: gives back the shard's inbox
 * arrays if they are empty (a burst leaves them at its size). */
void hub_shard_release_memory(struct shard *sh);

/* The calling worker's shard (NULL on other threads). */
struct shard *hub_shard_current(void);

/* Admission before an upgrade: 0 when a connection from ip may be opened (and is
 * then counted: release it with hub_release, which a client's close does), 503 when
 * the server is full (or out of memory for the address's count), 429 when that address
 * has too many. */
int hub_admit(struct hub *h, const char *ip);
void hub_release(struct hub *h, const char *ip);

/* A /ws connection's client lives in the connection's own allocation: the hub's
 * endpoint is set up with hub_ws_handler and data_size hub_client_size(). */
size_t hub_client_size(const struct hub *h);
/* Sets up the client of a connection about to be accepted on the current shard, in
 * data (ws_conn_data of a ws_conn_alloc'd connection of that endpoint): user and id
 * (may be NULL) are copied/taken (id's heap parts are owned by the client after
 * this), and the admission of peer_ip (hub_admit) becomes the client's. Returns the
 * client, or NULL when out of memory: then it holds nothing, and the caller still
 * owns the admission and id. From a client returned, the connection goes to
 * ws_accept, or to ws_conn_discard, which releases all the client holds. */
struct client *hub_client_init(void *data, struct shard *sh, const char *user,
                               struct auth_identity *id, const char *peer_ip);
/* The client asked, at the upgrade, for its user stream's position (?since=N, with
 * ?epoch=E to recover from it): after the open it is sent `session` and, when the
 * position can be continued, what it missed. -1 when out of memory. */
int hub_client_resume(struct client *c, uint64_t since, const char *epoch);
extern const struct ws_handler hub_ws_handler;

/* The client's id (16 hex digits, random, for logs and spans) and user. */
const char *hub_client_id(const struct client *c);
const char *hub_client_user(const struct client *c);
/* The trace context of the client's upgrade: its messages' spans continue it. */
void hub_client_trace(struct client *c, const struct trace_ctx *ctx);

/* Publishing (any worker thread). payload is borrowed (its json or raw text); from may be NULL (the
 * server). hub_publish_room returns the message's sequence number in the room, or 0 when the room
 * has no members (nothing is delivered). */
uint64_t hub_publish_room(struct hub *h, const char *room, const char *type,
                          const struct proto_payload *payload, const char *from);
/* Returns the message's position in the user's stream (0 when it could not be
 * built). A user who is not connected gets it from the history on reconnect. */
uint64_t hub_publish_user(struct hub *h, const char *user, const char *type,
                          const struct proto_payload *payload, const char *from);
void hub_publish_all(struct hub *h, const char *type, const struct proto_payload *payload,
                     const char *from);

/* Listing queries (any thread) are paginated: ids in byte (strcmp) order, from the
 * first id after `after` (NULL: from the start), at most `limit` of them. The work
 * under the registry lock is one O(log n) seek and a walk of the page, whatever the
 * total. The page's ids continue from where the previous page ended even when
 * entries came or went in between (the cursor is an id, not an offset). */
#define HUB_PAGE_DEFAULT 100
#define HUB_PAGE_MAX     1000
struct hub_page {
    json_t *items; /* array; owned by the caller */
    json_t *next;  /* string: `after` for the next page; NULL on the last page; owned */
    size_t total;  /* entries in the whole listing */
};
void hub_page_free(struct hub_page *p);
/* The page as a reply object: {<key>: items, count, total, next_cursor}, items and
 * next taken over. */
json_t *hub_page_json(struct hub_page *p, const char *key);
void hub_online_users(struct hub *h, const char *after, size_t limit, struct hub_page *out);
/* Listing budget: a listing of `limit` ids costs hub_query_cost(limit) tokens (one per
 * started HUB_PAGE_DEFAULT ids: the work is proportional to the page). The client
 * address's bucket (query_rate, shared by /ws and the HTTP API) pays them; false
 * when it cannot (a refused listing may use up what was left). Any thread. */
uint32_t hub_query_cost(size_t limit);
bool hub_query_take(struct hub *h, const char *ip, uint32_t cost, uint64_t now_ms);
size_t hub_connection_count(struct hub *h);
/* Counts for metrics (any thread): one lock, no allocation. */
size_t hub_room_count(struct hub *h);
size_t hub_online_user_count(struct hub *h);
/* items: [{room_id, members}] */
void hub_rooms(struct hub *h, const char *after, size_t limit, struct hub_page *out);
/* items: user ids; returns -1 (and nothing to free) when the room has no members. */
int hub_room_members(struct hub *h, const char *room, const char *after, size_t limit,
                     struct hub_page *out);
size_t hub_room_member_count(struct hub *h, const char *room);

/* Cluster mode: a publish whose position comes from Redis. done(arg, ok, seq) runs
 * later on `origin` (the caller's loop): ok with the position Redis assigned (0 for a
 * broadcast), or not (Redis unreachable: not sent). -1 when it cannot be sent now
 * (Redis down, out of memory): done is not called. */
enum { HUB_TARGET_ROOM = 0, HUB_TARGET_USER = 1, HUB_TARGET_ALL = 2 };
int hub_publish_async(struct hub *h, int target, const char *id, const char *type,
                      const struct proto_payload *payload, struct loop *origin,
                      void (*done)(void *arg, int ok, uint64_t seq), void *arg);

/* Cluster mode: listings come from Redis, so their answer comes later, on `origin`
 * (the asking worker's loop): fn(arg, status, page) with status 0 (page filled; fn
 * may take its items and next, hub_page_free follows), HUB_LIST_NOT_FOUND (no such
 * room) or HUB_LIST_FAILED (Redis unreachable). -1 when it cannot be asked now. */
enum hub_listing { HUB_LIST_ONLINE, HUB_LIST_ROOMS, HUB_LIST_MEMBERS };
#define HUB_LIST_NOT_FOUND (-3)
#define HUB_LIST_FAILED    (-1)
typedef void (*hub_page_fn)(void *arg, int status, struct hub_page *pg);
int hub_list_async(struct hub *h, enum hub_listing kind, const char *room, const char *after,
                   size_t limit, struct loop *origin, hub_page_fn fn, void *arg);

/* A stream's kept history (GET /api/rooms/{id}/history, /api/users/{id}/history). */
#define HUB_HISTORY_MAX 1000
struct hub_history {
    char epoch[HIST_EPOCH_LEN + 1];
    uint64_t top;   /* the stream's position */
    uint64_t first; /* the first position kept (top + 1 when none) */
    uint64_t from;  /* the position of frames[0] */
    int n;          /* in: most frames wanted (1..HUB_HISTORY_MAX); out: frames given */
    struct wh_msg *frames[HUB_HISTORY_MAX]; /* ws text frames, a reference each */
};
/* Fills out with the frames after position `after` (from the first kept one when
 * after is older). -1 when the stream does not exist (never used, or expired). */
int hub_history(struct hub *h, bool user, const char *id, uint64_t after, struct hub_history *out);

void hub_history_totals(struct hub *h, struct hist_totals *out);

struct hub *hub_of(struct shard *sh);

/* Cluster mode: hub_cluster says whether it is on; hub_ready whether every Redis
 * instance is reachable (always true for one node: /readyz); the node's id (NULL for
 * one node). Any thread. */
bool hub_cluster(const struct hub *h);
bool hub_ready(const struct hub *h);
const char *hub_node_id(const struct hub *h);
struct hub_cluster_stats {
    struct node_stats redis;
    int instances;
    uint64_t published;   /* messages handed to Redis */
    uint64_t received;    /* messages received from Redis */
    uint64_t unavailable; /* publishes refused or lost because Redis was unreachable */
    uint64_t resets;      /* streams whose epoch changed under live members */
    uint64_t catchups;    /* streams this node had missed messages of (read back) */
    uint64_t fetches;     /* reads of history from Redis for recoveries */
};
void hub_cluster_stats(const struct hub *h, struct hub_cluster_stats *out);
/* Cluster mode: stops the cluster thread. Call after every worker's loop has ended
 * and before their loops are destroyed, then run each worker loop's last posts
 * (loop_run_posts): answers still on their way release what they hold. */
void hub_cluster_stop(struct hub *h);

/* Graceful shutdown, first step (any thread): from now on hub_closing is true and
 * the entry points refuse new messages (error shutting_down / HTTP 503). */
void hub_begin_shutdown(struct hub *h);
bool hub_closing(const struct hub *h);
/* Delivers what is posted to the calling worker's shard now (the shutdown's drain). */
void hub_shard_drain(struct shard *sh);

#endif
