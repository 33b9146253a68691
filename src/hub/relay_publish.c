/* Cluster mode: publishes handed to Redis and reads of what a stream's mirror does
 * not hold (docs/cluster.md). The watched streams, their mirrors and the delivery of
 * what Redis publishes are relay.c's.
 *
 * A publish (relay_publish, hub_publish_async) is built on the worker, run on the
 * cluster thread (the stream's publish script on its Redis instance) and answered on
 * the worker it came from (a client's ack, or the caller's callback on its loop). A
 * read (relay_fetch) goes the same way and hands the frames to the client.
 *
 * Threads: relay_publish, hub_publish_async and relay_fetch on workers; *_run and
 * *_done on the cluster thread; *_back on the origin's loop. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cluster/node.h"
#include "cluster/rstream.h"
#include "hub/internal.h"
#include "hub/relay.h"
#include "telemetry/spans.h"
#include "telemetry/trace.h"

#define FETCH_MAX 256 /* entries per read from Redis */
/* Publishes handed to Redis and not answered yet, over the node: past this, new ones
 * are refused `unavailable` rather than queued without bound while Redis is slow
 * (each waits at most the command timeout, 5 s). */
#define INFLIGHT_MAX 200000

struct pub_job {
    struct relay *r;
    struct shard *origin;
    struct loop *cb_loop; /* hub_publish_async: where cb runs */
    void (*cb)(void *arg, int ok, uint64_t seq);
    void *cb_arg;
    struct client *c; /* held (client_hold) until the answer is back on origin */
    json_t *id;       /* the envelope's, for the ack; touched on origin only */
    bool broadcast;
    int inst, ok;
    uint32_t maxlen, ttl_ms;
    uint64_t seq;
    struct span *span; /* redis.publish, when the message is traced */
    char *text;
    size_t text_len, split, name_len;
    char name[];
};

static void pub_span_end(struct pub_job *j)
{
    if (!j->span) return;
    if (j->ok == 0 && j->seq) span_attr_int(j->span, "wshub.seq", (int64_t)j->seq);
    if (j->ok != 0) span_set_status(j->span, SPAN_ERROR, "unavailable");
    span_end(j->span);
    free(j->span);
    j->span = NULL;
}

static void pub_back(struct loop *loop, void *arg)
{
    (void)loop;
    struct pub_job *j = arg;
    const char *room = !strncmp(j->name, "room:", 5) ? j->name + 5 : NULL;
    client_publish_done(j->c, j->id, room, j->seq, j->ok == 0);
    json_decref(j->id);
    free(j->text);
    free(j);
}

static void pub_cb_back(struct loop *loop, void *arg)
{
    (void)loop;
    struct pub_job *j = arg;
    j->cb(j->cb_arg, j->ok == 0, j->seq);
    free(j->text);
    free(j);
}

static void pub_finish(struct pub_job *j)
{
    pub_span_end(j);
    atomic_fetch_sub_explicit(&j->r->inflight, 1, memory_order_relaxed);
    if (j->ok != 0) atomic_fetch_add(&j->r->unavailable, 1);
    if (j->cb) {
        if (loop_post(j->cb_loop, pub_cb_back, j) == 0) return;
        log_error("cluster: out of memory, a publish answer is lost", "stream=%s", j->name);
        free(j->text);
        free(j);
        return;
    }
    if (j->c && loop_post(j->origin->loop, pub_back, j) == 0) return;
    json_decref(j->id); /* no client waits (or no memory to tell it) */
    free(j->text);
    free(j);
}

static void pub_done(void *arg, int ok, const struct rstream_published *res)
{
    struct pub_job *j = arg;
    j->ok = ok;
    if (ok == 0) j->seq = res->seq;
    pub_finish(j);
}

static void bcast_done(struct redis_conn *rc, const redisReply *reply, void *arg)
{
    (void)rc;
    struct pub_job *j = arg;
    j->ok = reply && reply->type == REDIS_REPLY_INTEGER ? 0 : -1;
    pub_finish(j);
}

