/* The managed Redis connection; see redis_conn.h for the contract. */
#include "cluster/redis_conn.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/async.h>

#include "base/log.h"
#include "cluster/redis_loop.h"

const uint32_t redis_rtt_bounds_us[REDIS_RTT_BUCKETS - 1] = {100,  250,   500,   1000,  2500,
                                                             5000, 10000, 25000, 100000};

#define WATCHDOG_MS 50u

/* Counters are written by the loop thread only and read by metrics from others:
 * relaxed atomic stores and loads (no read-modify-write needed, one writer). */
#define STAT_BUMP(f, n) __atomic_store_n(&(f), (f) + (uint64_t)(n), __ATOMIC_RELAXED)

/* One command in flight. Replies come back in order, so the list head is the oldest
 * (the one the stall watchdog looks at). */
struct pending {
    struct pending *next, *prev;
    struct redis_conn *rc;
    redis_reply_cb cb; /* NULL for the handshake */
    void *arg;
    uint64_t sent_us;
};

struct redis_conn {
    struct loop *loop;
    struct redis_conn_opts o;
    redis_state_cb state_cb;
    void *arg;
    struct redis_loop_io io;
    bool up, destroying, kill; /* kill: drop the connection at the next watchdog tick */
    int handshake_left;
    bool handshake_failed;
    uint32_t failures; /* in a row; drives the backoff */
    uint64_t rng, attempt_ms;
    struct pending inflight; /* sentinel of a circular list */
    struct timer retry, watchdog;
    struct redis_stats st;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t next_rand(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint32_t redis_backoff_ms(uint32_t failures, uint32_t base_ms, uint32_t cap_ms, uint64_t *rng)
{
    uint64_t ceiling = base_ms;
    for (uint32_t i = 0; i < failures && ceiling < cap_ms; i++)
        ceiling <<= 1;
    if (ceiling > cap_ms) ceiling = cap_ms;
    return (uint32_t)(next_rand(rng) % (ceiling + 1));
}

static void record_rtt(struct redis_stats *st, uint64_t us)
{
    int b = 0;
    while (b < REDIS_RTT_BUCKETS - 1 && us > redis_rtt_bounds_us[b])
        b++;
    STAT_BUMP(st->rtt_hist[b], 1);
    STAT_BUMP(st->rtt_count, 1);
    STAT_BUMP(st->rtt_sum_us, us);
}

static void arm_watchdog(struct redis_conn *rc)
{
    if (!loop_timer_armed(&rc->watchdog)) loop_timer_arm(rc->loop, &rc->watchdog, WATCHDOG_MS);
}

static void set_up(struct redis_conn *rc)
{
    rc->up = true;
    rc->failures = 0;
    STAT_BUMP(rc->st.connects, 1);
    log_info("redis up", "host=%s port=%u db=%u", rc->o.url.host, rc->o.url.port, rc->o.url.db);
    if (rc->state_cb) rc->state_cb(rc, true, rc->arg);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct pending *p = priv;
    struct redis_conn *rc = p->rc;
    const redisReply *reply = r;
    p->prev->next = p->next;
    p->next->prev = p->prev;
    if (reply) {
        STAT_BUMP(rc->st.replies, 1);
        if (reply->type == REDIS_REPLY_ERROR) STAT_BUMP(rc->st.error_replies, 1);
        record_rtt(&rc->st, now_us() - p->sent_us);
    }
    if (p->cb) {
        p->cb(rc, reply, p->arg);
    } else if (reply) { /* a handshake step */
        if (reply->type == REDIS_REPLY_ERROR && !rc->handshake_failed) {
            rc->handshake_failed = true;
            STAT_BUMP(rc->st.auth_failures, 1);
            log_warn("redis handshake refused", "host=%s port=%u error_len=%zu", rc->o.url.host,
                     rc->o.url.port, reply->len);
        }
        if (--rc->handshake_left == 0) {
            if (rc->handshake_failed) {
                rc->kill = true; /* not from inside hiredis: at the next watchdog tick */
                loop_timer_cancel(rc->loop, &rc->watchdog);
                loop_timer_arm(rc->loop, &rc->watchdog, 0);
            } else {
                set_up(rc);
            }
        }
    }
    free(p);
}

static int send_argv(struct redis_conn *rc, redis_reply_cb cb, void *arg, int argc,
                     const char **argv, const size_t *argvlen)
{
    char *cmd;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) return -1;
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        redisFreeCommand(cmd);
        return -1;
    }
    *p = (struct pending){.rc = rc, .cb = cb, .arg = arg, .sent_us = now_us()};
    if (redisAsyncFormattedCommand(rc->io.ac, on_reply, p, cmd, (size_t)len) != REDIS_OK) {
        redisFreeCommand(cmd);
        free(p);
        return -1;
    }
    redisFreeCommand(cmd);
    p->prev = rc->inflight.prev;
    p->next = &rc->inflight;
    p->prev->next = p;
    rc->inflight.prev = p;
    STAT_BUMP(rc->st.commands, 1);
    STAT_BUMP(rc->st.bytes_out, (uint64_t)len);
    arm_watchdog(rc);
    return 0;
}

