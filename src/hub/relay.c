/* Cluster mode (--redis): the hub's rooms and users joined to the same rooms and users
 * of other nodes through Redis (docs/cluster.md).
 *
 * The position of every stream (room or user) is Redis's: a publish goes to the
 * cluster thread (cluster/node.h), which runs the publish script on the stream's
 * instance; the script assigns the seq, keeps the message in the stream and publishes
 * it on the stream's channel. Every node with local members is subscribed to that
 * channel, and delivers what it receives — its own messages included — in the order
 * of the positions, so all members on all nodes see one order.
 *
 * Each watched stream has a mirror here: the node's own hist_stream, whose position
 * follows Redis (epoch, top) and whose history is what this node received. Members
 * join, recover and go live against the mirror exactly as on a single node (the
 * mirror is appended to and posted to the shards under its lock, as stream_publish
 * does); what the mirror does not hold is read from Redis (relay_fetch).
 *
 * Anchoring: when a stream's subscription is in place (first watch, or again after
 * the subscriber connection came back), its position is read from Redis (the anchor
 * script). Messages received meanwhile are buffered. Then:
 *   - first anchor: the mirror takes the position; an anchor item tells the shards,
 *     whose pending joins and sessions complete from that position;
 *   - same epoch again: members go on from where they were, catching up from Redis
 *     what this node missed (the anchor item carries the old top);
 *   - another epoch (Redis lost its data, or the stream expired): members are told
 *     `recovered: false` with the new position.
 * An anchor item travels through the shards' inboxes, so it is ordered with the
 * deliveries exactly (posted under the mirror's lock, before the buffered messages).
 *
 * Publishing and reading from Redis are in relay_publish.c; the state both share is
 * in relay.h.
 *
 * Threads: relay_* entry points run on workers; the rest on the cluster thread;
 * results go back to a worker with loop_post. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/stats.h"
#include "cluster/node.h"
#include "cluster/presence.h"
#include "cluster/rstream.h"
#include "hub/internal.h"
#include "hub/relay.h"
#include "telemetry/spans.h"
#include "telemetry/trace.h"

#define BUFFER_MAX 10000 /* messages held per stream while its position is read */

struct pend {
    uint64_t seq;
    char epoch[RSTREAM_EPOCH_LEN + 1];
    struct wh_msg *frame;
};

struct after {
    struct after *next;
    void (*fn)(void *);
    void *arg;
};

/* A watched stream, on the cluster thread. */
struct rstate {
    enum hist_kind kind;
    struct room *room;     /* HIST_ROOM: a reference */
    struct wh_msg *target; /* HIST_USER: the user id, shared with the items */
    struct hist_stream *s; /* the mirror; a reference */
    int inst;
    bool anchoring; /* subscribed, position being read: messages are buffered */
    bool overflow;  /* the buffer overflowed: anchor again once this one is done */
    uint32_t gen;
    struct pend *buf;
    uint32_t n, cap;
    struct after *after; /* run once anchored (relay_after_anchor) */
    size_t name_len;
    UT_hash_handle hh;
    char name[]; /* "room:<id>" or "user:<id>" */
};

static void deliver(struct relay *r, struct rstate *rs, uint64_t seq, const char *epoch,
                    struct wh_msg *frame);

/* ---- helpers ---- */

static bool is_presence(const char *json, size_t len)
{
    static const char pre[] = "{\"type\":\"presence\"";
    return len >= sizeof pre - 1 && !memcmp(json, pre, sizeof pre - 1);
}

static struct rstate *find(struct relay *r, const char *name, size_t len)
{
    struct rstate *rs;
    HASH_FIND(hh, r->streams, name, len, rs);
    return rs;
}

static void post_item(struct hub *h, const struct item *tmpl)
{
    for (int i = 0; i < h->n_shards; i++) {
        struct item it = *tmpl;
        if (it.frame) msg_ref(it.frame);
        if (it.room) room_ref(it.room);
        if (it.target) msg_ref(it.target);
        inbox_push(&h->shards[i], &it);
    }
}

