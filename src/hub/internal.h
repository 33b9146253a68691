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

#include "base/ordset.h"
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

/* An online user: the one record of a user id while any of its connections is open
 * (issue 13, memory). The id is stored once, at the end of the record; the registry
 * indexes it (reg.users) under registry.mu, and each shard keeps, in the same
 * allocation, its own part: the slot of the user's connections on that shard
 * (ou_slot, ou_clients) and, only when --user-rate-limit is on, the per-user message
 * bucket (ou_bucket). A shard reads and writes only its own part, without the lock:
 * the record outlives it, since conns counts the shard's connections, which leave it
 * before they are uncounted (on_close). Layout, n the number of shards:
 * [rate_bucket x n, when on][connections slot x n][online_user][id, NUL]: with one
 * shard, 24 bytes and the id, a 48-byte malloc chunk for an id of up to 15 bytes. */
struct online_user {
    struct hist_stream *stream; /* the user's stream while online, once it exists */
    uint32_t conns;
    /* user_hash(key): the shards' tables probe and grow with it without hashing the
     * id again (it sits in what would be the chunk's slack for ids up to 15 bytes). */
    uint32_t hashv;
    char key[]; /* the id, NUL-terminated */
};

static inline const char *ou_key(const struct online_user *u)
{
    return u->key;
}

/* A set of records by string id (idtab.c): a shard's table of the online users with
 * connections there, and the per-address table. Each record keeps a uint32_t hash of
 * its id (id_hash) immediately followed by the id, NUL-terminated; the table holds
 * pointers to that hash (the owner turns them back into records by its offset). Open
 * addressing (linear probing), 8 bytes a slot at a load between 3/16 and 3/4, against
 * uthash's 56-byte handle in every record and its bucket array. Not thread-safe: the
 * owner's thread or lock guards it. */
struct id_tab {
    uint32_t **slot; /* [cap], NULL: free */
    uint32_t cap, n; /* cap: 0 or a power of two */
};

static inline const char *id_key(const uint32_t *e)
{
    return (const char *)(e + 1);
}

_Static_assert(offsetof(struct online_user, key) ==
                   offsetof(struct online_user, hashv) + sizeof(uint32_t),
               "an online user's id follows its hash (struct id_tab)");

static inline struct online_user *ou_of(uint32_t *e)
{
    return e ? (struct online_user *)(void *)((char *)e - offsetof(struct online_user, hashv))
             : NULL;
}