static void schedule_retry(struct redis_conn *rc)
{
    uint32_t ms =
        redis_backoff_ms(rc->failures, rc->o.backoff_base_ms, rc->o.backoff_max_ms, &rc->rng);
    if (rc->failures < 32) rc->failures++;
    loop_timer_arm(rc->loop, &rc->retry, ms);
}

/* The connection is gone (or never came): say so once, then retry later. */
static void lost(struct redis_conn *rc)
{
    if (rc->destroying) return;
    bool was_up = rc->up;
    rc->up = false;
    rc->kill = false;
    STAT_BUMP(rc->st.failures, 1);
    loop_timer_cancel(rc->loop, &rc->watchdog);
    schedule_retry(rc);
    if (was_up) {
        log_warn("redis down", "host=%s port=%u", rc->o.url.host, rc->o.url.port);
        if (rc->state_cb) rc->state_cb(rc, false, rc->arg);
    }
}

static void on_gone(struct redis_loop_io *io)
{
    lost((struct redis_conn *)((char *)io - offsetof(struct redis_conn, io)));
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    (void)ac;
    (void)status; /* failure is reported through the cleanup hook (lost) */
}

static void connect_now(struct redis_conn *rc)
{
    const struct redis_url *u = &rc->o.url;
    rc->attempt_ms = loop_now_update(rc->loop);
    rc->handshake_failed = false;
    rc->handshake_left = 0;
    redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        lost(rc);
        return;
    }
    redis_loop_attach(&rc->io, rc->loop, ac, on_gone);
    ac->data = rc;
    redisAsyncSetConnectCallback(ac, on_connect); /* also asks for the first write event */
    /* Pipelined: hiredis writes them once the socket is connected. */
    char db[4];
    const char *argv[3];
    size_t lens[3];
    int ok = 0;
    if (u->has_password) {
        int n = 0;
        argv[n] = "AUTH", lens[n++] = 4;
        if (u->user[0]) argv[n] = u->user, lens[n] = strlen(u->user), n++;
        argv[n] = u->password, lens[n] = strlen(u->password), n++;
        ok |= send_argv(rc, NULL, NULL, n, argv, lens);
        rc->handshake_left++;
    }
    if (u->db) {
        lens[1] = (size_t)snprintf(db, sizeof db, "%u", u->db);
        argv[0] = "SELECT", lens[0] = 6, argv[1] = db;
        ok |= send_argv(rc, NULL, NULL, 2, argv, lens);
        rc->handshake_left++;
    }
    for (const char *const *src = rc->o.preload; src && *src; src++) {
        argv[0] = "SCRIPT", lens[0] = 6, argv[1] = "LOAD", lens[1] = 4;
        argv[2] = *src, lens[2] = strlen(*src);
        ok |= send_argv(rc, NULL, NULL, 3, argv, lens);
        rc->handshake_left++;
    }
    argv[0] = "PING", lens[0] = 4;
    ok |= send_argv(rc, NULL, NULL, 1, argv, lens);
    rc->handshake_left++;
    if (ok != 0) { /* out of memory: drop this attempt */
        rc->kill = true;
        loop_timer_arm(rc->loop, &rc->watchdog, 0);
    }
}

static void on_retry(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct redis_conn *rc = (struct redis_conn *)((char *)t - offsetof(struct redis_conn, retry));
    STAT_BUMP(rc->st.reconnects, 1);
    connect_now(rc);
}

static void on_watchdog(struct loop *loop, struct timer *t)
{
    struct redis_conn *rc =
        (struct redis_conn *)((char *)t - offsetof(struct redis_conn, watchdog));
    redisAsyncContext *ac = rc->io.ac;
    if (!ac) return;
    bool stalled = false;
    if (!rc->up && loop_now(loop) - rc->attempt_ms >= rc->o.connect_timeout_ms) stalled = true;
    struct pending *oldest = rc->inflight.next;
    if (oldest != &rc->inflight &&
        now_us() - oldest->sent_us >= (uint64_t)rc->o.command_timeout_ms * 1000u)
        stalled = true;
    if (stalled) STAT_BUMP(rc->st.timeouts, 1);
    if (stalled || rc->kill) {
        if (stalled) log_warn("redis timeout", "host=%s port=%u", rc->o.url.host, rc->o.url.port);
        redisAsyncFree(ac); /* pending callbacks get NULL, then the cleanup hook: lost() */
        return;
    }
    if (!rc->up || oldest != &rc->inflight) arm_watchdog(rc);
}

