/* The cluster thread and its Redis connections; see node.h for the contract. */
#include "cluster/node.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uthash.h>

#include "base/log.h"
#include "base/msg.h"
#include "proto/envelope.h"

#define SUB_BATCH 256 /* channels per SUBSCRIBE when subscribing again */

struct watch {
    int refs;
    int inst;
    UT_hash_handle hh;
    char name[]; /* the stream */
};

struct instance {
    struct node *n;
    int idx;
    uint64_t key; /* rendezvous hash seed: of the address */
    struct redis_conn *cmd, *sub;
    bool cmd_up, sub_up;
};

struct node {
    struct node_opts o;
    struct loop *loop;
    pthread_t thread;
    bool started;
    char id[NODE_ID_LEN + 1];
    int n_inst;
    struct instance inst[NODE_MAX_REDIS];
    atomic_int up; /* instances with both connections up */
    atomic_uint_fast64_t n_watches;
    struct watch *watches;
};

/* FNV-1a then a finaliser: fast, and good enough to spread names over instances. */
static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return mix(h);
}

int node_instance_of(const struct node *n, const char *stream, size_t len)
{
    int best = 0;
    uint64_t best_h = 0;
    for (int i = 0; i < n->n_inst; i++) {
        uint64_t h = hash_bytes(n->inst[i].key, stream, len);
        if (i == 0 || h > best_h) best = i, best_h = h;
    }
    return best;
}

static size_t channel_of(const char *stream, size_t len, char *out, size_t cap)
{
    if (len + 8 > cap) return 0;
    memcpy(out, "wshub:{", 7);
    memcpy(out + 7, stream, len);
    out[7 + len] = '}';
    return len + 8;
}

static void subscribe_one(struct node *n, struct watch *w, bool on)
{
    struct instance *in = &n->inst[w->inst];
    if (!in->sub_up) return; /* subscribed again when it comes back */
    char ch[300];
    size_t len = channel_of(w->name, strlen(w->name), ch, sizeof ch);
    const char *argv[1] = {ch};
    if (len) redis_conn_subscribe(in->sub, on, 1, argv, &len);
}

void node_watch(struct node *n, const char *stream, size_t len, int delta)
{
    struct watch *w;
    HASH_FIND(hh, n->watches, stream, len, w);
    if (!w) {
        if (delta <= 0 || len > 256) return;
        w = calloc(1, sizeof *w + len + 1);
        if (!w) return;
        memcpy(w->name, stream, len);
        w->inst = node_instance_of(n, stream, len);
        HASH_ADD(hh, n->watches, name, len, w);
        atomic_fetch_add(&n->n_watches, 1);
    }
    int before = w->refs;
    w->refs += delta;
    if (before <= 0 && w->refs > 0) subscribe_one(n, w, true);
    if (w->refs <= 0) {
        subscribe_one(n, w, false);
        HASH_DEL(n->watches, w);
        atomic_fetch_sub(&n->n_watches, 1);
        free(w);
    }
}

/* A subscriber connection came (back): every channel it should have, in batches. */
static void resubscribe(struct instance *in)
{
    struct node *n = in->n;
    const char *argv[SUB_BATCH];
    size_t lens[SUB_BATCH];
    char *bufs[SUB_BATCH];
    int k = 0;
    struct watch *w, *tmp;
    HASH_ITER(hh, n->watches, w, tmp)
    {
        if (w->inst != in->idx) continue;
        size_t len = strlen(w->name) + 8;
        if (!(bufs[k] = malloc(len))) continue;
        channel_of(w->name, len - 8, bufs[k], len);
        argv[k] = bufs[k], lens[k] = len, k++;
        if (k == SUB_BATCH) {
            redis_conn_subscribe(in->sub, true, k, argv, lens);
            while (k)
                free(bufs[--k]);
        }
    }
    if (k) redis_conn_subscribe(in->sub, true, k, argv, lens);
    while (k)
        free(bufs[--k]);
    if (in->idx == 0) { /* broadcasts */
        const char *all = "wshub:{all}";
        size_t al = strlen(all);
        redis_conn_subscribe(in->sub, true, 1, &all, &al);
    }
}

static void report_state(struct instance *in, bool was)
{
    bool now = in->cmd_up && in->sub_up;
    if (now == was) return;
    atomic_fetch_add(&in->n->up, now ? 1 : -1);
    if (in->n->o.on_state) in->n->o.on_state(in->n->o.arg, in->idx, now);
}