struct registry {
    pthread_mutex_t mu;
    struct room *rooms;
    struct skiplist room_order; /* the same entries in id order */
    /* The online users in id order, and their index by id (O(log n) comparisons, like
     * the insert that a new user costs anyway): ~9 bytes a user, where a hash table
     * beside it would add ~13 (docs/design.md, "Memory of an idle hub connection"). */
    struct ordset users;
    uint64_t seed; /* of the rooms' member lists */
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

/* Claims of a token that restrict or extend a connection (auth_identity's, without
 * the user id, which the client has already). */
struct client_claims {
    char **join, **publish; /* patterns (heap) */
    size_t n_join, n_publish;
    uint32_t exp; /* Unix seconds; 0: never expires */
    bool has_rooms, can_broadcast;
};

/* What few connections use, out of line (issue 13, memory): allocated at the first
 * need, so an idle connection under --auth none without tracing or ?since= pays one
 * pointer for all of it. */
struct client_cold {
    struct client_claims claims; /* a token's rooms, broadcast right and exp */
    struct user_pos *upos;       /* the user's stream position: ?since= connections */
    struct trace_ctx tctx;       /* the upgrade's, when it was traced */
    struct rate_bucket qrl;      /* listing queries; full until the first listing */
    bool qrl_set;
    bool token_warned; /* token_expiring sent for the current token */
    char cid[17];      /* hub_client_id's text, once asked for */
    uint32_t dropped;  /* messages lost to drop-oldest since the client was last told */
};

/* A hub client: 40 bytes, in the same allocation as its connection, right after the
 * ws_conn (ws_conn_data; client_ws), measured in docs/design.md ("Memory of an idle
 * hub connection"). Everything an idle connection does not need is in cold; its
 * shard is the thread's (client_sh); its id is computed (client_cid); its place among
 * its user's connections is the user's (ou_clients); its message bucket follows it
 * only when --rate-limit is on (client_rl). */
struct client {
    /* Before the open, the client's own copy (user_own); from the open, the online
     * user's id (container: client_ou). */
    const char *user;
    struct client_rooms *rooms; /* NULL until its first join (client_n_rooms) */
    struct client_cold *cold;   /* NULL until needed */
    /* Its address's entry in the per-address table (which is the address text), when
     * that table is kept (--max-rooms-per-ip, on by default, or
     * --max-connections-per-ip); else the text is asked of the socket (client_ip). */
    struct ip_count *ipe;
    uint32_t opened_ms; /* loop time of hub_client_init (the open's turn), mod 2^32: the
                         * close line's duration, and part of the client id */
    uint16_t holds;     /* cluster answers on their way (relay.c): freed after them */
    uint8_t strikes;    /* bad messages in a row (saturates; strikes_to_close <= 255) */
    /* Set whenever a membership or the user stream starts replaying; replay_pump
     * clears it once a pass finds none left (a bit, not a count: the client stays
     * 40 bytes). */
    bool replay_due : 1;
    bool user_own : 1; /* user is the client's heap copy, not an online user's id */
    bool open : 1;     /* from on_open to on_close */
    bool closed : 1;   /* closed while held (the memory is kept: ws_conn_keep) */
};

/* The client's connection from the open to the close, else NULL. */
static inline struct ws_conn *client_ws(const struct client *c)
{
    return c->open ? ws_conn_of_data((void *)(uintptr_t)c) : NULL;
}

/* A client's memberships, allocated at its first join: its count in the same
 * allocation as the array, so a client in no room pays one NULL pointer for both. The
 * capacity is not stored: rooms_cap(n). */
struct client_rooms {
    uint32_t n;
    struct membership *m[];
};

static inline uint32_t client_n_rooms(const struct client *c)
{
    return c->rooms ? c->rooms->n : 0;
}

/* Capacity of a client's rooms array holding n (it grows 4, 8, 16, ... when full). */
static inline uint32_t rooms_cap(uint32_t n)
{
    if (n == 0) return 0;
    uint32_t cap = 4;
    while (cap < n)
        cap *= 2;
    return cap;
}

/* The peer's address as text (as conn_peer wrote it at the upgrade), into
 * buf[CLIENT_IP_LEN]; "" when unknown (no table entry and the socket closed). */
#define CLIENT_IP_LEN 46
const char *client_ip(const struct client *c, char *buf);
/* The client id as 16 hex digits and NUL, into buf[17]. */
const char *client_cid(const struct client *c, char *buf);
/* The cold part, allocated (zeroed) on first call; NULL when out of memory. */
struct client_cold *client_cold(struct client *c);
static inline struct user_pos *client_upos(const struct client *c)
{
    return c->cold ? c->cold->upos : NULL;
}
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
    struct id_tab users; /* online users with connections here */
    size_t n_clients;
};

/* An address's entry in the per-address table (limits.c): ~32 bytes of malloc chunk
 * for an IPv4 address (IPv6: up to 64), against 128 with a fixed 46-byte text and a
 * uthash handle; the table's slot ~13 more. */
struct ip_count {
    uint32_t n;
    uint32_t rooms; /* memberships of this address's connections */
    uint32_t hashv; /* id_hash(ip) */
    char ip[];      /* the address as text, NUL-terminated */
};

_Static_assert(offsetof(struct ip_count, ip) == offsetof(struct ip_count, hashv) + sizeof(uint32_t),
               "an address follows its hash (struct id_tab)");

