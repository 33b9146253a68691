/* Cluster-wide presence (cluster/presence.h) against a real redis-server (Debian's,
 * started here on a free loopback port with no persistence, stopped by PID), with two
 * or three redis_conn on one loop playing different nodes: connection counts summed
 * over nodes with the first/last transitions, joins and leaves with the room listing
 * and members, removals beyond what was added clamped and counted, one EVALSHA per
 * operation (INFO commandstats), cursor pagination (every id once, in order, entries
 * added between pages seen), a node that stops heartbeating swept (its entries go,
 * another node's stay, the transitions reported, two sweepers racing remove it once),
 * reset in bounded steps and resync in batches, and a Redis restart answered by a
 * heartbeat of 0. Argument checks refuse before sending. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster/presence.h"
#include "cluster/redis_conn.h"
#include "loop/loop.h"

#define REDIS_TEST_DIR "/tmp/wshub-presence-XXXXXX"
#include "redis_server.h"

#define NODE_A "00000000000000aa"
#define NODE_B "00000000000000bb"
#define NODE_C "00000000000000cc"

/* Runs one command on a fresh blocking client; the caller frees the reply. */
static redisReply *rcmd(const char *fmt, ...)
{
    redisContext *c = sync_client();
    assert_non_null(c);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static void rcmd0(const char *cmd)
{
    freeReplyObject(rcmd("%s", cmd));
}

static long long evalsha_calls(void)
{
    redisReply *r = rcmd("INFO commandstats");
    const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_evalsha:calls=")) : 0;
    bool plain_eval = strstr(r->str, "cmdstat_eval:") != NULL;
    freeReplyObject(r);
    assert_false(plain_eval); /* the preload worked: no NOSCRIPT retry */
    return n;
}

/* ---- running the loop until something happened ---- */

static struct loop *loop;

static struct redis_conn *open_conn(struct watch *w)
{
    char url[64];
    int n = snprintf(url, sizeof url, "redis://127.0.0.1:%u", redis_port);
    struct redis_conn_opts o = {
        .backoff_base_ms = 20, .backoff_max_ms = 200, .preload = presence_scripts};
    const char *why;
    assert_int_equal(redis_url_parse(url, (size_t)n, &o.url, &why), 0);
    struct redis_conn *rc = redis_conn_create(loop, &o, on_state, w);
    assert_non_null(rc);
    assert_true(run_until(loop, is_up, w));
    return rc;
}

/* ---- synchronous wrappers over the async calls ---- */

struct count_res {
    bool done;
    long long v;
};

static void on_count(void *arg, long long v)
{
    struct count_res *r = arg;
    r->done = true;
    r->v = v;
}

static bool count_done(void *arg)
{
    return ((struct count_res *)arg)->done;
}

static long long wait_count(int sent, struct count_res *r)
{
    assert_int_equal(sent, 0);
    assert_true(run_until(loop, count_done, r));
    return r->v;
}

/* Registers (or heartbeats a listed node): presence_register. */
static long long HB(struct redis_conn *rc, const char *node, uint32_t ttl)
{
    struct count_res r = {0};
    return wait_count(presence_register(rc, node, ttl, on_count, &r), &r);
}

/* A plain heartbeat: never adds a node that is not listed. */
static long long BEAT(struct redis_conn *rc, const char *node, uint32_t ttl)
{
    struct count_res r = {0};
    return wait_count(presence_heartbeat(rc, node, ttl, on_count, &r), &r);
}

static long long UADD(struct redis_conn *rc, const char *node, const char *u)
{
    struct count_res r = {0};
    return wait_count(presence_user_add(rc, node, u, on_count, &r), &r);
}

static long long UREM(struct redis_conn *rc, const char *node, const char *u)
{
    struct count_res r = {0};
    return wait_count(presence_user_remove(rc, node, u, on_count, &r), &r);
}

static long long JOIN(struct redis_conn *rc, const char *node, const char *room, const char *u)
{
    struct count_res r = {0};
    return wait_count(presence_join(rc, node, room, u, on_count, &r), &r);
}

static long long LEAVE(struct redis_conn *rc, const char *node, const char *room, const char *u)
{
    struct count_res r = {0};
    return wait_count(presence_leave(rc, node, room, u, on_count, &r), &r);
}

static long long RCOUNT(struct redis_conn *rc, const char *room)
{
    struct count_res r = {0};
    return wait_count(presence_room_count(rc, room, on_count, &r), &r);
}

/* Changes accumulated over the calls of a reset, sweep or sync. */
#define MAXCH 512
struct changes {
    int calls, last_ok;
    bool more;
    uint32_t nodes_removed;
    size_t n_users, n_pairs;
    char users[MAXCH][32];
    char pairs[MAXCH][2][32];
};

static void on_changes(void *arg, int ok, const struct presence_changes *ch)
{
    struct changes *c = arg;
    c->calls++;
    c->last_ok = ok;
    if (ok != 0) {
        c->more = false;
        return;
    }
    c->more = ch->more;
    c->nodes_removed += ch->nodes_removed;
    for (size_t i = 0; i < ch->n_users && c->n_users < MAXCH; i++)
        snprintf(c->users[c->n_users++], 32, "%s", ch->users[i]);
    for (size_t i = 0; i < ch->n_pairs && c->n_pairs < MAXCH; i++, c->n_pairs++) {
        snprintf(c->pairs[c->n_pairs][0], 32, "%s", ch->pairs[i].room);
        snprintf(c->pairs[c->n_pairs][1], 32, "%s", ch->pairs[i].user);
    }
}

struct changes_wait {
    struct changes *c;
    int calls;
};

static bool changes_done(void *arg)
{
    struct changes_wait *w = arg;
    return w->c->calls >= w->calls;
}

/* Waits until the changes callback has run once more. */
static void wait_changes(int sent, struct changes *c)
{
    assert_int_equal(sent, 0);
    struct changes_wait w = {c, c->calls + 1};
    assert_true(run_until(loop, changes_done, &w));
}

static bool has_user(const struct changes *c, const char *u)
{
    for (size_t i = 0; i < c->n_users; i++)
        if (!strcmp(c->users[i], u)) return true;
    return false;
}

static bool has_pair(const struct changes *c, const char *room, const char *u)
{
    for (size_t i = 0; i < c->n_pairs; i++)
        if (!strcmp(c->pairs[i][0], room) && !strcmp(c->pairs[i][1], u)) return true;
    return false;
}

/* A page copied out of its callback. */
struct page {
    bool done;
    int ok;
    size_t n;
    uint64_t total;
    char ids[PRESENCE_PAGE_MAX][PRESENCE_MAX_NAME + 1];
    uint64_t members[PRESENCE_PAGE_MAX];
    bool has_members, has_next;
    char next[PRESENCE_MAX_NAME + 1];
};

static void on_page(void *arg, int ok, const struct presence_page *pg)
{
    struct page *p = arg;
    p->done = true;
    p->ok = ok;
    if (ok) return;
    p->n = pg->n;
    p->total = pg->total;
    for (size_t i = 0; i < pg->n; i++) {
        snprintf(p->ids[i], sizeof p->ids[i], "%s", pg->ids[i]);
        if (pg->members) p->members[i] = pg->members[i];
    }
    p->has_members = pg->members != NULL;
    p->has_next = pg->next != NULL;
    if (pg->next) snprintf(p->next, sizeof p->next, "%s", pg->next);
}

static bool page_done(void *arg)
{
    return ((struct page *)arg)->done;
}

static struct page *pg_buf;

enum listing { L_ONLINE, L_ROOMS, L_MEMBERS };

static struct page *get_page(struct redis_conn *rc, enum listing l, const char *room,
                             const char *after, uint32_t limit)
{
    struct page *p = pg_buf;
    memset(p, 0, sizeof *p);
    int sent = l == L_ONLINE  ? presence_online_page(rc, after, limit, on_page, p)
               : l == L_ROOMS ? presence_rooms_page(rc, after, limit, on_page, p)
                              : presence_room_members_page(rc, room, after, limit, on_page, p);
    assert_int_equal(sent, 0);
    assert_true(run_until(loop, page_done, p));
    return p;
}

/* The whole listing as "id" or "id=members" joined with ',' (pages of `limit`). */
static void listing(struct redis_conn *rc, enum listing l, const char *room, uint32_t limit,
                    char *out, size_t cap)
{
    char after[PRESENCE_MAX_NAME + 1] = "";
    size_t len = 0;
    out[0] = 0;
    for (;;) {
        struct page *p = get_page(rc, l, room, after, limit);
        if (p->ok == PRESENCE_NOT_FOUND) {
            snprintf(out, cap, "(not found)");
            return;
        }
        assert_int_equal(p->ok, 0);
        for (size_t i = 0; i < p->n; i++) {
            if (p->has_members)
                len += (size_t)snprintf(out + len, cap - len, "%s%s=%llu", len ? "," : "",
                                        p->ids[i], (unsigned long long)p->members[i]);
            else
                len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "", p->ids[i]);
            assert_true(len < cap);
        }
        if (!p->has_next) return;
        assert_int_equal(p->n, limit);
        snprintf(after, sizeof after, "%s", p->next);
    }
}