static void pub_run(void *arg)
{
    struct pub_job *j = arg;
    struct redis_conn *rc = node_cmd(j->r->node, j->inst);
    int rv = -1;
    struct trace_ctx parent;
    if (trace_on() && text_parent(j->text, j->text_len, &parent) &&
        (j->span = malloc(sizeof *j->span))) {
        if (span_start(j->span, "redis.publish", SPAN_CLIENT, &parent)) {
            span_attr_cstr(j->span, "db.system", "redis");
            span_attr_str(j->span, "messaging.destination.name", j->broadcast ? "all" : j->name,
                          j->broadcast ? 3 : j->name_len);
            span_attr_int(j->span, "wshub.redis.instance", j->inst);
        } else {
            free(j->span);
            j->span = NULL;
        }
    }
    if (!rc) {
    } else if (j->broadcast) {
        const char *argv[3] = {"PUBLISH", "wshub:{all}", j->text};
        size_t lens[3] = {7, 11, j->text_len};
        rv = redis_conn_command(rc, bcast_done, j, 3, argv, lens);
    } else {
        rv = rstream_publish_split(rc, j->name, j->name_len, j->text, j->split, j->text + j->split,
                                   j->text_len - j->split, j->maxlen, j->ttl_ms, pub_done, j);
    }
    if (rv != 0) {
        j->ok = -1;
        pub_finish(j);
    }
}

static int publish(struct hub *h, enum hist_kind kind, const char *id, const char *type,
                   const struct proto_payload *payload, const char *from, struct client *c,
                   json_t *env_id, struct loop *cb_loop,
                   void (*cb)(void *arg, int ok, uint64_t seq), void *cb_arg)
{
    struct relay *r = h->relay;
    if (!node_ready(r->node) ||
        atomic_load_explicit(&r->inflight, memory_order_relaxed) >= INFLIGHT_MAX) {
        atomic_fetch_add(&r->unavailable, 1);
        return -1;
    }
    char name[HIST_MAX_NAME + 8];
    size_t nl = id ? stream_name(kind, id, name, sizeof name) : 0;
    struct pub_job *j = calloc(1, sizeof *j + nl + 1);
    if (!j) return -1;
    /* hub.broadcast and websocket.send, as for one node: the send span's ids go into
     * the message, and the nodes that receive it continue the trace from them. */
    struct pub_trace pt;
    pub_trace_begin(&pt, type, !id ? "all" : kind == HIST_ROOM ? "room" : "user", id);
    j->r = r;
    j->broadcast = id == NULL;
    if (id) {
        memcpy(j->name, name, nl);
        j->name_len = nl;
        j->inst = node_instance_of(r->node, name, nl);
        struct hist_limits lim = hist_limits_for(&h->cfg.hist, kind, id);
        j->maxlen = lim.size ? lim.size : 1; /* Redis keeps at least the last one */
        j->ttl_ms = (uint32_t)lim.ttl_ms;
        j->text = proto_text_split(type, payload, from, kind == HIST_ROOM ? id : NULL, &j->text_len,
                                   &j->split);
    } else {
        struct wh_msg *f = proto_frame(type, payload, from, NULL, 0, NULL);
        if (f) { /* the JSON text, without the frame header */
            size_t off = frame_header_len(f);
            if ((j->text = malloc(f->len - off))) memcpy(j->text, f->data + off, f->len - off);
            j->text_len = f->len - off;
            msg_unref(f);
        }
    }
    pub_trace_end(&pt, 0); /* the recipients are on every node: not counted here */
    if (!j->text) {
        free(j);
        return -1;
    }
    if (c) {
        j->c = client_hold(c);
        j->origin = client_sh(c);
        j->id = env_id ? json_incref(env_id) : NULL;
    }
    j->cb_loop = cb_loop;
    j->cb = cb;
    j->cb_arg = cb_arg;
    atomic_fetch_add_explicit(&r->inflight, 1, memory_order_relaxed);
    if (node_post(r->node, pub_run, j) != 0) {
        atomic_fetch_sub_explicit(&r->inflight, 1, memory_order_relaxed);
        if (c) client_release(c);
        json_decref(j->id);
        free(j->text);
        free(j);
        return -1;
    }
    atomic_fetch_add_explicit(&r->published, 1, memory_order_relaxed);
    return 0;
}

int relay_publish(struct hub *h, enum hist_kind kind, const char *id, const char *type,
                  const struct proto_payload *payload, const char *from, struct client *c,
                  json_t *env_id)
{
    return publish(h, kind, id, type, payload, from, c, env_id, NULL, NULL, NULL);
}

