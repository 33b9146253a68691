/* The Redis layer of issue 12 against a real redis-server (Debian's, started here on a
 * free loopback port with no persistence, stopped by PID): the managed connection
 * (AUTH + SELECT from the URL, a refused password retried and counted, a stalled
 * command dropped, reconnection after the server is killed and restarted, the state
 * callback going down then up, a timer of the same loop firing all through the
 * outage), and the stream scripts (two connections publishing concurrently get
 * consecutive positions in one order, seen in that order by a subscriber; the epoch is
 * stable and renewed once the keys are gone; TTLs set; MAXLEN ~ bounds the stream;
 * read-since returns consecutive entries, or a gap, or an epoch change). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster/redis_conn.h"
#include "cluster/rstream.h"
#include "loop/loop.h"

#define PASSWORD            "pw:s3cret/x" /* needs percent-escapes in the URL */
#define URL_PW              "redis://:pw%%3As3cret%%2Fx@127.0.0.1:%u/%u"
#define REDIS_TEST_PASSWORD PASSWORD
#define REDIS_TEST_DIR      "/tmp/wshub-redis-XXXXXX"
#include "redis_server.h"

static void flushall(void)
{
    redisContext *c = sync_client();
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}

/* ---- running the loop until something happened ---- */

static struct redis_conn *open_conn(struct loop *loop, unsigned db, struct watch *w,
                                    uint32_t command_timeout_ms)
{
    char url[128];
    int n = snprintf(url, sizeof url, URL_PW, redis_port, db);
    struct redis_conn_opts o = {.command_timeout_ms = command_timeout_ms,
                                .backoff_base_ms = 20,
                                .backoff_max_ms = 200,
                                .preload = rstream_scripts};
    const char *why;
    assert_int_equal(redis_url_parse(url, (size_t)n, &o.url, &why), 0);
    struct redis_conn *rc = redis_conn_create(loop, &o, on_state, w);
    assert_non_null(rc);
    return rc;
}

struct reply {
    bool done;
    bool null; /* the connection was lost */
    int type;
    char str[256];
    long long integer;
};

static void on_reply(struct redis_conn *rc, const redisReply *r, void *arg)
{
    (void)rc;
    struct reply *out = arg;
    out->done = true;
    out->null = !r;
    if (!r) return;
    out->type = r->type;
    out->integer = r->integer;
    if (r->str) snprintf(out->str, sizeof out->str, "%.*s", (int)r->len, r->str);
}

static bool reply_done(void *arg)
{
    return ((struct reply *)arg)->done;
}

static int command(struct redis_conn *rc, struct reply *out, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    memset(out, 0, sizeof *out);
    return redis_conn_command(rc, on_reply, out, argc, argv, lens);
}

/* ---- the connection ---- */