static void on_cmd_state(struct redis_conn *rc, bool up, void *arg)
{
    (void)rc;
    struct instance *in = arg;
    bool was = in->cmd_up && in->sub_up;
    in->cmd_up = up;
    report_state(in, was);
}

static void on_sub_state(struct redis_conn *rc, bool up, void *arg)
{
    (void)rc;
    struct instance *in = arg;
    bool was = in->cmd_up && in->sub_up;
    in->sub_up = up;
    if (up) resubscribe(in);
    report_state(in, was);
}

/* "wshub:{<stream>}" back to the stream; NULL for a foreign channel. */
static const char *stream_of(const char *ch, size_t len, size_t *out_len)
{
    if (len < 9 || memcmp(ch, "wshub:{", 7) || ch[len - 1] != '}') return NULL;
    *out_len = len - 8;
    return ch + 7;
}

static void on_sub_message(struct redis_conn *rc, const char *ch, size_t ch_len, const char *msg,
                           size_t len, void *arg)
{
    (void)rc;
    struct instance *in = arg;
    struct node *n = in->n;
    size_t sl;
    const char *s = stream_of(ch, ch_len, &sl);
    if (!s) return;
    if (sl == 3 && !memcmp(s, "all", 3)) s = NULL, sl = 0;
    n->o.on_message(n->o.arg, s, sl, msg, len);
}

static void on_subscribed(struct redis_conn *rc, const char *ch, size_t ch_len, void *arg)
{
    (void)rc;
    struct instance *in = arg;
    struct node *n = in->n;
    size_t sl;
    const char *s = stream_of(ch, ch_len, &sl);
    if (!s || (sl == 3 && !memcmp(s, "all", 3))) return;
    struct watch *w;
    HASH_FIND(hh, n->watches, s, sl, w);
    if (w && n->o.on_subscribed) n->o.on_subscribed(n->o.arg, s, sl);
}

static void *run(void *arg)
{
    struct node *n = arg;
    loop_run(n->loop);
    /* Pending commands' callbacks run now (reply NULL); from here on the node is
     * down for good, and late posts find no connection. */
    for (int i = 0; i < n->n_inst; i++) {
        struct redis_conn *cmd = n->inst[i].cmd, *sub = n->inst[i].sub;
        n->inst[i].cmd = n->inst[i].sub = NULL;
        n->inst[i].cmd_up = n->inst[i].sub_up = false;
        redis_conn_destroy(cmd);
        redis_conn_destroy(sub);
    }
    atomic_store(&n->up, 0);
    loop_drain_tasks(n->loop);
    loop_run_posts(n->loop);
    proto_thread_cleanup(); /* this thread's buffers: messages were built here */
    msg_thread_cleanup();
    return NULL;
}

struct node *node_start(const struct node_opts *o)
{
    if (o->n_urls < 1 || o->n_urls > NODE_MAX_REDIS) return NULL;
    struct node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->o = *o;
    n->n_inst = o->n_urls;
    uint8_t b[NODE_ID_LEN / 2];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        uint64_t t = clock_now_ms() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)n;
        memcpy(b, &t, sizeof b);
    }
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(n->id + 2 * i, 3, "%02x", b[i]);
    for (int i = 0; i < n->n_inst; i++) {
        char addr[300];
        int len = snprintf(addr, sizeof addr, "%s:%u/%u", o->urls[i].host, o->urls[i].port,
                           o->urls[i].db);
        n->inst[i] = (struct instance){.n = n, .idx = i, .key = hash_bytes(0, addr, (size_t)len)};
    }
    n->loop = loop_create();
    if (!n->loop) {
        free(n);
        return NULL;
    }
    /* Created here, before the thread exists (so readers of the stats see them):
     * nothing runs on the loop until the thread does. */
    for (int i = 0; i < n->n_inst; i++) {
        struct instance *in = &n->inst[i];
        struct redis_conn_opts co = {.url = o->urls[i], .preload = o->preload};
        in->cmd = redis_conn_create(n->loop, &co, on_cmd_state, in);
        struct redis_conn_opts so = {
            .url = o->urls[i], .on_message = on_sub_message, .on_subscribed = on_subscribed};
        in->sub = redis_conn_create(n->loop, &so, on_sub_state, in);
        if (!in->cmd || !in->sub) {
            for (int k = 0; k <= i; k++) {
                redis_conn_destroy(n->inst[k].cmd);
                redis_conn_destroy(n->inst[k].sub);
            }
            loop_destroy(n->loop);
            free(n);
            return NULL;
        }
    }
    if (pthread_create(&n->thread, NULL, run, n) != 0) {
        for (int k = 0; k < n->n_inst; k++) {
            redis_conn_destroy(n->inst[k].cmd);
            redis_conn_destroy(n->inst[k].sub);
        }
        loop_destroy(n->loop);
        free(n);
        return NULL;
    }
    n->started = true;
    return n;
}