static long long total_of(struct redis_conn *rc, enum listing l, const char *room)
{
    struct page *p = get_page(rc, l, room, NULL, 1);
    assert_int_equal(p->ok, 0);
    return (long long)p->total;
}

/* ---- the tests ---- */

static void test_counts_joins_and_one_command_each(void **state)
{
    (void)state;
    rcmd0("FLUSHALL");
    struct watch wa = {0}, wb = {0};
    struct redis_conn *a = open_conn(&wa), *b = open_conn(&wb);
    rcmd0("CONFIG RESETSTAT");
    long long ops = 0;
    struct presence_stats st0, st1;
    presence_stats_get(&st0);

    /* A node that never heartbeated may not add anything. */
    assert_int_equal(UADD(a, NODE_A, "u1"), PRESENCE_UNKNOWN_NODE), ops++;
    assert_int_equal(JOIN(a, NODE_A, "r1", "u1"), PRESENCE_UNKNOWN_NODE), ops++;
    assert_int_equal(HB(a, NODE_A, 60000), 0), ops++; /* new */
    assert_int_equal(HB(a, NODE_A, 60000), 1), ops++; /* alive */
    assert_int_equal(HB(b, NODE_B, 60000), 0), ops++;

    /* u1: twice on A, once on B. */
    assert_int_equal(UADD(a, NODE_A, "u1"), 1), ops++; /* first connection cluster-wide */
    assert_int_equal(UADD(a, NODE_A, "u1"), 2), ops++;
    assert_int_equal(UADD(b, NODE_B, "u1"), 3), ops++;
    assert_int_equal(UADD(b, NODE_B, "u2"), 1), ops++;
    char buf[4096];
    listing(a, L_ONLINE, NULL, 1, buf, sizeof buf), ops += 2; /* two pages of one */
    assert_string_equal(buf, "u1,u2");

    /* Rooms: u1 in r1 from both nodes, u2 in r1 from B, u2 alone in r2. */
    assert_int_equal(JOIN(a, NODE_A, "r1", "u1"), 1), ops++; /* newly in r1: "joined" */
    assert_int_equal(JOIN(b, NODE_B, "r1", "u1"), 2), ops++; /* already there */
    assert_int_equal(JOIN(b, NODE_B, "r1", "u2"), 1), ops++;
    assert_int_equal(JOIN(b, NODE_B, "r2", "u2"), 1), ops++;
    assert_int_equal(RCOUNT(a, "r1"), 2), ops++;
    assert_int_equal(RCOUNT(a, "r2"), 1), ops++;
    assert_int_equal(RCOUNT(a, "nope"), 0), ops++;
    listing(a, L_ROOMS, NULL, 10, buf, sizeof buf), ops++;
    assert_string_equal(buf, "r1=2,r2=1");
    listing(b, L_MEMBERS, "r1", 10, buf, sizeof buf), ops++;
    assert_string_equal(buf, "u1,u2");
    listing(b, L_MEMBERS, "nope", 10, buf, sizeof buf), ops++;
    assert_string_equal(buf, "(not found)");

    /* Leaves: the count in the room, 0 when the user is gone from it. */
    assert_int_equal(LEAVE(a, NODE_A, "r1", "u1"), 1), ops++;
    assert_int_equal(LEAVE(a, NODE_A, "r1", "u1"), 1), ops++; /* A had none left: clamped */
    assert_int_equal(LEAVE(b, NODE_B, "r1", "u1"), 0), ops++; /* "left" */
    assert_int_equal(RCOUNT(a, "r1"), 1), ops++;
    assert_int_equal(LEAVE(b, NODE_B, "r1", "u2"), 0), ops++; /* r1 now empty */
    assert_int_equal(LEAVE(b, NODE_B, "r1", "u2"), 0), ops++; /* clamped */
    listing(a, L_ROOMS, NULL, 10, buf, sizeof buf), ops++;
    assert_string_equal(buf, "r2=1");
    listing(a, L_MEMBERS, "r1", 10, buf, sizeof buf), ops++;
    assert_string_equal(buf, "(not found)");

    /* Connections going: the global count after, 0 when offline. */
    assert_int_equal(UREM(b, NODE_B, "u1"), 2), ops++;
    assert_int_equal(UREM(b, NODE_B, "u1"), 2), ops++; /* B had no more: clamped */
    assert_int_equal(UREM(a, NODE_A, "u1"), 1), ops++;
    assert_int_equal(UREM(a, NODE_A, "u1"), 0), ops++; /* offline */
    assert_int_equal(total_of(a, L_ONLINE, NULL), 1), ops++;
    assert_int_equal(UREM(b, NODE_B, "u2"), 0), ops++;
    assert_int_equal(LEAVE(b, NODE_B, "r2", "u2"), 0), ops++;
    assert_int_equal(total_of(a, L_ONLINE, NULL), 0), ops++;
    assert_int_equal(total_of(a, L_ROOMS, NULL), 0), ops++;

    presence_stats_get(&st1);
    assert_int_equal(st1.clamped - st0.clamped, 3);
    /* One EVALSHA per operation, nothing else sent by the nodes. */
    assert_int_equal(evalsha_calls(), ops);

    /* Everything added was removed: only the node list is left. */
    redisReply *r = rcmd("KEYS wshub:*");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "wshub:nodes");
    freeReplyObject(r);

    redis_conn_destroy(a);
    redis_conn_destroy(b);
}

