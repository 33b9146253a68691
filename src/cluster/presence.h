/* Cluster-wide presence kept in Redis (issue 12; built and tested, not wired into the
 * hub yet): who is online, which rooms exist, who is in them, summed over every node,
 * with the entries of a node that dies without a goodbye removed within a bound.
 * docs/cluster.md ("Presence") has the whole story; in short:
 *
 *   wshub:nodes            zset  node id -> deadline (ms, Redis' TIME + ttl; 0 once swept)
 *   wshub:node:<id>:u      hash  user -> that node's connections of the user
 *   wshub:node:<id>:m      hash  "<room>\n<user>" -> that node's connections of user in room
 *   wshub:online           zset  users with a connection somewhere (all scores 0: lex order)
 *   wshub:online:n         hash  user -> connections over all nodes
 *   wshub:rooms            zset  rooms with a member somewhere (scores 0)
 *   wshub:rooms:n          hash  room -> distinct users in it over all nodes
 *   wshub:room:<room>:m    zset  the room's users (scores 0)
 *   wshub:room:<room>:c    hash  user -> connections in the room over all nodes
 *
 * The per-node hashes are each node's contribution; the global keys are their sums, kept
 * up to date by the same script that changes a contribution, so that every operation is
 * one EVALSHA (atomic): O(log n) for a change (the zset updates), O(log n + page) for a
 * query, at most `max` fields for a reset or a sweep, one batch's entries for a sync.
 * "\n" is a safe separator: room ids are 1..128 bytes without control characters
 * (proto/envelope.c printable_string; api.c has the same rule), user ids printable ASCII
 * (auth/token.h); this module checks it again (presence_name_ok) before sending.
 *
 * Life of a node: it heartbeats every ttl/3 (presence_heartbeat moves its deadline to
 * now + ttl and says whether its entries were intact). An answer of 0 (new, swept, or a
 * Redis that lost its data) means its contribution may be gone or partial: it calls
 * presence_reset until done, then presence_sync with its whole local state. Some node
 * calls presence_sweep every few seconds: a node whose deadline has passed loses its
 * contribution and its wshub:nodes entry, so a dead node's users and memberships go
 * within ttl + the sweep period. Changes by a node that is not in wshub:nodes are
 * refused (PRESENCE_UNKNOWN_NODE), so nothing can be left behind that no sweep finds:
 * the node heartbeats, resets and syncs instead.
 *
 * Each script is atomic, so two nodes sweeping the same dead node cannot both remove its
 * entries; one does, the other finds nothing (or the rest, when the work is split).
 *
 * Not legal in Redis Cluster (the scripts touch keys they compute); wshub shards over
 * plain instances instead, and presence lives on one of them (docs/cluster.md).
 *
 * Ownership: arguments are copied before the call returns; results point into the reply
 * and are valid only during the callback. Callbacks run on the connection's loop. Every
 * call returns -1 at once, without calling back, when the connection is not up or an
 * argument is invalid (counted in presence_stats.refused_args): node ids are 16
 * lower-case hex digits, names 1..PRESENCE_MAX_NAME bytes with no control character,
 * limits 1..PRESENCE_PAGE_MAX. */
#ifndef WSHUB_CLUSTER_PRESENCE_H
#define WSHUB_CLUSTER_PRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/redis_conn.h"

#define PRESENCE_NODE_LEN   16
#define PRESENCE_MAX_NAME   128  /* PROTO_MAX_NAME, AUTH_MAX_USER */
#define PRESENCE_PAGE_MAX   1000 /* HUB_PAGE_MAX */
#define PRESENCE_WORK_MAX   1000 /* fields per reset/sweep call */
#define PRESENCE_SYNC_BATCH 200  /* entries per EVALSHA of presence_sync */

/* The scripts, NULL-terminated: pass as redis_conn_opts.preload (with rstream_scripts,
 * concatenated, when one connection serves both). */
extern const char *const presence_scripts[];

/* Results besides counts >= 0. */
#define PRESENCE_FAILED       (-1) /* connection lost, or an unexpected reply */
#define PRESENCE_UNKNOWN_NODE (-2) /* node not in wshub:nodes: heartbeat, reset, then sync */
#define PRESENCE_NOT_FOUND    (-3) /* presence_room_members_page: no such room */

struct presence_stats {
    uint64_t refused_args; /* calls refused before sending: bad node id, name or limit */
    uint64_t clamped;      /* removals of more than the node had added (ignored) */
};
/* Process-wide counters (relaxed atomics; any thread). */
void presence_stats_get(struct presence_stats *out);

/* A name with 1..PRESENCE_MAX_NAME bytes and no byte below 0x20 or equal to 0x7f. */
bool presence_name_ok(const char *s);

typedef void (*presence_count_cb)(void *arg, long long result);

/* Moves the node's deadline (a node not listed is not added: it gets 0, and registers
 * with presence_register, which is the same and adds it; so a heartbeat that reaches
 * Redis late, from a connection that died, cannot bring back a node that was swept).
 * Moves the node's deadline to Redis' time + ttl_ms (1..86400000). result: 1 when the
 * node's entries are intact (it was listed and no sweep has started on it: alive, or
 * late but not swept yet), 0 when they may not be (new, swept wholly or in part, Redis
 * restarted or flushed): the caller then resets and syncs. */
