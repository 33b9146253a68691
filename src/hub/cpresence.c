/* Cluster mode: presence over every node (cluster/presence.h has the Redis side).
 *
 * This node's share is counted per node, not per connection: the registry reports a
 * user's first and last connection here and a user's first and last connection in a
 * room here (one Redis command each, in the order they happened: the registry posts
 * them under its lock to the cluster thread, which sends them on one connection).
 * Presence events are cluster-wide: "join" when a user is in a room on its first node,
 * "leave" when on none (and when a dead node's entries are swept), published through
 * the room's stream like any message.
 *
 * The node heartbeats every ttl / 3. When Redis says its entries may be gone (new
 * node, swept, Redis restarted: heartbeat 0, or a change refused as from an unknown
 * node) it resets its share and syncs the registry's whole state; a resync publishes
 * no events. Every node sweeps every `sweep` ms, so a dead node's users go within
 * ttl + sweep = --presence-timeout.
 *
 * Presence lives on the first Redis instance (docs/cluster.md). Listings read it: the
 * answer comes back on the asking worker's loop. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster/node.h"
#include "cluster/presence.h"
#include "hub/internal.h"
#include "telemetry/trace.h"

#define SWEEP_MAX  200 /* fields per sweep or reset call: ~2 ms of Redis */
#define SYNC_LIMIT 100000

enum pop { P_USER_ADD, P_USER_REMOVE, P_JOIN, P_LEAVE };

struct cpresence {
    struct hub *h;
    struct node *node;
    uint32_t ttl_ms, sweep_ms;
    struct timer beat, sweep;
    bool resyncing, again, sweeping;
    atomic_bool registered;          /* the first sync is done: this node's presence is in Redis */
    char pid[PRESENCE_NODE_LEN + 1]; /* this registration's id in Redis */
};

static void new_pid(struct cpresence *p)
{
    uint64_t r = trace_random64();
    for (int i = 0; i < PRESENCE_NODE_LEN; i++)
        p->pid[i] = "0123456789abcdef"[(r >> (4 * i)) & 15];
    p->pid[PRESENCE_NODE_LEN] = 0;
}

static struct redis_conn *conn(struct cpresence *p)
{
    return node_cmd(p->node, 0);
}

static void publish_event(struct cpresence *p, const char *room, const char *user,
                          const char *event)
{
    if (!p->h->cfg.presence) return;
    json_t *j = json_pack("{s:s, s:s, s:s}", "room_id", room, "user_id", user, "event", event);
    struct proto_payload pp = proto_json(j);
    relay_publish(p->h, HIST_ROOM, room, "presence", &pp, NULL, NULL, NULL);
    json_decref(j);
}

/* ---- resync: reset this node's share, then set it from the registry ---- */

static void resync_start(struct cpresence *p);

static void noop_count(void *arg, long long r)
{
    (void)arg;
    (void)r;
}

static void sync_done(void *arg, int ok, const struct presence_changes *ch)
{
    struct cpresence *p = arg;
    if (ok == 0 && ch->more) return; /* more batches follow */
    p->resyncing = false;
    if (ok != 0) {
        log_warn("cluster presence: sync failed, again at the next heartbeat", "result=%d", ok);
        return;
    }
    atomic_store(&p->registered, true);
    log_info("cluster presence: this node's entries are set", "node=%s", p->pid);
    if (p->again) {
        p->again = false;
        resync_start(p);
    }
}