/* ---- watching ---- */

struct watch_job {
    struct relay *r;
    bool on;
    enum hist_kind kind;
    struct room *room;
    struct wh_msg *target;
    struct hist_stream *s;
    size_t name_len;
    char name[];
};

static void run_after(struct rstate *rs)
{
    struct after *a = rs->after;
    rs->after = NULL;
    while (a) { /* in the order they were parked */
        struct after *next = a->next;
        a->fn(a->arg);
        free(a);
        a = next;
    }
}

static void rstate_free(struct rstate *rs)
{
    run_after(rs); /* (they find the stream gone and do without) */
    for (uint32_t i = 0; i < rs->n; i++)
        msg_unref(rs->buf[i].frame);
    free(rs->buf);
    if (rs->room) room_unref(rs->room);
    if (rs->target) msg_unref(rs->target);
    if (rs->s) hist_unref(rs->s);
    free(rs);
}

static void watch_run(void *arg)
{
    struct watch_job *j = arg;
    struct relay *r = j->r;
    struct rstate *rs = find(r, j->name, j->name_len);
    if (j->on && !rs && (rs = calloc(1, sizeof *rs + j->name_len + 1))) {
        memcpy(rs->name, j->name, j->name_len);
        rs->name_len = j->name_len;
        rs->kind = j->kind;
        rs->room = j->room, j->room = NULL;
        rs->target = j->target, j->target = NULL;
        rs->s = j->s, j->s = NULL;
        rs->inst = node_instance_of(r->node, rs->name, rs->name_len);
        rs->anchoring = true; /* until the subscription is confirmed and read */
        HASH_ADD(hh, r->streams, name, rs->name_len, rs);
        node_watch(r->node, rs->name, rs->name_len, 1);
    } else if (!j->on && rs) {
        HASH_DEL(r->streams, rs);
        node_watch(r->node, rs->name, rs->name_len, -1);
        hist_set_live(rs->s, false); /* its position is no longer followed */
        rstate_free(rs);
    }
    if (j->room) room_unref(j->room);
    if (j->target) msg_unref(j->target);
    if (j->s) hist_unref(j->s);
    free(j);
}

void relay_watch(struct hub *h, enum hist_kind kind, const char *id, struct room *room,
                 struct hist_stream *s, bool on)
{
    struct relay *r = h->relay;
    char name[HIST_MAX_NAME + 8];
    size_t len = stream_name(kind, id, name, sizeof name);
    struct watch_job *j = len ? calloc(1, sizeof *j + len + 1) : NULL;
    if (!j) {
        log_error("cluster: out of memory, stream not followed", "stream=%s", id);
        return;
    }
    *j = (struct watch_job){.r = r, .on = on, .kind = kind, .name_len = len};
    memcpy(j->name, name, len);
    if (on) {
        j->room = room ? room_ref(room) : NULL;
        j->s = hist_ref(s);
        if (kind == HIST_USER && (j->target = msg_new(strlen(id) + 1)))
            memcpy(j->target->data, id, strlen(id) + 1);
    }
    if (node_post(r->node, watch_run, j) != 0) {
        if (j->room) room_unref(j->room);
        if (j->target) msg_unref(j->target);
        if (j->s) hist_unref(j->s);
        free(j);
    }
}

/* ---- anchoring ---- */

struct anchor_job {
    struct relay *r;
    uint32_t gen;
    size_t name_len;
    char name[];
};

static void anchor_start(struct relay *r, struct rstate *rs);

/* The anchor item: frame NULL; seq the position now; published_us the mirror's top
 * before (catch-up from there); presence set when the epoch changed. */
static void post_anchor(struct relay *r, struct rstate *rs, uint64_t top, uint64_t old_top,
                        bool reset)
{
    struct item it = {.kind = rs->kind == HIST_ROOM ? IT_ROOM_ANCHOR : IT_USER_ANCHOR,
                      .presence = reset,
                      .room = rs->room,
                      .target = rs->target,
                      .seq = top,
                      .published_us = old_top};
    post_item(r->h, &it);
}