int presence_heartbeat(struct redis_conn *rc, const char *node, uint32_t ttl_ms,
                       presence_count_cb cb, void *arg);
int presence_register(struct redis_conn *rc, const char *node, uint32_t ttl_ms,
                      presence_count_cb cb, void *arg);

/* One connection of user on node came / went. result: the user's connections over all
 * nodes after the change (1 after an add: first connection cluster-wide; 0 after a
 * remove: offline), or PRESENCE_UNKNOWN_NODE / PRESENCE_FAILED. A remove of what the
 * node does not have changes nothing and is counted (clamped). */
int presence_user_add(struct redis_conn *rc, const char *node, const char *user,
                      presence_count_cb cb, void *arg);
int presence_user_remove(struct redis_conn *rc, const char *node, const char *user,
                         presence_count_cb cb, void *arg);

/* One connection of user on node joined / left room. result: the user's connections in
 * the room over all nodes after the change (1 after a join: newly in the room, publish
 * "joined"; 0 after a leave: gone, publish "left"); a room is listed while it has a
 * member. Clamped like user_remove. */
int presence_join(struct redis_conn *rc, const char *node, const char *room, const char *user,
                  presence_count_cb cb, void *arg);
int presence_leave(struct redis_conn *rc, const char *node, const char *room, const char *user,
                   presence_count_cb cb, void *arg);

struct presence_pair {
    const char *room, *user;
};

/* What a reset, a sweep or a sync batch changed cluster-wide. For reset and sweep: the
 * users now offline and the (room, user) pairs whose count reached 0 (publish "left");
 * for sync: the users now online and the pairs now present (their count was 0). */
struct presence_changes {
    const char *const *users;
    size_t n_users;
    const struct presence_pair *pairs;
    size_t n_pairs;
    uint32_t nodes_removed; /* sweep: dead nodes gone from wshub:nodes */
    bool more;              /* reset/sweep: work left, call again; sync: batches follow */
};
/* ok: 0 (ch set), PRESENCE_FAILED or (sync) PRESENCE_UNKNOWN_NODE (ch NULL). */
typedef void (*presence_changes_cb)(void *arg, int ok, const struct presence_changes *ch);

/* Removes up to max (1..PRESENCE_WORK_MAX) of the node's fields (its users and
 * memberships) and their share of the global keys; more says whether fields remain. The
 * node's deadline stays as it is. */
int presence_reset(struct redis_conn *rc, const char *node, uint32_t max, presence_changes_cb cb,
                   void *arg);

/* Removes the contributions of nodes whose deadline has passed, as presence_reset
 * does, at most max fields (plus one unit per node visited) per call, and drops a node
 * from wshub:nodes once it has nothing left; more says whether dead nodes remain. */
int presence_sweep(struct redis_conn *rc, uint32_t max, presence_changes_cb cb, void *arg);

struct presence_user_count {
    const char *user;
    uint32_t count; /* >= 1 */
};
struct presence_member_count {
    const char *room, *user;
    uint32_t count; /* >= 1 */
};

/* Resync: sets the node's contribution for each entry to exactly its count (and the
 * global sums by the difference), in batches of PRESENCE_SYNC_BATCH entries, one EVALSHA
 * each, all pipelined at once. Setting, not adding, makes it idempotent, so ops sent
 * between the reset and the sync do not count twice; entries the node has but the sync
 * does not name are left alone (reset first to drop them). cb runs once per batch, in
 * order; the last call has more == false; a lost connection gives PRESENCE_FAILED for
 * the batches not answered, a node not listed PRESENCE_UNKNOWN_NODE (nothing of that
 * batch applied). Any failure leaves the sync incomplete: heartbeat, reset and sync
 * again. With no entry at all, one empty batch is sent (cb once). Every entry is checked
 * before anything is sent; users and members are copied. */
int presence_sync(struct redis_conn *rc, const char *node, const struct presence_user_count *users,
                  size_t n_users, const struct presence_member_count *members, size_t n_members,
                  presence_changes_cb cb, void *arg);

/* A page of a listing: ids in byte order from the first after `after` (NULL or "":
 * from the start), at most limit; next is the last id when more remain (the `after` of
 * the next page), else NULL; total counts the whole listing. members is set for the
 * rooms listing only (distinct users of each room). */
struct presence_page {
    const char *const *ids;
    const uint64_t *members;
    size_t n;
    uint64_t total;
    const char *next;
};
/* ok: 0 (pg set), PRESENCE_NOT_FOUND or PRESENCE_FAILED (pg NULL). */
typedef void (*presence_page_cb)(void *arg, int ok, const struct presence_page *pg);

int presence_online_page(struct redis_conn *rc, const char *after, uint32_t limit,
                         presence_page_cb cb, void *arg);
int presence_rooms_page(struct redis_conn *rc, const char *after, uint32_t limit,
                        presence_page_cb cb, void *arg);
int presence_room_members_page(struct redis_conn *rc, const char *room, const char *after,
                               uint32_t limit, presence_page_cb cb, void *arg);
/* result: the room's distinct users over all nodes (0: no such room). */
int presence_room_count(struct redis_conn *rc, const char *room, presence_count_cb cb, void *arg);

#endif