static void test_connect_auth_select(void **state)
{
    (void)state;
    flushall();
    struct loop *loop = loop_create();
    struct watch w = {0};
    struct redis_conn *rc = open_conn(loop, 3, &w, 0);
    assert_false(redis_conn_up(rc));
    struct reply r;
    assert_int_equal(command(rc, &r, 2, (const char *[]){"GET", "k"}), -1); /* not up yet */
    assert_true(run_until(loop, is_up, &w));
    assert_int_equal(w.ups, 1);
    assert_int_equal(command(rc, &r, 3, (const char *[]){"SET", "k", "in-db-3"}), 0);
    assert_true(run_until(loop, reply_done, &r));
    assert_int_equal(r.type, REDIS_REPLY_STATUS);
    /* SUBSCRIBE needs a connection of its own. */
    assert_int_equal(command(rc, &r, 2, (const char *[]){"subscribe", "c"}), -1);
    const struct redis_stats *st = redis_conn_stats(rc);
    assert_int_equal(st->connects, 1);
    assert_int_equal(st->commands, 7); /* AUTH, SELECT, 3 SCRIPT LOAD, PING, SET */
    assert_int_equal(st->replies, 7);
    assert_int_equal(st->rtt_count, 7);
    uint64_t in_hist = 0;
    for (int i = 0; i < REDIS_RTT_BUCKETS; i++)
        in_hist += st->rtt_hist[i];
    assert_int_equal(in_hist, 7);
    assert_true(st->bytes_out > 0);

    /* The key went to database 3, not 0. */
    redisContext *c = sync_client();
    redisReply *x = redisCommand(c, "GET k");
    assert_int_equal(x->type, REDIS_REPLY_NIL);
    freeReplyObject(x);
    freeReplyObject(redisCommand(c, "SELECT 3"));
    x = redisCommand(c, "GET k");
    assert_string_equal(x->str, "in-db-3");
    freeReplyObject(x);
    redisFree(c);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

static bool two_auth_failures(void *arg)
{
    return redis_conn_stats(arg)->auth_failures >= 2;
}

static void test_wrong_password_retried_and_counted(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct watch w = {0};
    char url[128];
    int n = snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%u", redis_port);
    struct redis_conn_opts o = {.backoff_base_ms = 10, .backoff_max_ms = 50};
    const char *why;
    assert_int_equal(redis_url_parse(url, (size_t)n, &o.url, &why), 0);
    struct redis_conn *rc = redis_conn_create(loop, &o, on_state, &w);
    assert_true(run_until(loop, two_auth_failures, rc));
    assert_int_equal(w.ups, 0);
    assert_false(redis_conn_up(rc));
    assert_true(redis_conn_stats(rc)->reconnects >= 1);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

static void test_stalled_command_drops_connection(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct watch w = {0};
    struct redis_conn *rc = open_conn(loop, 0, &w, 200);
    assert_true(run_until(loop, is_up, &w));
    struct reply r;
    /* Blocks server-side for ever: the watchdog gives up after 200 ms. */
    assert_int_equal(command(rc, &r, 3, (const char *[]){"BLPOP", "nothing", "0"}), 0);
    assert_true(run_until(loop, reply_done, &r));
    assert_true(r.null);
    assert_int_equal(redis_conn_stats(rc)->timeouts, 1);
    assert_int_equal(w.downs, 1);
    assert_true(run_until(loop, is_up, &w)); /* and it comes back */
    assert_int_equal(w.ups, 2);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

struct ticker {
    struct timer t;
    uint64_t ticks;
};

static void tick(struct loop *loop, struct timer *t)
{
    ((struct ticker *)t)->ticks++;
    loop_timer_arm(loop, t, 10);
}

struct ticks_past {
    struct ticker *tk;
    uint64_t target;
};

static bool ticks_reached(void *arg)
{
    struct ticks_past *p = arg;
    return p->tk->ticks >= p->target;
}

static void test_reconnect_after_restart(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct watch w = {0};
    struct redis_conn *rc = open_conn(loop, 1, &w, 0);
    assert_true(run_until(loop, is_up, &w));
    struct ticker tk = {0};
    loop_timer_init(&tk.t, tick);
    loop_timer_arm(loop, &tk.t, 10);

    /* A command in flight when the server dies gets NULL. */
    struct reply pending, r;
    assert_int_equal(command(rc, &pending, 3, (const char *[]){"BLPOP", "nothing", "0"}), 0);
    assert_true(run_until(loop, is_up, &w)); /* one turn: the command is written */
    stop_redis();
    assert_true(run_until(loop, is_down, &w));
    assert_true(pending.done && pending.null);
    assert_int_equal(w.downs, 1);
    assert_int_equal(command(rc, &r, 2, (const char *[]){"GET", "k"}), -1);
    assert_true(redis_conn_stats(rc)->refused >= 1);

    /* The loop is not blocked while Redis is away: its timer keeps firing, and the
     * failed reconnection attempts are counted. */
    struct ticks_past p = {&tk, tk.ticks + 20};
    assert_true(run_until(loop, ticks_reached, &p));
    assert_true(redis_conn_stats(rc)->reconnects >= 1);
    assert_false(redis_conn_up(rc));

    start_redis();
    assert_true(run_until(loop, is_up, &w));
    assert_int_equal(w.ups, 2);
    assert_int_equal(command(rc, &r, 3, (const char *[]){"SET", "k", "after"}), 0);
    assert_true(run_until(loop, reply_done, &r));
    assert_false(r.null);
    assert_int_equal(command(rc, &r, 2, (const char *[]){"GET", "k"}), 0);
    assert_true(run_until(loop, reply_done, &r));
    assert_string_equal(r.str, "after");
    assert_int_equal(redis_conn_stats(rc)->connects, 2);
    loop_timer_cancel(loop, &tk.t);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

/* ---- the stream scripts ---- */

struct pub {
    int done, failed;
    struct rstream_published res;
};

static void on_published(void *arg, int ok, const struct rstream_published *res)
{
    struct pub *p = arg;
    p->done++;
    if (ok == 0)
        p->res = *res;
    else
        p->failed++;
}

static bool pub_done(void *arg)
{
    return ((struct pub *)arg)->done > 0;
}

static struct rstream_published publish1(struct loop *loop, struct redis_conn *rc, const char *name,
                                         const char *frame)
{
    struct pub p = {0};
    assert_int_equal(rstream_publish(rc, name, strlen(name), frame, strlen(frame), 1000, 60000,
                                     on_published, &p),
                     0);
    assert_true(run_until(loop, pub_done, &p));
    assert_int_equal(p.failed, 0);
    return p.res;
}

#define PER_CLIENT 200

struct subscriber {
    pthread_t th;
    char channel[64];
    int want, got;
    uint64_t seqs[2 * PER_CLIENT];
    char frames[2 * PER_CLIENT][16];
    size_t lens[2 * PER_CLIENT];
    char epoch[RSTREAM_EPOCH_LEN + 1];
    bool ready;
    pthread_mutex_t mu;
};

static void *subscribe_thread(void *arg)
{
    struct subscriber *s = arg;
    redisContext *c = sync_client();
    if (!c) return NULL;
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", s->channel);
    if (r) freeReplyObject(r);
    pthread_mutex_lock(&s->mu);
    s->ready = true;
    pthread_mutex_unlock(&s->mu);
    while (s->got < s->want) {
        void *v;
        if (redisGetReply(c, &v) != REDIS_OK) break;
        r = v;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
            struct rstream_published h;
            const char *frame;
            size_t flen;
            const redisReply *m = r->element[2];
            if (rstream_msg_parse(m->str, m->len, &h, &frame, &flen) == 0 && flen < 16) {
                s->seqs[s->got] = h.seq;
                memcpy(s->frames[s->got], frame, flen);
                s->lens[s->got] = flen;
                memcpy(s->epoch, h.epoch, sizeof s->epoch);
                s->got++;
            }
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return NULL;
}

struct burst {
    struct pub p[2][PER_CLIENT];
    char frames[2][PER_CLIENT][16];
    size_t lens[2][PER_CLIENT];
};

static bool burst_done(void *arg)
{
    struct burst *b = arg;
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < PER_CLIENT; i++)
            if (!b->p[c][i].done) return false;
    return true;
}

static void test_concurrent_publishers_one_order(void **state)
{
    (void)state;
    flushall();
    struct loop *loop = loop_create();
    struct watch wa = {0}, wb = {0};
    struct redis_conn *rc[2] = {open_conn(loop, 0, &wa, 0), open_conn(loop, 0, &wb, 0)};
    assert_true(run_until(loop, is_up, &wa));
    assert_true(run_until(loop, is_up, &wb));

    redisContext *check = sync_client();
    freeReplyObject(redisCommand(check, "CONFIG RESETSTAT"));
    static struct subscriber sub;
    memset(&sub, 0, sizeof sub);
    pthread_mutex_init(&sub.mu, NULL);
    strcpy(sub.channel, "wshub:{room:lobby}");
    sub.want = 2 * PER_CLIENT;
    assert_int_equal(pthread_create(&sub.th, NULL, subscribe_thread, &sub), 0);
    for (;;) { /* wait until subscribed, so that no message is published before */
        pthread_mutex_lock(&sub.mu);
        bool ready = sub.ready;
        pthread_mutex_unlock(&sub.mu);
        if (ready) break;
        usleep(1000);
    }
    /* ready is set once the SUBSCRIBE reply was read: the server has registered it. */

    /* Both connections queue all their publishes before the loop runs: the server
     * interleaves them as the two sockets deliver. Frames are binary (NUL, ':'). */
    static struct burst b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < PER_CLIENT; i++) {
        for (int c = 0; c < 2; c++) {
            char *f = b.frames[c][i];
            int n = snprintf(f, 16, "%c:%d", 'a' + c, i);
            f[n] = 0, n++; /* a trailing NUL byte, sent as data */
            b.lens[c][i] = (size_t)n;
            assert_int_equal(rstream_publish(rc[c], "room:lobby", 10, f, (size_t)n, 1000, 60000,
                                             on_published, &b.p[c][i]),
                             0);
        }
    }
    uint64_t t0 = clock_now_ms();
    assert_true(run_until(loop, burst_done, &b));
    /* A figure, not an assertion. */
    const struct redis_stats *s0 = redis_conn_stats(rc[0]);
    printf("# %d publishes over 2 connections in %llu ms; connection 0: %llu round trips, mean "
           "%.0f us, %llu bytes sent\n",
           2 * PER_CLIENT, (unsigned long long)(clock_now_ms() - t0),
           (unsigned long long)s0->rtt_count,
           s0->rtt_count ? (double)s0->rtt_sum_us / (double)s0->rtt_count : 0.0,
           (unsigned long long)s0->bytes_out);
    /* Every position 1..2N assigned exactly once, one epoch, and each connection's own
     * positions increase in the order it published. */
    static bool seen[2 * PER_CLIENT + 1];
    memset(seen, 0, sizeof seen);
    const char *epoch = b.p[0][0].res.epoch;
    for (int c = 0; c < 2; c++) {
        uint64_t last = 0;
        for (int i = 0; i < PER_CLIENT; i++) {
            struct pub *p = &b.p[c][i];
            assert_int_equal(p->failed, 0);
            assert_true(p->res.seq >= 1 && p->res.seq <= 2 * PER_CLIENT);
            assert_false(seen[p->res.seq]);
            seen[p->res.seq] = true;
            assert_true(p->res.seq > last);
            last = p->res.seq;
            assert_string_equal(p->res.epoch, epoch);
        }
    }
    /* The subscriber got them all in position order, each with the frame its publisher
     * was told it has. */
    pthread_join(sub.th, NULL);
    assert_int_equal(sub.got, 2 * PER_CLIENT);
    assert_string_equal(sub.epoch, epoch);
    for (int k = 0; k < sub.got; k++) {
        assert_int_equal(sub.seqs[k], (uint64_t)k + 1);
        int found = 0;
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < PER_CLIENT; i++)
                if (b.p[c][i].res.seq == sub.seqs[k]) {
                    assert_int_equal(sub.lens[k], b.lens[c][i]);
                    assert_memory_equal(sub.frames[k], b.frames[c][i], b.lens[c][i]);
                    found++;
                }
        assert_int_equal(found, 1);
    }
    /* One Redis command per publish: 2N EVALSHA, nothing else, no EVAL. */
    redisReply *r = redisCommand(check, "INFO commandstats");
    assert_non_null(strstr(r->str, "cmdstat_evalsha:calls=400,"));
    assert_null(strstr(r->str, "cmdstat_eval:"));
    assert_non_null(strstr(r->str, "cmdstat_publish:calls=400,")); /* from inside it */
    freeReplyObject(r);
    redisFree(check);
    redis_conn_destroy(rc[0]);
    redis_conn_destroy(rc[1]);
    loop_destroy(loop);
}

static long long sync_int(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void test_epoch_ttl_and_maxlen(void **state)
{
    (void)state;
    flushall();
    struct loop *loop = loop_create();
    struct watch w = {0};
    struct redis_conn *rc = open_conn(loop, 0, &w, 0);
    assert_true(run_until(loop, is_up, &w));
    struct rstream_published a = publish1(loop, rc, "user:ann", "one");
    struct rstream_published b = publish1(loop, rc, "user:ann", "two");
    assert_int_equal(a.seq, 1);
    assert_int_equal(b.seq, 2);
    assert_string_equal(a.epoch, b.epoch);
    /* Another stream has its own positions and epoch. */
    struct rstream_published o = publish1(loop, rc, "user:bob", "x");
    assert_int_equal(o.seq, 1);
    assert_string_not_equal(o.epoch, a.epoch);

    redisContext *c = sync_client();
    long long ttl = sync_int(c, "PTTL wshub:{user:ann}:x");
    assert_true(ttl > 0 && ttl <= 60000);
    assert_true(sync_int(c, "PTTL wshub:{user:ann}:seq") > 0);
    assert_true(sync_int(c, "PTTL wshub:{user:ann}:epoch") > 0);
    assert_int_equal(sync_int(c, "XLEN wshub:{user:ann}:x"), 2);

    /* Keys gone (expired, deleted, Redis emptied): positions restart under a new epoch. */
    assert_int_equal(sync_int(c, "DEL wshub:{user:ann}:epoch"), 1);
    struct rstream_published d = publish1(loop, rc, "user:ann", "three");
    assert_int_equal(d.seq, 1);
    assert_string_not_equal(d.epoch, a.epoch);
    assert_int_equal(sync_int(c, "XLEN wshub:{user:ann}:x"), 1);
    struct rstream_published e = publish1(loop, rc, "user:ann", "four");
    assert_int_equal(e.seq, 2);
    assert_string_equal(e.epoch, d.epoch);
    /* A lost seq counter alone also means a new epoch (positions could not go on). */
    assert_int_equal(sync_int(c, "DEL wshub:{user:ann}:seq"), 1);
    struct rstream_published f = publish1(loop, rc, "user:ann", "five");
    assert_int_equal(f.seq, 1);
    assert_string_not_equal(f.epoch, d.epoch);

    /* MAXLEN ~ 50 over 300 entries: Redis trims whole nodes (100 entries by default),
     * so between 50 and 150 remain. */
    struct pub p[300];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 300; i++)
        assert_int_equal(rstream_publish(rc, "room:big", 8, "m", 1, 50, 0, on_published, &p[i]), 0);
    assert_true(run_until(loop, pub_done, &p[299]));
    long long len = sync_int(c, "XLEN wshub:{room:big}:x");
    assert_true(len >= 50 && len <= 150);
    assert_int_equal(sync_int(c, "PTTL wshub:{room:big}:x"), -1); /* TTL 0: none */

    /* The script is cached server-side: after SCRIPT FLUSH the NOSCRIPT answer is
     * retried with EVAL, invisibly. */
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    struct rstream_published g = publish1(loop, rc, "user:ann", "six");
    assert_int_equal(g.seq, 2);
    redisFree(c);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

struct read {
    bool done;
    enum rstream_read_status st;
    char epoch[RSTREAM_EPOCH_LEN + 1];
    uint64_t top;
    size_t n;
    uint64_t seqs[16];
    char data[16][8];
};

static void on_read(void *arg, enum rstream_read_status st, const char *epoch, uint64_t top,
                    const struct rstream_entry *e, size_t n)
{
    struct read *r = arg;
    r->done = true;
    r->st = st;
    snprintf(r->epoch, sizeof r->epoch, "%s", epoch);
    r->top = top;
    r->n = n;
    for (size_t i = 0; i < n && i < 16; i++) {
        r->seqs[i] = e[i].seq;
        snprintf(r->data[i], sizeof r->data[i], "%.*s", (int)e[i].len, e[i].data);
    }
}

static bool read_done(void *arg)
{
    return ((struct read *)arg)->done;
}

static struct read read_since(struct loop *loop, struct redis_conn *rc, const char *epoch,
                              uint64_t since, uint32_t max)
{
    struct read r = {0};
    assert_int_equal(rstream_read_since(rc, "room:r", 6, epoch, since, max, on_read, &r), 0);
    assert_true(run_until(loop, read_done, &r));
    return r;
}

static void test_read_since(void **state)
{
    (void)state;
    flushall();
    struct loop *loop = loop_create();
    struct watch w = {0};
    struct redis_conn *rc = open_conn(loop, 0, &w, 0);
    assert_true(run_until(loop, is_up, &w));
    struct read r = read_since(loop, rc, NULL, 0, 10);
    assert_int_equal(r.st, RSTREAM_READ_EPOCH); /* no such stream yet */
    struct rstream_published pub = {0};
    for (int i = 1; i <= 10; i++) {
        char f[16];
        snprintf(f, sizeof f, "m%d", i);
        pub = publish1(loop, rc, "room:r", f);
    }
    const char *ep = pub.epoch;
    r = read_since(loop, rc, ep, 0, 16);
    assert_int_equal(r.st, RSTREAM_READ_OK);
    assert_int_equal(r.n, 10);
    assert_int_equal(r.top, 10);
    assert_int_equal(r.seqs[0], 1);
    assert_string_equal(r.data[9], "m10");
    r = read_since(loop, rc, ep, 7, 16);
    assert_int_equal(r.st, RSTREAM_READ_OK);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.seqs[0], 8);
    assert_string_equal(r.data[0], "m8");
    r = read_since(loop, rc, ep, 2, 3); /* paged */
    assert_int_equal(r.n, 3);
    assert_int_equal(r.seqs[2], 5);
    r = read_since(loop, rc, ep, 10, 16); /* up to date */
    assert_int_equal(r.st, RSTREAM_READ_OK);
    assert_int_equal(r.n, 0);
    r = read_since(loop, rc, ep, 11, 16); /* from the future */
    assert_int_equal(r.st, RSTREAM_READ_GAP);
    r = read_since(loop, rc, "0123456789abcdef", 7, 16);
    assert_int_equal(r.st, RSTREAM_READ_EPOCH);
    assert_string_equal(r.epoch, ep);

    redisContext *c = sync_client();
    /* Trimmed to the last 3: reading from before them is a gap, from within them is not. */
    assert_int_equal(sync_int(c, "XTRIM wshub:{room:r}:x MAXLEN 3"), 7);
    r = read_since(loop, rc, ep, 0, 16);
    assert_int_equal(r.st, RSTREAM_READ_GAP);
    r = read_since(loop, rc, ep, 6, 16);
    assert_int_equal(r.st, RSTREAM_READ_GAP);
    r = read_since(loop, rc, ep, 7, 16);
    assert_int_equal(r.st, RSTREAM_READ_OK);
    assert_int_equal(r.n, 3);
    /* A hole in the middle is a gap too. */
    assert_int_equal(sync_int(c, "XDEL wshub:{room:r}:x 9-0"), 1);
    r = read_since(loop, rc, ep, 7, 16);
    assert_int_equal(r.st, RSTREAM_READ_GAP);
    r = read_since(loop, rc, ep, 9, 16);
    assert_int_equal(r.st, RSTREAM_READ_OK);
    assert_int_equal(r.n, 1);
    redisFree(c);
    redis_conn_destroy(rc);
    loop_destroy(loop);
}

static void test_msg_parse(void **state)
{
    (void)state;
    struct rstream_published h;
    const char *f;
    size_t n;
    static const char ok[] = "0123456789abcdef:42:a:b\0c";
    assert_int_equal(rstream_msg_parse(ok, sizeof ok - 1, &h, &f, &n), 0);
    assert_int_equal(h.seq, 42);
    assert_string_equal(h.epoch, "0123456789abcdef");
    assert_int_equal(n, 5);
    assert_memory_equal(f, "a:b\0c", 5);
    static const char *const bad[] = {"",
                                      "0123456789abcdef:",
                                      "0123456789abcdef:1",
                                      "0123456789abcdeF:1:x",
                                      "0123456789abcdef:0:x",
                                      "0123456789abcdef:01:x",
                                      "0123456789abcdef:x:y",
                                      "0123456789abcde:1:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rstream_msg_parse(bad[i], strlen(bad[i]), &h, &f, &n), -1);
}

static void test_backoff_full_jitter(void **state)
{
    (void)state;
    uint64_t rng = 7;
    uint32_t max_seen[12] = {0};
    for (int k = 0; k < 2000; k++)
        for (uint32_t n = 0; n < 12; n++) {
            uint32_t d = redis_backoff_ms(n, 100, 5000, &rng);
            uint32_t ceiling = n >= 6 ? 5000 : 100u << n;
            assert_true(d <= ceiling);
            if (d > max_seen[n]) max_seen[n] = d;
        }
    /* Spread over the whole range (jitter), growing with the failures, capped. */
    assert_true(max_seen[0] > 50);
    assert_true(max_seen[3] > 400);
    assert_true(max_seen[11] > 2500 && max_seen[11] <= 5000);
    assert_true(redis_backoff_ms(UINT32_MAX, 100, 5000, &rng) <= 5000);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_parse),
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_connect_auth_select),
        cmocka_unit_test(test_wrong_password_retried_and_counted),
        cmocka_unit_test(test_stalled_command_drops_connection),
        cmocka_unit_test(test_concurrent_publishers_one_order),
        cmocka_unit_test(test_epoch_ttl_and_maxlen),
        cmocka_unit_test(test_read_since),
        cmocka_unit_test(test_reconnect_after_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