int hub_publish_async(struct hub *h, int target, const char *id, const char *type,
                      const struct proto_payload *payload, struct loop *origin,
                      void (*done)(void *arg, int ok, uint64_t seq), void *arg)
{
    if (!h->relay) return -1;
    enum hist_kind kind = target == HUB_TARGET_USER ? HIST_USER : HIST_ROOM;
    return publish(h, kind, target == HUB_TARGET_ALL ? NULL : id, type, payload, NULL, NULL, NULL,
                   origin, done, arg);
}

/* ---- reading from Redis what the mirror does not hold ---- */

struct fetch_job {
    struct relay *r;
    struct shard *origin;
    struct client *c;
    bool user;
    int status;
    uint64_t since, top;
    char epoch[RSTREAM_EPOCH_LEN + 1];
    uint32_t max, n;
    struct wh_msg **frames;
    size_t name_len;
    char name[];
};

static void fetch_back(struct loop *loop, void *arg)
{
    (void)loop;
    struct fetch_job *j = arg;
    struct relay_fetched res = {.ok = j->status == RSTREAM_READ_OK,
                                .since = j->since,
                                .top = j->top,
                                .frames = j->frames,
                                .n = j->n,
                                .user = j->user,
                                .room = j->user ? NULL : j->name + 5};
    client_fetch_done(j->c, &res);
    for (uint32_t i = 0; i < j->n; i++)
        msg_unref(j->frames[i]);
    free(j->frames);
    free(j);
}

static void fetch_done(void *arg, enum rstream_read_status st, const char *epoch, uint64_t top,
                       const struct rstream_entry *e, size_t n)
{
    (void)epoch;
    struct fetch_job *j = arg;
    j->status = st;
    j->top = top;
    if (st == RSTREAM_READ_OK && n && (j->frames = calloc(n, sizeof *j->frames))) {
        for (size_t i = 0; i < n; i++) {
            if (!(j->frames[i] = proto_text_frame(e[i].data, e[i].len))) {
                j->status = RSTREAM_READ_FAILED;
                break;
            }
            j->n++;
        }
    } else if (st == RSTREAM_READ_OK && n) {
        j->status = RSTREAM_READ_FAILED;
    }
    if (loop_post(j->origin->loop, fetch_back, j) != 0) {
        for (uint32_t i = 0; i < j->n; i++)
            msg_unref(j->frames[i]);
        free(j->frames);
        client_release(j->c);
        free(j);
    }
}

static void fetch_run(void *arg)
{
    struct fetch_job *j = arg;
    atomic_fetch_add_explicit(&j->r->fetches, 1, memory_order_relaxed);
    int inst = node_instance_of(j->r->node, j->name, j->name_len);
    struct redis_conn *rc = node_cmd(j->r->node, inst);
    if (!rc || rstream_read_since(rc, j->name, j->name_len, j->epoch, j->since, j->max, fetch_done,
                                  j) != 0)
        fetch_done(j, RSTREAM_READ_FAILED, "", 0, NULL, 0);
}

int relay_fetch(struct client *c, bool user, const char *id, const char *epoch, uint64_t since,
                uint32_t max)
{
    struct relay *r = client_sh(c)->hub->relay;
    char name[HIST_MAX_NAME + 8];
    size_t nl = stream_name(user ? HIST_USER : HIST_ROOM, id, name, sizeof name);
    if (!nl || strlen(epoch) != RSTREAM_EPOCH_LEN) return -1;
    struct fetch_job *j = calloc(1, sizeof *j + nl + 1);
    if (!j) return -1;
    *j = (struct fetch_job){.r = r,
                            .origin = client_sh(c),
                            .c = client_hold(c),
                            .user = user,
                            .since = since,
                            .max = max ? (max < FETCH_MAX ? max : FETCH_MAX) : FETCH_MAX,
                            .name_len = nl};
    memcpy(j->epoch, epoch, RSTREAM_EPOCH_LEN + 1);
    memcpy(j->name, name, nl);
    if (node_post(r->node, fetch_run, j) != 0) {
        client_release(c);
        free(j);
        return -1;
    }
    return 0;
}