static void stop_loop(struct loop *loop, void *arg)
{
    (void)arg;
    loop_stop(loop);
}

void node_stop(struct node *n)
{
    if (!n) return;
    /* From the loop's own thread: a stop flag set from here would wait for an event. */
    while (loop_post(n->loop, stop_loop, NULL) != 0)
        ;
    pthread_join(n->thread, NULL);
    loop_run_posts(n->loop); /* posted after the thread ended: they fail cleanly */
    proto_thread_cleanup();
    struct watch *w, *tmp;
    HASH_ITER(hh, n->watches, w, tmp)
    {
        HASH_DEL(n->watches, w);
        free(w);
    }
    loop_destroy(n->loop);
    free(n);
}

const char *node_id(const struct node *n)
{
    return n->id;
}

struct post {
    void (*fn)(void *arg);
    void *arg;
};

static void run_post(struct loop *loop, void *arg)
{
    (void)loop;
    struct post p = *(struct post *)arg;
    free(arg);
    p.fn(p.arg);
}

int node_post(struct node *n, void (*fn)(void *arg), void *arg)
{
    struct post *p = malloc(sizeof *p);
    if (!p) return -1;
    *p = (struct post){fn, arg};
    if (loop_post(n->loop, run_post, p) != 0) {
        free(p);
        return -1;
    }
    return 0;
}

bool node_ready(const struct node *n)
{
    return atomic_load(&n->up) == n->n_inst;
}

int node_instances(const struct node *n)
{
    return n->n_inst;
}

struct redis_conn *node_cmd(struct node *n, int instance)
{
    return n->inst[instance].cmd;
}

struct loop *node_loop(struct node *n)
{
    return n->loop;
}

void node_stats(const struct node *n, struct node_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n->n_inst; i++) {
        for (int k = 0; k < 2; k++) {
            const struct redis_conn *rc = k ? n->inst[i].sub : n->inst[i].cmd;
            if (!rc) continue;
            const struct redis_stats *s = redis_conn_stats(rc);
            out->commands += __atomic_load_n(&s->commands, __ATOMIC_RELAXED);
            out->replies += __atomic_load_n(&s->replies, __ATOMIC_RELAXED);
            out->error_replies += __atomic_load_n(&s->error_replies, __ATOMIC_RELAXED);
            out->bytes_out += __atomic_load_n(&s->bytes_out, __ATOMIC_RELAXED);
            out->bytes_in += __atomic_load_n(&s->bytes_in, __ATOMIC_RELAXED);
            out->messages += __atomic_load_n(&s->messages, __ATOMIC_RELAXED);
            out->connects += __atomic_load_n(&s->connects, __ATOMIC_RELAXED);
            out->reconnects += __atomic_load_n(&s->reconnects, __ATOMIC_RELAXED);
            out->failures += __atomic_load_n(&s->failures, __ATOMIC_RELAXED);
            out->timeouts += __atomic_load_n(&s->timeouts, __ATOMIC_RELAXED);
            out->refused += __atomic_load_n(&s->refused, __ATOMIC_RELAXED);
            out->rtt_count += __atomic_load_n(&s->rtt_count, __ATOMIC_RELAXED);
            out->rtt_sum_us += __atomic_load_n(&s->rtt_sum_us, __ATOMIC_RELAXED);
            for (int b = 0; b < REDIS_RTT_BUCKETS; b++)
                out->rtt_hist[b] += __atomic_load_n(&s->rtt_hist[b], __ATOMIC_RELAXED);
        }
    }
    out->subscriptions = atomic_load(&n->n_watches);
    out->up = atomic_load(&n->up);
}