static void anchor_done(void *arg, int ok, const struct rstream_published *res)
{
    struct anchor_job *j = arg;
    struct relay *r = j->r;
    struct rstate *rs = find(r, j->name, j->name_len);
    if (!rs || rs->gen != j->gen) { /* gone, or anchored again since */
        free(j);
        return;
    }
    free(j);
    if (ok != 0) {
        /* The command connection went down: anchored again when it is back. */
        log_warn("cluster: could not read a stream's position", "stream=%s", rs->name);
        return;
    }
    struct hist_stream *s = rs->s;
    hist_lock(s);
    bool was_live = hist_live(s);
    bool same = !strcmp(res->epoch, hist_epoch(s));
    uint64_t old_top = hist_top(s);
    if (!same || res->seq != old_top) hist_reset(s, res->epoch, res->seq);
    hist_set_live(s, true);
    rs->anchoring = false;
    /* First anchor: joins wait for it. Again with the same epoch: members catch up
     * from old_top. Another epoch: members are told. */
    bool reset = was_live && (!same || res->seq < old_top);
    if (reset) atomic_fetch_add(&r->resets, 1);
    if (was_live && same && res->seq > old_top) atomic_fetch_add(&r->catchups, 1);
    post_anchor(r, rs, res->seq, was_live && same ? old_top : res->seq, reset);
    hist_unlock(s);
    /* What arrived while the position was read: those after it, in order. */
    struct pend *buf = rs->buf;
    uint32_t n = rs->n;
    rs->buf = NULL, rs->n = rs->cap = 0;
    for (uint32_t i = 0; i < n; i++) {
        deliver(r, rs, buf[i].seq, buf[i].epoch, buf[i].frame);
        msg_unref(buf[i].frame);
    }
    free(buf);
    run_after(rs);
    if (rs->overflow) {
        rs->overflow = false;
        anchor_start(r, rs);
    }
}

static void anchor_start(struct relay *r, struct rstate *rs)
{
    rs->anchoring = true;
    rs->gen++;
    struct anchor_job *j = malloc(sizeof *j + rs->name_len + 1);
    if (!j) return;
    *j = (struct anchor_job){.r = r, .gen = rs->gen, .name_len = rs->name_len};
    memcpy(j->name, rs->name, rs->name_len + 1);
    struct hist_limits lim = hist_limits_for(&r->h->cfg.hist, rs->kind, rs->name + 5);
    struct redis_conn *rc = node_cmd(r->node, rs->inst);
    if (!rc ||
        rstream_anchor(rc, rs->name, rs->name_len, (uint32_t)lim.ttl_ms, anchor_done, j) != 0)
        free(j); /* down: anchored when the instance is back (on_state) */
}

static void on_subscribed(void *arg, const char *stream, size_t len)
{
    struct relay *r = arg;
    struct rstate *rs = find(r, stream, len);
    if (rs) anchor_start(r, rs);
}

static void on_state(void *arg, int inst, bool up)
{
    struct relay *r = arg;
    log_info(up ? "cluster: redis instance up" : "cluster: redis instance down", "instance=%d",
             inst);
    if (!up) return;
    /* Anchors that failed while the command connection was down. */
    struct rstate *rs, *tmp;
    HASH_ITER(hh, r->streams, rs, tmp)
    {
        if (rs->inst == inst && rs->anchoring) anchor_start(r, rs);
    }
}

/* ---- receiving ---- */

/* A message in the stream's order to the mirror and every shard, under the mirror's
 * lock (as stream_publish does for a single node). */