static void sync_now(struct cpresence *p)
{
    struct registry *r = &p->h->reg;
    pthread_mutex_lock(&r->mu);
    size_t nu = ordset_count(&r->users), nm = 0;
    struct room *room, *rt;
    HASH_ITER(hh, r->rooms, room, rt)
    nm += HASH_COUNT(room->users);
    struct presence_user_count *users = calloc(nu ? nu : 1, sizeof *users);
    struct presence_member_count *mem = calloc(nm ? nm : 1, sizeof *mem);
    char **strs = calloc(nu + 2 * nm + 1, sizeof *strs);
    size_t iu = 0, im = 0, is = 0;
    if (users && mem && strs) {
        struct ordset_pos pos;
        for (const struct online_user *u = ordset_after(&r->users, NULL, &pos); u;
             u = ordset_next(&r->users, &pos)) {
            if (!(strs[is] = strdup(ou_key(u)))) break;
            users[iu++] = (struct presence_user_count){strs[is++], 1};
        }
        HASH_ITER(hh, r->rooms, room, rt)
        {
            struct room_user *x, *xt;
            HASH_ITER(hh, room->users, x, xt)
            {
                if (!(strs[is] = strdup(room->id))) break;
                if (!(strs[is + 1] = strdup(x->user))) break;
                mem[im++] = (struct presence_member_count){strs[is], strs[is + 1], 1};
                is += 2;
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!users || !mem || !strs || iu + im > SYNC_LIMIT * 10 ||
        presence_sync(conn(p), p->pid, users, iu, mem, im, sync_done, p) != 0) {
        p->resyncing = false;
        log_warn("cluster presence: could not sync", "users=%zu memberships=%zu", iu, im);
    }
    for (size_t i = 0; strs && i < is; i++)
        free(strs[i]);
    free(strs);
    free(users);
    free(mem);
}

static void reset_done(void *arg, int ok, const struct presence_changes *ch)
{
    struct cpresence *p = arg;
    if (ok != 0) {
        p->resyncing = false;
        return;
    }
    if (ch->more) {
        if (!conn(p) || presence_reset(conn(p), p->pid, SWEEP_MAX, reset_done, p) != 0)
            p->resyncing = false;
        return;
    }
    sync_now(p);
}

static void beat_done(void *arg, long long result)
{
    struct cpresence *p = arg;
    if (result == 0) resync_start(p); /* our entries may be gone: set them again */
}

static void resync_start(struct cpresence *p)
{
    if (p->resyncing) {
        p->again = true;
        return;
    }
    struct redis_conn *rc = conn(p);
    if (!rc) return;
    /* A node not listed gets its heartbeat first (changes from it are refused). */
    log_info("cluster presence: setting this node's entries again", "node=%s", p->pid);
    p->resyncing = true;
    /* A new presence id for each registration: changes still on their way from an
     * earlier connection (delayed by a network that held them) are refused as from an
     * unknown node instead of counting twice, and the old id's entries are swept. */
    new_pid(p);
    if (presence_register(rc, p->pid, p->ttl_ms, noop_count, NULL) != 0 ||
        presence_reset(rc, p->pid, SWEEP_MAX, reset_done, p) != 0)
        p->resyncing = false;
}

/* How soon a beat that found Redis down looks again. The first beat after Redis is
 * back is what (re-)registers this node, and the node is not ready until then: at
 * start-up (the first beat often runs before the connection is made) and after an
 * outage, waiting a whole beat period (ttl/3: 8.3 s at the default --presence-timeout)
 * kept the node unready that long for nothing. */
#define BEAT_RETRY_MS 100u

static void on_beat(struct loop *loop, struct timer *t)
{
    struct cpresence *p = (struct cpresence *)((char *)t - offsetof(struct cpresence, beat));
    struct redis_conn *rc = conn(p);
    bool up = rc && redis_conn_up(rc);
    if (up) presence_heartbeat(rc, p->pid, p->ttl_ms, beat_done, p);
    uint32_t next = p->ttl_ms / 3 ? p->ttl_ms / 3 : 1;
    if (!up && next > BEAT_RETRY_MS) next = BEAT_RETRY_MS;
    loop_timer_arm(loop, t, next);
}

/* ---- sweeping dead nodes ---- */

static void sweep_done(void *arg, int ok, const struct presence_changes *ch)
{
    struct cpresence *p = arg;
    p->sweeping = false;
    if (ok != 0) return;
    for (size_t i = 0; i < ch->n_pairs; i++)
        publish_event(p, ch->pairs[i].room, ch->pairs[i].user, "leave");
    if (ch->nodes_removed)
        log_info("cluster presence: a node's entries expired", "nodes=%u users=%zu",
                 ch->nodes_removed, ch->n_users);
    if (ch->more && conn(p) && presence_sweep(conn(p), SWEEP_MAX, sweep_done, p) == 0)
        p->sweeping = true;
}

static void on_sweep(struct loop *loop, struct timer *t)
{
    struct cpresence *p = (struct cpresence *)((char *)t - offsetof(struct cpresence, sweep));
    struct redis_conn *rc = conn(p);
    if (!p->sweeping && rc && redis_conn_up(rc) &&
        presence_sweep(rc, SWEEP_MAX, sweep_done, p) == 0)
        p->sweeping = true;
    loop_timer_arm(loop, t, p->sweep_ms);
}

/* ---- this node's changes ---- */

struct pjob {
    struct cpresence *p;
    enum pop op;
    char *room; /* NULL for user ops */
    char user[];
};

static void op_done(void *arg, long long result)
{
    struct pjob *j = arg;
    struct cpresence *p = j->p;
    if (result == PRESENCE_UNKNOWN_NODE) {
        resync_start(p); /* the sync sets this change too */
    } else if (result == 1 && j->op == P_JOIN) {
        publish_event(p, j->room, j->user, "join");
    } else if (result == 0 && j->op == P_LEAVE) {
        publish_event(p, j->room, j->user, "leave");
    }
    free(j->room);
    free(j);
}

static void op_send(void *arg);

/* A join's presence event must come after the room's position that the joiner is
 * given (as on one node, where the joiner receives its own "join"): while the room is
 * being anchored on this node, the change waits for it. */
static void op_run(void *arg)
{
    struct pjob *j = arg;
    if (j->op == P_JOIN && relay_after_anchor(j->p->h, j->room, op_send, j)) return;
    op_send(j);
}

static void op_send(void *arg)
{
    struct pjob *j = arg;
    struct cpresence *p = j->p;
    struct redis_conn *rc = conn(p);
    const char *node = p->pid;
    int rv = -1;
    /* Sent even while a resync runs: the sync sets counts (it does not add), so a change
     * sent meanwhile is not counted twice, and its event is not lost. */
    if (rc) {
        switch (j->op) {
        case P_USER_ADD:
            rv = presence_user_add(rc, node, j->user, op_done, j);
            break;
        case P_USER_REMOVE:
            rv = presence_user_remove(rc, node, j->user, op_done, j);
            break;
        case P_JOIN:
            rv = presence_join(rc, node, j->room, j->user, op_done, j);
            break;
        case P_LEAVE:
            rv = presence_leave(rc, node, j->room, j->user, op_done, j);
            break;
        }
    }
    if (rv != 0) {
        free(j->room);
        free(j);
    }
}

static void post_op(struct hub *h, enum pop op, const char *room, const char *user)
{
    struct cpresence *p = h->cpres;
    if (!p) return;
    size_t ul = strlen(user) + 1;
    struct pjob *j = malloc(sizeof *j + ul);
    if (!j) return;
    j->p = p;
    j->op = op;
    j->room = room ? strdup(room) : NULL;
    memcpy(j->user, user, ul);
    if ((room && !j->room) || node_post(p->node, op_run, j) != 0) {
        free(j->room);
        free(j);
    }
}

void cpresence_user(struct hub *h, const char *user, bool online)
{
    post_op(h, online ? P_USER_ADD : P_USER_REMOVE, NULL, user);
}

void cpresence_member(struct hub *h, const char *room, const char *user, bool in)
{
    post_op(h, in ? P_JOIN : P_LEAVE, room, user);
}

/* ---- listings ---- */

struct qjob {
    struct cpresence *p;
    struct loop *origin;
    enum hub_listing kind;
    hub_page_fn fn;
    void *arg;
    int status;
    struct hub_page pg;
    uint32_t limit;
    char *after, *room;
};

static void q_back(struct loop *loop, void *arg)
{
    (void)loop;
    struct qjob *j = arg;
    j->fn(j->arg, j->status, &j->pg);
    hub_page_free(&j->pg);
    free(j->after);
    free(j->room);
    free(j);
}

static void q_page(void *arg, int ok, const struct presence_page *pg)
{
    struct qjob *j = arg;
    j->status = ok == 0 ? 0 : ok == PRESENCE_NOT_FOUND ? HUB_LIST_NOT_FOUND : HUB_LIST_FAILED;
    if (j->status == HUB_LIST_FAILED) relay_count_unavailable(j->p->h);
    if (ok == 0) {
        j->pg.items = json_array();
        for (size_t i = 0; i < pg->n; i++) {
            json_t *it = j->kind == HUB_LIST_ROOMS
                             ? json_pack("{s:s, s:I}", "room_id", pg->ids[i], "members",
                                         (json_int_t)pg->members[i])
                             : json_string(pg->ids[i]);
            json_array_append_new(j->pg.items, it);
        }
        j->pg.next = pg->next ? json_string(pg->next) : NULL;
        j->pg.total = (size_t)pg->total;
    }
    if (loop_post(j->origin, q_back, j) != 0) {
        hub_page_free(&j->pg);
        free(j->after);
        free(j->room);
        free(j);
    }
}

static void q_run(void *arg)
{
    struct qjob *j = arg;
    struct redis_conn *rc = conn(j->p);
    int rv = -1;
    if (rc) {
        switch (j->kind) {
        case HUB_LIST_ONLINE:
            rv = presence_online_page(rc, j->after, j->limit, q_page, j);
            break;
        case HUB_LIST_ROOMS:
            rv = presence_rooms_page(rc, j->after, j->limit, q_page, j);
            break;
        case HUB_LIST_MEMBERS:
            rv = presence_room_members_page(rc, j->room, j->after, j->limit, q_page, j);
            break;
        }
    }
    if (rv != 0) q_page(j, PRESENCE_FAILED, NULL);
}

int hub_list_async(struct hub *h, enum hub_listing kind, const char *room, const char *after,
                   size_t limit, struct loop *origin, hub_page_fn fn, void *arg)
{
    struct cpresence *p = h->cpres;
    if (!p || !hub_ready(h)) {
        relay_count_unavailable(h);
        return -1;
    }
    struct qjob *j = calloc(1, sizeof *j);
    if (!j) return -1;
    *j = (struct qjob){
        .p = p, .origin = origin, .kind = kind, .fn = fn, .arg = arg, .limit = (uint32_t)limit};
    if ((after && !(j->after = strdup(after))) || (room && !(j->room = strdup(room))) ||
        node_post(p->node, q_run, j) != 0) {
        free(j->after);
        free(j->room);
        free(j);
        return -1;
    }
    return 0;
}

/* ---- life ---- */

static void start_timers(void *arg)
{
    struct cpresence *p = arg;
    struct loop *loop = node_loop(p->node);
    loop_timer_init(&p->beat, on_beat);
    loop_timer_init(&p->sweep, on_sweep);
    loop_timer_arm(loop, &p->beat, 0);
    loop_timer_arm(loop, &p->sweep, p->sweep_ms);
}

static void stop_timers(void *arg)
{
    struct cpresence *p = arg;
    loop_timer_cancel(node_loop(p->node), &p->beat);
    loop_timer_cancel(node_loop(p->node), &p->sweep);
}

int cpresence_start(struct hub *h, struct node *node)
{
    struct cpresence *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->h = h;
    p->node = node;
    uint32_t timeout = h->cfg.presence_timeout_ms ? h->cfg.presence_timeout_ms : 30000;
    p->sweep_ms = timeout / 4 < 5000 ? timeout / 4 : 5000;
    if (!p->sweep_ms) p->sweep_ms = 1;
    p->ttl_ms = timeout - p->sweep_ms;
    new_pid(p);
    if (node_post(node, start_timers, p) != 0) {
        free(p);
        return -1;
    }
    h->cpres = p;
    return 0;
}

/* Before the node stops: its timers go (from the cluster thread). */
void cpresence_stop(struct hub *h)
{
    struct cpresence *p = h->cpres;
    if (!p) return;
    while (node_post(p->node, stop_timers, p) != 0)
        ;
}

bool cpresence_registered(const struct hub *h)
{
    return h->cpres && atomic_load(&h->cpres->registered);
}

void cpresence_free(struct hub *h)
{
    free(h->cpres);
    h->cpres = NULL;
}