static void test_argument_checks(void **state)
{
    (void)state;
    struct watch w = {0};
    struct redis_conn *rc = open_conn(&w);
    struct presence_stats st0, st1;
    presence_stats_get(&st0);
    char n128[PRESENCE_MAX_NAME + 1], n129[PRESENCE_MAX_NAME + 2];
    memset(n128, 'x', PRESENCE_MAX_NAME);
    n128[PRESENCE_MAX_NAME] = 0;
    memset(n129, 'x', PRESENCE_MAX_NAME + 1);
    n129[PRESENCE_MAX_NAME + 1] = 0;
    struct count_res r = {0};
    long long before = evalsha_calls();

    assert_int_equal(presence_user_add(rc, NODE_A, n129, on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, NODE_A, "", on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, NODE_A, "a\nb", on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, NODE_A, "a\x7f", on_count, &r), -1);
    assert_int_equal(presence_join(rc, NODE_A, n129, "u", on_count, &r), -1);
    assert_int_equal(presence_join(rc, NODE_A, "r\n", "u", on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, "00000000000000AA", "u", on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, "00000000000000a", "u", on_count, &r), -1);
    assert_int_equal(presence_user_add(rc, "00000000000000aa0", "u", on_count, &r), -1);
    assert_int_equal(presence_heartbeat(rc, NODE_A, 0, on_count, &r), -1);
    assert_int_equal(presence_online_page(rc, NULL, 0, on_page, pg_buf), -1);
    assert_int_equal(presence_online_page(rc, NULL, PRESENCE_PAGE_MAX + 1, on_page, pg_buf), -1);
    assert_int_equal(presence_online_page(rc, n129, 10, on_page, pg_buf), -1);
    assert_int_equal(presence_room_members_page(rc, "", NULL, 10, on_page, pg_buf), -1);
    assert_int_equal(presence_reset(rc, NODE_A, 0, on_changes, NULL), -1);
    assert_int_equal(presence_sweep(rc, PRESENCE_WORK_MAX + 1, on_changes, NULL), -1);
    struct presence_user_count bad_u = {"u", 0};
    assert_int_equal(presence_sync(rc, NODE_A, &bad_u, 1, NULL, 0, on_changes, NULL), -1);
    presence_stats_get(&st1);
    assert_int_equal(st1.refused_args - st0.refused_args, 17);
    assert_int_equal(evalsha_calls(), before); /* nothing was sent */

    /* 128 bytes is fine. */
    assert_int_equal(HB(rc, NODE_A, 60000) >= 0, 1);
    assert_int_equal(UADD(rc, NODE_A, n128), 1);
    assert_int_equal(JOIN(rc, NODE_A, n128, n128), 1);
    assert_int_equal(RCOUNT(rc, n128), 1);
    redis_conn_destroy(rc);
    rcmd0("FLUSHALL");
}