static void deliver(struct relay *r, struct rstate *rs, uint64_t seq, const char *epoch,
                    struct wh_msg *frame)
{
    struct hist_stream *s = rs->s;
    hist_lock(s);
    uint64_t top = hist_top(s);
    if (!strcmp(epoch, hist_epoch(s)) && seq <= top) { /* already had it */
        hist_unlock(s);
        return;
    }
    if (strcmp(epoch, hist_epoch(s)) || seq != top + 1) {
        /* A gap or a new epoch under a live subscription: read the position again
         * (members catch up or are told). */
        hist_unlock(s);
        log_info("cluster: stream out of step, reading its position again", "stream=%s", rs->name);
        anchor_start(r, rs);
        return;
    }
    size_t off = frame_header_len(frame);
    bool presence = is_presence((const char *)frame->data + off, frame->len - off);
    struct span sp;
    struct trace_ctx parent;
    bool traced = trace_on() &&
                  text_parent((const char *)frame->data + off, frame->len - off, &parent) &&
                  span_start(&sp, "cluster.receive", SPAN_CONSUMER, &parent);
    if (traced) {
        span_attr_str(&sp, "messaging.destination.name", rs->name, rs->name_len);
        span_attr_int(&sp, "wshub.seq", (int64_t)seq);
        span_attr_cstr(&sp, "wshub.node", node_id(r->node));
    }
    hist_append(s, frame, presence);
    struct item it = {.kind = rs->kind == HIST_ROOM ? IT_ROOM : IT_USER,
                      .presence = presence,
                      .frame = frame,
                      .room = rs->room,
                      .target = rs->target,
                      .seq = seq,
                      .published_us = stats_now_us()};
    post_item(r->h, &it);
    hist_unlock(s);
    if (traced) span_end(&sp);
    hist_enforce_cap(r->h->hist);
}

static void on_message(void *arg, const char *stream, size_t stream_len, const char *msg,
                       size_t len)
{
    struct relay *r = arg;
    atomic_fetch_add_explicit(&r->received, 1, memory_order_relaxed);
    if (!stream) { /* a broadcast: the JSON text as it is */
        struct wh_msg *frame = proto_text_frame(msg, len);
        if (!frame) return;
        struct item it = {.kind = IT_ALL, .frame = frame, .published_us = stats_now_us()};
        post_item(r->h, &it);
        msg_unref(frame);
        return;
    }
    struct rstate *rs = find(r, stream, stream_len);
    struct rstream_published hdr;
    const char *json;
    size_t jl;
    if (!rs || rstream_msg_parse(msg, len, &hdr, &json, &jl) != 0) return;
    struct wh_msg *frame = proto_text_frame(json, jl);
    if (!frame) return;
    if (rs->anchoring) {
        if (rs->n == BUFFER_MAX) {
            rs->overflow = true; /* read the position again after this anchor */
        } else {
            if (rs->n == rs->cap) {
                uint32_t nc = rs->cap ? rs->cap * 2 : 16;
                struct pend *nb = realloc(rs->buf, nc * sizeof *nb);
                if (!nb) {
                    rs->overflow = true;
                    msg_unref(frame);
                    return;
                }
                rs->buf = nb, rs->cap = nc;
            }
            rs->buf[rs->n].seq = hdr.seq;
            memcpy(rs->buf[rs->n].epoch, hdr.epoch, sizeof hdr.epoch);
            rs->buf[rs->n++].frame = msg_ref(frame);
        }
    } else {
        deliver(r, rs, hdr.seq, hdr.epoch, frame);
    }
    msg_unref(frame);
}

/* ---- life ---- */

int relay_start(struct hub *h)
{
    struct relay *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->h = h;
    /* Every command connection loads both sets of scripts. */
    size_t k = 0;
    for (const char *const *q = rstream_scripts; *q; q++)
        r->scripts[k++] = *q;
    for (const char *const *q = presence_scripts; *q && k < MAX_SCRIPTS; q++)
        r->scripts[k++] = *q;
    r->scripts[k] = NULL;
    struct node_opts o = {.urls = h->cfg.redis,
                          .n_urls = h->cfg.n_redis,
                          .preload = r->scripts,
                          .arg = r,
                          .on_message = on_message,
                          .on_subscribed = on_subscribed,
                          .on_state = on_state};
    if (!(r->node = node_start(&o))) {
        free(r);
        return -1;
    }
    h->relay = r;
    if (cpresence_start(h, r->node) != 0) {
        relay_stop(h);
        return -1;
    }
    return 0;
}