static inline struct ip_count *ip_of(uint32_t *e)
{
    return e ? (struct ip_count *)(void *)((char *)e - offsetof(struct ip_count, hashv)) : NULL;
}

#define HUB_QUERY_SLOTS 4096

struct hub {
    struct hub_config cfg;
    struct registry reg;
    atomic_uint conns;     /* admitted /ws connections */
    pthread_mutex_t ip_mu; /* guards ips */
    struct id_tab ips;     /* struct ip_count by address */
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

/* The shard a client lives on: the calling thread's, since a client is only ever
 * touched by its own worker (the hub's callbacks, deliveries from its inbox). */
extern _Thread_local struct shard *shard_cur;
static inline struct shard *client_sh(const struct client *c)
{
    (void)c;
    return shard_cur;
}

/* A linked client's online user (its id is the record's key). Only when !c->user_own. */
static inline struct online_user *client_ou(const struct client *c)
{
    return (struct online_user *)(uintptr_t)(c->user - offsetof(struct online_user, key));
}

/* Shard sh's parts of an online user (see struct online_user for the layout). The
 * slot holds the user's connections on sh: 0 for none, the client itself for one
 * (the usual case: nothing more to allocate, nothing in the client), else a struct
 * user_conns with the low bit set. A list linked through the clients cost every
 * connection two pointers (16 bytes of its malloc chunk); this costs a user with
 * several connections on a shard one array. */
struct user_conns {
    uint32_t n, cap;
    struct client *c[]; /* [cap], the first n in use, in no particular order */
};

static inline uintptr_t *ou_slot(struct online_user *u, const struct shard *sh)
{
    return (uintptr_t *)(void *)u - sh->hub->n_shards + sh->idx;
}

/* The user's connections on sh: *n of them (0 when none). Valid until the next link
 * or unlink on sh. */
static inline struct client *const *ou_clients(struct online_user *u, const struct shard *sh,
                                               uint32_t *n)
{
    uintptr_t *slot = ou_slot(u, sh);
    if (!(*slot & 1)) {
        *n = *slot ? 1 : 0;
        return (struct client *const *)(void *)slot;
    }
    const struct user_conns *uc = (const struct user_conns *)(*slot & ~(uintptr_t)1);
    *n = uc->n;
    return uc->c;
}

static inline struct rate_bucket *ou_bucket(struct online_user *u, const struct shard *sh)
{
    /* only when sh->hub->cfg.user_rate.rate != 0 */
    return (struct rate_bucket *)(void *)ou_slot(u, sh) - sh->hub->n_shards;
}

/* Bytes of an online user's allocation before the record. */
static inline size_t ou_prefix(const struct hub *h)
{
    size_t per = sizeof(uintptr_t) + (h->cfg.user_rate.rate ? sizeof(struct rate_bucket) : 0);
    return (size_t)h->n_shards * per;
}

/* The client's message bucket: after the struct, only when --rate-limit is on. */
static inline struct rate_bucket *client_rl(struct client *c)
{
    return (struct rate_bucket *)(void *)(c + 1);
}

/* registry.c */
void registry_init(struct registry *r);
void registry_destroy(struct registry *r);
struct room *room_ref(struct room *room);
void room_unref(struct room *room);
/* Counts a connection of user; returns its online user (the record lives while the
 * count is held), NULL when out of memory (nothing counted). */
struct online_user *registry_user_add(struct hub *h, const char *user);
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
/* The admitted address's entry (kept until its last connection is released), or NULL
 * when the table is not kept (no per-address limit) or has none. */
struct ip_count *hub_ip_entry(struct hub *h, const char *ip);
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
/* Adds c to its online user's connections on sh and makes c->user that user's id
 * (the client's own copy is freed); without memory, c stays unlinked with its own
 * copy. */
void shard_user_link(struct shard *sh, struct client *c, struct online_user *u);
void shard_user_unlink(struct shard *sh, struct client *c);
/* Joins; on success *snap is the room's position at the join (deliveries after it
 * reach the member; see registry_join). */
int shard_join(struct client *c, const char *room, bool presence, uint64_t *snap);
int shard_leave(struct client *c, struct membership *m);
struct membership *client_membership(const struct client *c, const char *room);

/* idtab.c: a set of records by id (struct id_tab); e points at a record's hash. */
uint32_t id_hash(const char *id);
int id_tab_add(struct id_tab *t, uint32_t *e); /* 0 or -ENOMEM */
void id_tab_del(struct id_tab *t, uint32_t *e);
uint32_t *id_tab_find(const struct id_tab *t, const char *id, uint32_t hv); /* hv = id_hash(id) */
void id_tab_free(struct id_tab *t);

/* The same for online users. */
static inline uint32_t user_hash(const char *user)
{
    return id_hash(user);
}
static inline int user_tab_add(struct id_tab *t, struct online_user *u)
{
    return id_tab_add(t, &u->hashv);
}
static inline void user_tab_del(struct id_tab *t, struct online_user *u)
{
    id_tab_del(t, &u->hashv);
}
static inline struct online_user *user_tab_find(const struct id_tab *t, const char *user)
{
    return t->n ? ou_of(id_tab_find(t, user, id_hash(user))) : NULL;
}

/* replay.c: sends what recovering memberships (and the user stream) missed, as far as
 * the client's send queue allows; called again when the queue drains. */
void replay_pump(struct client *c);

/* relay.c and relay_publish.c: cluster mode (h->relay set). */
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
/* Cluster thread: when room's stream is being anchored on this node, fn(arg) runs
 * once it is (true); false when it need not wait (the caller runs it). */
bool relay_after_anchor(struct hub *h, const char *room, void (*fn)(void *), void *arg);
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
/* This node's presence was synced to Redis once (until then it is not ready). */
bool cpresence_registered(const struct hub *h);
void cpresence_user(struct hub *h, const char *user, bool online);
void cpresence_member(struct hub *h, const char *room, const char *user, bool in);

/* client.c: answers from the cluster thread, on the client's shard. hold/release keep
 * a closed client's memory until its last answer is back. */
struct client *client_hold(struct client *c);
void client_release(struct client *c);
void client_publish_done(struct client *c, json_t *id, const char *room, uint64_t seq, bool ok);
void client_fetch_done(struct client *c, const struct relay_fetched *res);
/* Replies obey the queue bounds of deliveries. client_reject answers an `error` with
 * code e, counts it and the client's strike (closing it 1008 at strikes_to_close),
 * and returns -1; client_ack is a publish's `ack` (seq 0: none). */
void client_reply(struct client *c, const char *type, json_t *payload, json_t *id);
int client_reject(struct client *c, enum proto_err e, const char *msg, json_t *id);
void client_ack(struct client *c, json_t *id, const char *room, uint64_t seq);
/* The claims of the client's token (none under --auth none). */
const struct client_claims *client_token_claims(const struct client *c);

/* commands.c: one envelope other than `refresh` carried out (0) or refused with an
 * error (-1). client_begin_recovery decides and counts a recovery of stream s from
 * (epoch, since): on success the caller's cursor and live_from are set for
 * replay_pump. */
int client_command(struct client *c, struct envelope *env);
bool client_begin_recovery(struct client *c, struct hist_stream *s, int stream, uint64_t since,
                           const char *epoch, uint64_t *cursor, uint64_t *live_from);
/* joinwait.c: a new member's room_joined waits for the room's position (m->pend). */
int join_wait(struct client *c, struct membership *m, json_t *id, bool has_since, uint64_t since,
              const char *epoch);
/* An anchor item reached this shard (relay.c's IT_*_ANCHOR). */
void client_room_anchor(struct shard *sh, const struct item *it);
void client_user_anchor(struct shard *sh, const struct item *it);

#endif