#define NPAGE 250

static void test_pagination(void **state)
{
    (void)state;
    rcmd0("FLUSHALL");
    struct watch w = {0};
    struct redis_conn *rc = open_conn(&w);
    assert_int_equal(HB(rc, NODE_A, 60000), 0);
    /* 250 users added in a scrambled order, pipelined. */
    static struct count_res res[NPAGE];
    memset(res, 0, sizeof res);
    for (int i = 0; i < NPAGE; i++) {
        int k = (i * 97) % NPAGE; /* 97 is prime to 250: a permutation */
        char u[16];
        snprintf(u, sizeof u, "u%03d", k);
        assert_int_equal(presence_user_add(rc, NODE_A, u, on_count, &res[i]), 0);
    }
    assert_true(run_until(loop, count_done, &res[NPAGE - 1]));
    for (int i = 0; i < NPAGE; i++)
        assert_int_equal(res[i].v, 1);

    /* Walk by 100: 100, 100, 50; every id once and in order. Between the first and the
     * second page, one id is added after the cursor (seen) and one before (not). */
    char after[PRESENCE_MAX_NAME + 1] = "";
    int seen = 0, pages = 0;
    bool extra_seen = false;
    char prev[PRESENCE_MAX_NAME + 1] = "";
    for (;;) {
        struct page *p = get_page(rc, L_ONLINE, NULL, after, 100);
        assert_int_equal(p->ok, 0);
        pages++;
        assert_int_equal(p->total, pages == 1 ? NPAGE : NPAGE + 2);
        for (size_t i = 0; i < p->n; i++) {
            assert_true(strcmp(prev, p->ids[i]) < 0);
            snprintf(prev, sizeof prev, "%s", p->ids[i]);
            if (!strcmp(p->ids[i], "u150x"))
                extra_seen = true;
            else
                assert_true(strcmp(p->ids[i], "u000x") != 0);
            seen++;
        }
        if (!p->has_next) break;
        assert_string_equal(p->next, p->ids[p->n - 1]);
        snprintf(after, sizeof after, "%s", p->next);
        if (pages == 1) {
            assert_string_equal(after, "u099");
            assert_int_equal(UADD(rc, NODE_A, "u150x"), 1);
            assert_int_equal(UADD(rc, NODE_A, "u000x"), 1);
        }
    }
    assert_int_equal(pages, 3);
    assert_int_equal(seen, NPAGE + 1);
    assert_true(extra_seen);
    /* A page that ends exactly at the end has no next. */
    struct page *p = get_page(rc, L_ONLINE, NULL, "u249", 5);
    assert_int_equal(p->n, 0);
    assert_false(p->has_next);
    p = get_page(rc, L_ONLINE, NULL, "u244", 5);
    assert_int_equal(p->n, 5);
    assert_false(p->has_next);
    p = get_page(rc, L_ONLINE, NULL, "u243", 5);
    assert_true(p->has_next);

    /* Rooms with member counts, walked two at a time: room rK has K+1 members. */
    for (int k = 0; k < 5; k++)
        for (int m = 0; m <= k; m++) {
            char room[16], u[16];
            snprintf(room, sizeof room, "r%d", k);
            snprintf(u, sizeof u, "u%03d", m);
            assert_int_equal(JOIN(rc, NODE_A, room, u), 1);
        }
    char buf[4096];
    listing(rc, L_ROOMS, NULL, 2, buf, sizeof buf);
    assert_string_equal(buf, "r0=1,r1=2,r2=3,r3=4,r4=5");
    listing(rc, L_MEMBERS, "r4", 2, buf, sizeof buf);
    assert_string_equal(buf, "u000,u001,u002,u003,u004");
    assert_int_equal(total_of(rc, L_ROOMS, NULL), 5);
    assert_int_equal(total_of(rc, L_MEMBERS, "r3"), 4);
    redis_conn_destroy(rc);
}

