/* Hub internals shared by registry.c, shard.c and client.c. Not for other modules.
 *
 * Locks and their order: registry.mu, then the history store's table, then a stream's
 * mutex (room->stream: it orders a room's publishes), then a shard's inbox mu. Never
 * the other way round. room->users and the registry tables are under registry.mu;
 * the room's position is its stream's (history/history.h); room->refs is atomic. */
#ifndef WSHUB_HUB_INTERNAL_H
#define WSHUB_HUB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uthash.h>

#include "base/skiplist.h"
#include "history/history.h"
#include "hub/hub.h"
#include "proto/envelope.h"

struct room_user {
    char *user;
    uint32_t conns;
    UT_hash_handle hh;
};

struct room {
    char *id;
    atomic_uint refs;           /* registry (while listed), local rooms, posted items */
    struct hist_stream *stream; /* its position and history; outlives the room */
    struct room_user *users;    /* under registry.mu */
    struct skiplist by_user;    /* the same users in id order, for paginated listing */
    size_t n_users;
    UT_hash_handle hh;
};

struct online_user {
    char *user;
    uint32_t conns;
    struct hist_stream *stream; /* the user's stream while online, once it exists */
    UT_hash_handle hh;
};

struct registry {
    pthread_mutex_t mu;
    struct room *rooms;
    struct online_user *users;
    struct skiplist room_order, user_order; /* the same entries in id order */
    uint64_t seed;                          /* of the rooms' member lists */
};

/* IT_*_ANCHOR (cluster mode, relay.c): a stream's position was read from Redis;
 * frame NULL, seq the position, published_us the mirror's top before (members catch
 * up from there), presence set when the epoch changed (members are told). */
enum item_kind { IT_ROOM = 0, IT_USER = 1, IT_ALL = 2, IT_ROOM_ANCHOR = 3, IT_USER_ANCHOR = 4 };

/* A delivery posted to a shard. Holds one reference to frame, room and target. */
struct item {
    uint8_t kind;
    bool presence; /* a presence event: skipped for members who opted out */
    struct wh_msg *frame;
    struct room *room;     /* IT_ROOM */
    struct wh_msg *target; /* IT_USER: the user id, NUL-terminated, shared */
    uint64_t seq;          /* position in the room's or user's stream (0: none) */
    uint64_t published_us; /* stats_now_us() at the publish: delivery latency */
};

struct inbox {
    pthread_mutex_t mu;
    struct item *items;
    size_t n, cap;
    struct item *work; /* swapped with items when draining */
    size_t work_cap;
    struct io_watch w; /* eventfd */
    struct loop_task task;
};

/* A join waiting for its room's position from Redis (cluster mode). */
struct pending_join {
    json_t *id; /* the envelope's, for room_joined */
    uint64_t since, top;
    bool has_since, probing;
    char epoch[HIST_EPOCH_LEN + 1];
};

struct membership {
    struct client *c;
    struct pending_join *pend; /* cluster mode: room_joined not sent yet */
    struct local_room *lr;
    uint32_t index; /* in lr->m */
    bool presence;  /* wants presence events of this room */
    bool replaying; /* a recovery is being sent from the history (replay.c) */
    bool fetching;  /* cluster mode: waiting for positions read from Redis */
    /* Deliveries with seq <= live_from are skipped: they were in flight to this
     * shard when the member joined, or are being replayed (live_from = max). */
    uint64_t live_from;
    uint64_t cursor; /* while replaying: the last position sent */
};

struct local_room {
    struct room *room; /* key (pointer); holds one reference */
    struct membership **m;
    uint32_t n, cap;
    UT_hash_handle hh;
};

struct local_user {
    char *user;
    struct client **clients;
    uint32_t n, cap;
    struct rate_bucket rl;
    UT_hash_handle hh;
};