struct redis_conn *redis_conn_create(struct loop *loop, const struct redis_conn_opts *opts,
                                     redis_state_cb state_cb, void *arg)
{
    struct redis_conn *rc = calloc(1, sizeof *rc);
    if (!rc) return NULL;
    rc->loop = loop;
    rc->o = *opts;
    if (!rc->o.connect_timeout_ms) rc->o.connect_timeout_ms = 2000;
    if (!rc->o.command_timeout_ms) rc->o.command_timeout_ms = 5000;
    if (!rc->o.backoff_base_ms) rc->o.backoff_base_ms = 100;
    if (!rc->o.backoff_max_ms) rc->o.backoff_max_ms = 5000;
    rc->state_cb = state_cb;
    rc->arg = arg;
    rc->rng = now_us() ^ (uint64_t)(uintptr_t)rc;
    rc->inflight.next = rc->inflight.prev = &rc->inflight;
    loop_timer_init(&rc->retry, on_retry);
    loop_timer_init(&rc->watchdog, on_watchdog);
    connect_now(rc);
    return rc;
}

void redis_conn_destroy(struct redis_conn *rc)
{
    if (!rc) return;
    rc->destroying = true;
    if (rc->io.ac) redisAsyncFree(rc->io.ac);
    loop_timer_cancel(rc->loop, &rc->retry);
    loop_timer_cancel(rc->loop, &rc->watchdog);
    free(rc);
}

bool redis_conn_up(const struct redis_conn *rc)
{
    return rc->up;
}

int redis_conn_command(struct redis_conn *rc, redis_reply_cb cb, void *arg, int argc,
                       const char **argv, const size_t *argvlen)
{
    if (!rc->up || !rc->io.ac || rc->kill || argc < 1 || !cb) {
        STAT_BUMP(rc->st.refused, 1);
        return -1;
    }
    /* Subscriptions answer many times per command: they need a connection of their own,
     * which this one is not. */
    static const char *const no[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (argvlen[0] == strlen(no[i]) && !strncasecmp(argv[0], no[i], argvlen[0])) return -1;
    return send_argv(rc, cb, arg, argc, argv, argvlen);
}

/* Every reply of a subscriber connection: hiredis routes the "message" and
 * "(un)subscribe" arrays of every channel here (privdata: the connection). NULL when
 * the connection goes: lost() reports that once. */
static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    struct redis_conn *rc = priv;
    const redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    const redisReply *kind = reply->element[0], *ch = reply->element[1], *pl = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING) return;
    if (kind->len == 7 && !memcmp(kind->str, "message", 7) && pl->type == REDIS_REPLY_STRING) {
        STAT_BUMP(rc->st.messages, 1);
        STAT_BUMP(rc->st.bytes_in, pl->len);
        rc->o.on_message(rc, ch->str, ch->len, pl->str, pl->len, rc->arg);
    } else if (kind->len == 9 && !memcmp(kind->str, "subscribe", 9)) {
        STAT_BUMP(rc->st.replies, 1);
        if (rc->o.on_subscribed) rc->o.on_subscribed(rc, ch->str, ch->len, rc->arg);
    } else {
        STAT_BUMP(rc->st.replies, 1);
    }
}

int redis_conn_subscribe(struct redis_conn *rc, bool subscribe, int n, const char **channels,
                         const size_t *lens)
{
    if (!rc->up || !rc->io.ac || rc->kill || n < 1 || !rc->o.on_message) {
        STAT_BUMP(rc->st.refused, 1);
        return -1;
    }
    const char **argv = malloc(sizeof *argv * (size_t)(n + 1));
    size_t *argl = malloc(sizeof *argl * (size_t)(n + 1));
    char *cmd = NULL;
    long long len = -1;
    if (argv && argl) {
        argv[0] = subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE";
        argl[0] = strlen(argv[0]);
        memcpy(argv + 1, channels, sizeof *argv * (size_t)n);
        memcpy(argl + 1, lens, sizeof *argl * (size_t)n);
        len = redisFormatCommandArgv(&cmd, n + 1, argv, argl);
    }
    free(argv);
    free(argl);
    if (len < 0) return -1;
    int r = redisAsyncFormattedCommand(rc->io.ac, on_sub_reply, rc, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (r != REDIS_OK) return -1;
    STAT_BUMP(rc->st.commands, 1);
    STAT_BUMP(rc->st.bytes_out, (uint64_t)len);
    return 0;
}

const struct redis_stats *redis_conn_stats(const struct redis_conn *rc)
{
    return &rc->st;
}

int redis_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19) return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}