/* Polls Redis until the node's deadline is behind Redis' clock (a wait, not an
 * assertion on timing; 10 s guard). */
static void wait_deadline_passed(const char *node)
{
    for (int i = 0; i < 1000; i++) {
        redisReply *d = rcmd("ZSCORE wshub:nodes %s", node);
        redisReply *t = rcmd("TIME");
        assert_int_equal(d->type, REDIS_REPLY_STRING);
        bool passed =
            atoll(d->str) < atoll(t->element[0]->str) * 1000 + atoll(t->element[1]->str) / 1000;
        freeReplyObject(d);
        freeReplyObject(t);
        if (passed) return;
        usleep(10000);
    }
    fail_msg("the deadline of %s never passed", node);
}

/* A's state: ua (only A), s (also on B); ra (ua only A), shared (s). */
static void node_a_state(struct redis_conn *a)
{
    assert_int_equal(UADD(a, NODE_A, "ua"), 1);
    assert_int_equal(UADD(a, NODE_A, "s") >= 1, 1);
    assert_int_equal(JOIN(a, NODE_A, "ra", "ua"), 1);
    assert_int_equal(JOIN(a, NODE_A, "shared", "s") >= 1, 1);
}

static void test_dead_node_swept(void **state)
{
    (void)state;
    rcmd0("FLUSHALL");
    struct watch wa = {0}, wb = {0}, wc = {0};
    struct redis_conn *a = open_conn(&wa), *b = open_conn(&wb), *c = open_conn(&wc);
    assert_int_equal(HB(a, NODE_A, 60000), 0);
    assert_int_equal(HB(b, NODE_B, 60000), 0);
    assert_int_equal(HB(c, NODE_C, 60000), 0);
    node_a_state(a);
    assert_int_equal(UADD(b, NODE_B, "s"), 2);
    assert_int_equal(UADD(b, NODE_B, "ub"), 1);
    assert_int_equal(JOIN(b, NODE_B, "shared", "s"), 2);
    assert_int_equal(JOIN(b, NODE_B, "shared", "ub"), 1);
    assert_int_equal(JOIN(b, NODE_B, "rb", "ub"), 1);
    char buf[4096];
    listing(b, L_ONLINE, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "s,ua,ub");
    listing(b, L_ROOMS, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "ra=1,rb=1,shared=2");

    /* A is alive: a sweep finds nothing. */
    struct changes ch = {0};
    wait_changes(presence_sweep(b, PRESENCE_WORK_MAX, on_changes, &ch), &ch);
    assert_int_equal(ch.last_ok, 0);
    assert_int_equal(ch.nodes_removed, 0);
    assert_int_equal(ch.n_users + ch.n_pairs, 0);
    assert_false(ch.more);

    /* A heartbeats late, before any sweep: its entries are intact, no resync needed. */
    assert_int_equal(HB(a, NODE_A, 300), 1);
    wait_deadline_passed(NODE_A);
    assert_int_equal(HB(a, NODE_A, 300), 1);

    /* Then A stops heartbeating. B and C sweep at the same
     * time until A is gone: the scripts are atomic, so A is removed once and each transition
     * reported once. */
    struct changes cb_ = {0}, cc = {0};
    for (int i = 0; i < 500 && !cb_.nodes_removed && !cc.nodes_removed; i++) {
        assert_int_equal(presence_sweep(b, PRESENCE_WORK_MAX, on_changes, &cb_), 0);
        wait_changes(presence_sweep(c, PRESENCE_WORK_MAX, on_changes, &cc), &cc);
        struct changes_wait w = {&cb_, cc.calls};
        assert_true(run_until(loop, changes_done, &w));
        if (!cb_.nodes_removed && !cc.nodes_removed) usleep(20000);
    }
    assert_int_equal(cb_.nodes_removed + cc.nodes_removed, 1);
    assert_int_equal(cb_.n_users + cc.n_users, 1);
    assert_true(has_user(&cb_, "ua") || has_user(&cc, "ua")); /* s stays: B has it */
    assert_int_equal(cb_.n_pairs + cc.n_pairs, 1);
    assert_true(has_pair(&cb_, "ra", "ua") || has_pair(&cc, "ra", "ua"));

    listing(b, L_ONLINE, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "s,ub");
    listing(c, L_ROOMS, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "rb=1,shared=2");
    listing(c, L_MEMBERS, "ra", 10, buf, sizeof buf);
    assert_string_equal(buf, "(not found)");
    listing(c, L_MEMBERS, "shared", 10, buf, sizeof buf);
    assert_string_equal(buf, "s,ub");
    redisReply *r = rcmd("EXISTS wshub:node:%s:u wshub:node:%s:m", NODE_A, NODE_A);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = rcmd("ZSCORE wshub:nodes %s", NODE_A);
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    r = rcmd("HGET wshub:online:n s");
    assert_string_equal(r->str, "1"); /* B's connection only */
    freeReplyObject(r);

    /* A comes back: refused until it heartbeats, which says 0; it resyncs. */
    assert_int_equal(UADD(a, NODE_A, "ua"), PRESENCE_UNKNOWN_NODE);
    assert_int_equal(HB(a, NODE_A, 60000), 0);
    struct changes rs = {0};
    wait_changes(presence_reset(a, NODE_A, 100, on_changes, &rs), &rs);
    assert_int_equal(rs.last_ok, 0);
    assert_false(rs.more);
    struct presence_user_count us[] = {{"ua", 1}, {"s", 1}};
    struct presence_member_count ms[] = {{"ra", "ua", 1}, {"shared", "s", 1}};
    struct changes sy = {0};
    wait_changes(presence_sync(a, NODE_A, us, 2, ms, 2, on_changes, &sy), &sy);
    assert_int_equal(sy.last_ok, 0);
    assert_int_equal(sy.calls, 1);
    assert_false(sy.more);
    assert_int_equal(sy.n_users, 1); /* ua came online; s was already */
    assert_true(has_user(&sy, "ua"));
    assert_int_equal(sy.n_pairs, 1);
    assert_true(has_pair(&sy, "ra", "ua"));
    listing(c, L_ONLINE, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "s,ua,ub");
    listing(c, L_ROOMS, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "ra=1,rb=1,shared=2");
    r = rcmd("HGET wshub:online:n s");
    assert_string_equal(r->str, "2");
    freeReplyObject(r);

    /* A sweep that removed part of a node (the budget ran out): the node's score is 0,
     * its heartbeat says 0, and reset + sync restore everything. */
    assert_int_equal(HB(a, NODE_A, 300), 1);
    wait_deadline_passed(NODE_A);
    struct changes part = {0};
    wait_changes(presence_sweep(b, 2, on_changes, &part), &part); /* the node + 1 field */
    assert_int_equal(part.last_ok, 0);
    assert_true(part.more);
    assert_int_equal(part.nodes_removed, 0);
    r = rcmd("ZSCORE wshub:nodes %s", NODE_A);
    assert_string_equal(r->str, "0");
    freeReplyObject(r);
    r = rcmd("HLEN wshub:node:%s:m", NODE_A);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_int_equal(HB(a, NODE_A, 60000), 0);
    struct changes rs2 = {0};
    wait_changes(presence_reset(a, NODE_A, 100, on_changes, &rs2), &rs2);
    assert_false(rs2.more);
    assert_int_equal(part.n_pairs + rs2.n_pairs, 1); /* (ra, ua), by one or the other */
    assert_true(has_user(&rs2, "ua"));
    struct changes sy2 = {0};
    wait_changes(presence_sync(a, NODE_A, us, 2, ms, 2, on_changes, &sy2), &sy2);
    assert_int_equal(sy2.last_ok, 0);
    listing(c, L_ONLINE, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "s,ua,ub");
    listing(c, L_ROOMS, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "ra=1,rb=1,shared=2");
    /* Nothing dead is left: a sweep finds nothing. */
    struct changes none = {0};
    wait_changes(presence_sweep(c, PRESENCE_WORK_MAX, on_changes, &none), &none);
    assert_false(none.more);
    assert_int_equal(none.nodes_removed + none.n_users + none.n_pairs, 0);

    redis_conn_destroy(a);
    redis_conn_destroy(b);
    redis_conn_destroy(c);
}