void hub_cluster_stop(struct hub *h)
{
    relay_stop(h);
}

void relay_stop(struct hub *h)
{
    struct relay *r = h->relay;
    if (!r) return;
    cpresence_stop(h);
    node_stop(r->node);
    cpresence_free(h);
    struct rstate *rs, *tmp;
    HASH_ITER(hh, r->streams, rs, tmp)
    {
        HASH_DEL(r->streams, rs);
        rstate_free(rs);
    }
    free(r);
    h->relay = NULL;
}

bool relay_after_anchor(struct hub *h, const char *room, void (*fn)(void *), void *arg)
{
    struct relay *r = h->relay;
    char name[HIST_MAX_NAME + 8];
    size_t nl = r ? stream_name(HIST_ROOM, room, name, sizeof name) : 0;
    struct rstate *rs = nl ? find(r, name, nl) : NULL;
    if (!rs || !rs->anchoring) return false;
    struct after *a = malloc(sizeof *a), **tail = &rs->after;
    if (!a) return false;
    *a = (struct after){NULL, fn, arg};
    while (*tail)
        tail = &(*tail)->next;
    *tail = a;
    return true;
}

bool hub_cluster(const struct hub *h)
{
    return h->relay != NULL;
}

bool hub_ready(const struct hub *h)
{
    return !h->relay || (node_ready(h->relay->node) && cpresence_registered(h));
}

const char *hub_node_id(const struct hub *h)
{
    return h->relay ? node_id(h->relay->node) : NULL;
}

void hub_cluster_stats(const struct hub *h, struct hub_cluster_stats *out)
{
    memset(out, 0, sizeof *out);
    struct relay *r = h->relay;
    if (!r) return;
    node_stats(r->node, &out->redis);
    out->instances = node_instances(r->node);
    out->published = atomic_load(&r->published);
    out->received = atomic_load(&r->received);
    out->unavailable = atomic_load(&r->unavailable);
    out->resets = atomic_load(&r->resets);
    out->catchups = atomic_load(&r->catchups);
    out->fetches = atomic_load(&r->fetches);
}

void relay_count_unavailable(struct hub *h)
{
    if (h->relay) atomic_fetch_add(&h->relay->unavailable, 1);
}

/* ---- joins and sessions waiting for a position ---- */

struct ask_job {
    struct relay *r;
    struct shard *sh;
    size_t name_len;
    char name[];
};

/* A join (or session) on sh waits for the stream's position: when the stream is
 * anchored, an anchor item that changes nothing else goes to sh alone, ordered with
 * the deliveries; while it is being anchored, the anchor's own item will come. */
static void ask_run(void *arg)
{
    struct ask_job *j = arg;
    struct rstate *rs = find(j->r, j->name, j->name_len);
    if (rs && !rs->anchoring) {
        hist_lock(rs->s);
        uint64_t top = hist_top(rs->s);
        struct item it = {.kind = rs->kind == HIST_ROOM ? IT_ROOM_ANCHOR : IT_USER_ANCHOR,
                          .room = rs->room ? room_ref(rs->room) : NULL,
                          .target = rs->target ? msg_ref(rs->target) : NULL,
                          .seq = top,
                          .published_us = top};
        inbox_push(j->sh, &it);
        hist_unlock(rs->s);
    }
    free(j);
}

int relay_ask(struct shard *sh, enum hist_kind kind, const char *id)
{
    struct relay *r = sh->hub->relay;
    char name[HIST_MAX_NAME + 8];
    size_t nl = stream_name(kind, id, name, sizeof name);
    struct ask_job *j = nl ? malloc(sizeof *j + nl + 1) : NULL;
    if (!j) return -1;
    *j = (struct ask_job){.r = r, .sh = sh, .name_len = nl};
    memcpy(j->name, name, nl + 1);
    if (node_post(r->node, ask_run, j) != 0) {
        free(j);
        return -1;
    }
    return 0;
}