struct client {
    struct ws_conn *ws;
    struct shard *sh;
    struct local_user *lu;
    uint32_t lu_index;
    bool opened;
    struct membership **rooms;
    uint32_t n_rooms, cap_rooms;
    struct auth_identity id;
    bool has_id;
    struct rate_bucket rl;
    struct rate_bucket qrl; /* listing queries */
    uint32_t strikes;
    uint64_t dropped; /* messages lost to drop-oldest since the client was last told */
    const char *user; /* = id.user: the identity holds the one copy */
    char ip[46];
    char cid[17];          /* client id, hex */
    uint64_t opened_ms;    /* loop time of the open, for the close line's duration */
    struct trace_ctx tctx; /* the upgrade's; invalid when tracing is off */
    /* The user's stream position: allocated only for a connection that asked for
     * it with ?since= (docs/protocol.md "Recovery"), so others pay one pointer. */
    struct user_pos *upos;
    uint16_t n_replaying; /* memberships (and the user stream) replaying */
    uint16_t holds;       /* cluster answers on their way (relay.c): freed after them */
    bool closed;          /* closed while held */
    bool token_warned;    /* token_expiring sent for the current token */
};

/* A client's position in its user stream. Until the open it holds the ?since=
 * request (since, epoch); from the open, the stream and the same fields as a
 * membership's (live_from, cursor, replaying). */
struct user_pos {
    struct hist_stream *stream; /* NULL until the open */
    uint64_t since;
    uint64_t live_from, cursor;
    bool replaying;
    bool pending, probing; /* cluster mode: waiting for the position / a first read */
    bool fetching;
    char epoch[HIST_EPOCH_LEN + 1]; /* the request's; "" when the client has none */
};

struct shard {
    int idx;
    struct hub *hub;
    struct loop *loop;
    struct inbox inbox;
    struct local_room *rooms;
    struct local_user *users;
    size_t n_clients;
};

struct ip_count {
    char ip[46];
    uint32_t n;
    uint32_t rooms; /* memberships of this address's connections */
    UT_hash_handle hh;
};

#define HUB_QUERY_SLOTS 4096

struct hub {
    struct hub_config cfg;
    struct registry reg;
    atomic_uint conns;     /* admitted /ws connections */
    pthread_mutex_t ip_mu; /* guards ips */
    struct ip_count *ips;
    int n_shards;
    struct shard *shards;
    struct hist_store *hist;
    struct timer sweep;      /* on shard 0's loop: history expiry, once a second */
    atomic_bool closing;     /* hub_begin_shutdown */
    struct relay *relay;     /* cluster mode (--redis), else NULL */
    struct cpresence *cpres; /* cluster mode: presence over all nodes (cpresence.c) */
    /* Per-address listing buckets: a fixed table indexed by a keyed hash of the
     * address (bounded memory however many addresses; addresses that share a slot
     * share its bucket). Under q_mu. */
    pthread_mutex_t q_mu;
    uint64_t q_seed;
    struct rate_bucket *q_slots; /* [HUB_QUERY_SLOTS] */
};

/* registry.c */
void registry_init(struct registry *r);
void registry_destroy(struct registry *r);
struct room *room_ref(struct room *room);
void room_unref(struct room *room);
void registry_user_add(struct hub *h, const char *user);
void registry_user_remove(struct hub *h, const char *user);
/* Gives an online user without one a reference to its (new) stream. */
void registry_user_stream(struct hub *h, const char *user, struct hist_stream *s);
/* Joins user to room (creating it); returns the room with one reference for the
 * caller. Publishes the presence event when the user's first connection joins.
 * *snap is the room's position before that event: what room_joined says and where
 * live delivery to the new member starts. */
struct room *registry_join(struct hub *h, const char *room, const char *user, uint64_t *snap);
/* (It fails with NULL and errno ENOSPC when the node has --max-rooms rooms and room
 * is a new one; ENOMEM otherwise.) */
void registry_leave(struct hub *h, struct room *room, const char *user);
/* Looks a room up; returns it with a reference, or NULL. */
struct room *registry_find(struct hub *h, const char *room);

/* limits.c: the per-address membership budget (max_rooms_per_ip). take returns
 * false when the address has used it up. */
bool hub_ip_room_take(struct hub *h, const char *ip);
void hub_ip_room_give(struct hub *h, const char *ip, uint32_t n);
/* A listing of `cost` tokens from this client: its connection's bucket, then its
 * address's (hub_query_take). */