#define SYNC_USERS   300
#define SYNC_MEMBERS 150

static void test_reset_and_resync(void **state)
{
    (void)state;
    rcmd0("FLUSHALL");
    struct watch wa = {0}, wb = {0};
    struct redis_conn *a = open_conn(&wa), *b = open_conn(&wb);
    assert_int_equal(HB(a, NODE_A, 60000), 0);
    assert_int_equal(HB(b, NODE_B, 60000), 0);

    /* A's local state: 300 users (user i has i % 3 + 1 connections), 150 memberships
     * (room "g<i % 7>", user i). Synced in 3 batches of at most 200 entries. */
    static char names[SYNC_USERS][16];
    static struct presence_user_count us[SYNC_USERS];
    static struct presence_member_count ms[SYNC_MEMBERS];
    static char rooms[7][16];
    for (int i = 0; i < 7; i++)
        snprintf(rooms[i], sizeof rooms[i], "g%d", i);
    for (int i = 0; i < SYNC_USERS; i++) {
        snprintf(names[i], sizeof names[i], "n%03d", i);
        us[i] = (struct presence_user_count){names[i], (uint32_t)(i % 3 + 1)};
    }
    for (int i = 0; i < SYNC_MEMBERS; i++)
        ms[i] = (struct presence_member_count){rooms[i % 7], names[i], 1};
    /* B shares n000 and the membership (g0, n000). */
    assert_int_equal(UADD(b, NODE_B, "n000"), 1);
    assert_int_equal(JOIN(b, NODE_B, "g0", "n000"), 1);
    /* A had already told Redis about one connection of n001 before the sync: setting,
     * not adding, keeps it counted once. */
    assert_int_equal(UADD(a, NODE_A, "n001"), 1);

    long long before = evalsha_calls();
    struct changes sy = {0};
    assert_int_equal(presence_sync(a, NODE_A, us, SYNC_USERS, ms, SYNC_MEMBERS, on_changes, &sy),
                     0);
    struct changes_wait w = {&sy, 3};
    assert_true(run_until(loop, changes_done, &w));
    assert_int_equal(evalsha_calls() - before, 3); /* one EVALSHA per batch */
    assert_int_equal(sy.calls, 3);
    assert_int_equal(sy.last_ok, 0);
    assert_false(sy.more);
    assert_int_equal(sy.n_users, SYNC_USERS - 2); /* n000 (B) and n001 were online */
    assert_int_equal(sy.n_pairs, SYNC_MEMBERS - 1);
    assert_int_equal(total_of(b, L_ONLINE, NULL), SYNC_USERS);
    redisReply *r = rcmd("HGET wshub:online:n n001");
    assert_string_equal(r->str, "2"); /* i % 3 + 1 = 2, not 3 */
    freeReplyObject(r);
    r = rcmd("HGET wshub:online:n n000");
    assert_string_equal(r->str, "2"); /* 1 from A + 1 from B */
    freeReplyObject(r);
    assert_int_equal(RCOUNT(b, "g0"), 22); /* i % 7 == 0 for i < 150 */

    /* Again: idempotent, nothing new. */
    struct changes again = {0};
    wait_changes(presence_sync(a, NODE_A, us, 10, NULL, 0, on_changes, &again), &again);
    assert_int_equal(again.last_ok, 0);
    assert_int_equal(again.n_users + again.n_pairs, 0);

    /* Reset in steps of 64 fields: every call bounded, "more" until done; then A's
     * users and memberships are gone, B's stay. */
    struct changes rs = {0};
    int calls = 0;
    do {
        wait_changes(presence_reset(a, NODE_A, 64, on_changes, &rs), &rs);
        assert_int_equal(rs.last_ok, 0);
        calls++;
    } while (rs.more && calls < 100);
    assert_false(rs.more);
    assert_int_equal(calls, (SYNC_USERS + SYNC_MEMBERS + 63) / 64);
    assert_int_equal(rs.n_users, SYNC_USERS - 1);
    assert_int_equal(rs.n_pairs, SYNC_MEMBERS - 1);
    assert_false(has_user(&rs, "n000"));
    char buf[256];
    listing(b, L_ONLINE, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "n000");
    listing(b, L_ROOMS, NULL, 10, buf, sizeof buf);
    assert_string_equal(buf, "g0=1");
    r = rcmd("EXISTS wshub:node:%s:u wshub:node:%s:m", NODE_A, NODE_A);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    /* Resync restores. */
    struct changes sy2 = {0};
    assert_int_equal(presence_sync(a, NODE_A, us, SYNC_USERS, ms, SYNC_MEMBERS, on_changes, &sy2),
                     0);
    w = (struct changes_wait){&sy2, 3};
    assert_true(run_until(loop, changes_done, &w));
    assert_int_equal(sy2.n_users, SYNC_USERS - 1);
    assert_int_equal(total_of(b, L_ONLINE, NULL), SYNC_USERS);
    assert_int_equal(total_of(b, L_ROOMS, NULL), 7);
    assert_int_equal(RCOUNT(b, "g0"), 22);

    /* A sync from a node Redis does not know is refused as a whole. */
    struct changes un = {0};
    wait_changes(presence_sync(b, NODE_C, us, 1, NULL, 0, on_changes, &un), &un);
    assert_int_equal(un.last_ok, PRESENCE_UNKNOWN_NODE);
    redis_conn_destroy(a);
    redis_conn_destroy(b);
}

static void test_redis_restart_heartbeat_zero(void **state)
{
    (void)state;
    rcmd0("FLUSHALL");
    struct watch w = {0};
    struct redis_conn *rc = open_conn(&w);
    /* A heartbeat alone does not list a node (a late one from a dead connection must
     * not bring back a swept node without its entries); registering does. */
    assert_int_equal(BEAT(rc, NODE_A, 60000), 0);
    assert_int_equal(BEAT(rc, NODE_A, 60000), 0);
    assert_int_equal(UADD(rc, NODE_A, "u"), PRESENCE_UNKNOWN_NODE);
    assert_int_equal(HB(rc, NODE_A, 60000), 0);
    assert_int_equal(BEAT(rc, NODE_A, 60000), 1);
    assert_int_equal(UADD(rc, NODE_A, "u"), 1);
    stop_redis();
    assert_true(run_until(loop, is_down, &w));
    struct count_res r = {0};
    assert_int_equal(presence_heartbeat(rc, NODE_A, 60000, on_count, &r), -1); /* down */
    start_redis(); /* same port, no data */
    assert_true(run_until(loop, is_up, &w));
    assert_int_equal(UADD(rc, NODE_A, "u"), PRESENCE_UNKNOWN_NODE);
    assert_int_equal(HB(rc, NODE_A, 60000), 0); /* the caller resets and resyncs */
    struct presence_user_count us[] = {{"u", 1}};
    struct changes sy = {0};
    wait_changes(presence_sync(rc, NODE_A, us, 1, NULL, 0, on_changes, &sy), &sy);
    assert_int_equal(sy.last_ok, 0);
    assert_true(has_user(&sy, "u"));
    assert_int_equal(total_of(rc, L_ONLINE, NULL), 1);
    assert_int_equal(evalsha_calls(), 4); /* the scripts were loaded again: no EVAL */
    redis_conn_destroy(rc);
}

static int group_setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    loop = loop_create();
    pg_buf = malloc(sizeof *pg_buf);
    if (!loop || !pg_buf) return -1;
    return setup(state);
}

static int group_teardown(void **state)
{
    teardown(state);
    free(pg_buf);
    loop_destroy(loop);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_joins_and_one_command_each),
        cmocka_unit_test(test_argument_checks),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_dead_node_swept),
        cmocka_unit_test(test_reset_and_resync),
        cmocka_unit_test(test_redis_restart_heartbeat_zero),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