bool hub_client_query_take(struct client *c, uint32_t cost);
int hub_limits_init(struct hub *h);
void hub_limits_destroy(struct hub *h);

/* shard.c */
void inbox_push(struct shard *to, const struct item *it);
uint64_t room_publish(struct hub *h, struct room *room, const char *type,
                      const struct proto_payload *payload, const char *from, bool presence);
bool shard_deliver(struct client *c, struct wh_msg *frame);
void shard_user_link(struct shard *sh, struct client *c);
void shard_user_unlink(struct shard *sh, struct client *c);
/* Joins; on success *snap is the room's position at the join (deliveries after it
 * reach the member; see registry_join). */
int shard_join(struct client *c, const char *room, bool presence, uint64_t *snap);
int shard_leave(struct client *c, struct membership *m);
struct membership *client_membership(const struct client *c, const char *room);

/* replay.c: sends what recovering memberships (and the user stream) missed, as far as
 * the client's send queue allows; called again when the queue drains. */
void replay_pump(struct client *c);

/* relay.c: cluster mode (h->relay set). */
int relay_start(struct hub *h);
void relay_stop(struct hub *h);
/* The registry starts (on) and stops following a stream when this node gets its first
 * local member (room) or connection (user) and loses its last. */
void relay_watch(struct hub *h, enum hist_kind kind, const char *id, struct room *room,
                 struct hist_stream *s, bool on);
/* Publishes through Redis (id NULL: a broadcast). c (may be NULL) gets the ack or an
 * `unavailable` error later, on its shard (client_publish_done). -1 when Redis is
 * unreachable now (counted) or out of memory: nothing was sent. */
int relay_publish(struct hub *h, enum hist_kind kind, const char *id, const char *type,
                  const struct proto_payload *payload, const char *from, struct client *c,
                  json_t *env_id);
/* Reads up to max positions after since from Redis for c's recovery; the answer comes
 * to client_fetch_done on c's shard. -1 when it cannot be asked. */
int relay_fetch(struct client *c, bool user, const char *id, const char *epoch, uint64_t since,
                uint32_t max);
void relay_count_unavailable(struct hub *h);
/* A join or session on sh waits for the stream's position: an anchor item comes to sh
 * (client_room_anchor / client_user_anchor) once it is known. */
int relay_ask(struct shard *sh, enum hist_kind kind, const char *id);

struct relay_fetched {
    bool ok; /* false: the position is gone from Redis (gap, other epoch) or Redis failed */
    bool user;
    const char *room; /* NULL for the user stream */
    uint64_t since, top;
    struct wh_msg **frames; /* positions since+1 .. since+n, borrowed */
    uint32_t n;
};

/* cpresence.c: this node's share of the cluster's presence. The registry reports a
 * user's first/last connection and first/last connection in a room on this node,
 * under its lock (so in order). */
struct node;
int cpresence_start(struct hub *h, struct node *node);
void cpresence_stop(struct hub *h);
void cpresence_free(struct hub *h);
void cpresence_user(struct hub *h, const char *user, bool online);
void cpresence_member(struct hub *h, const char *room, const char *user, bool in);

/* client.c: answers from the cluster thread, on the client's shard. hold/release keep
 * a closed client's memory until its last answer is back. */
struct client *client_hold(struct client *c);
void client_release(struct client *c);
void client_publish_done(struct client *c, json_t *id, const char *room, uint64_t seq, bool ok);
void client_fetch_done(struct client *c, const struct relay_fetched *res);
void client_reply(struct client *c, const char *type, json_t *payload, json_t *id);
void client_reject(struct client *c, enum proto_err e, const char *msg, json_t *id);
/* joinwait.c: a new member's room_joined waits for the room's position (m->pend). */
int join_wait(struct client *c, struct membership *m, json_t *id, bool has_since, uint64_t since,
              const char *epoch);
/* An anchor item reached this shard (relay.c's IT_*_ANCHOR). */
void client_room_anchor(struct shard *sh, const struct item *it);
void client_user_anchor(struct shard *sh, const struct item *it);

#endif
