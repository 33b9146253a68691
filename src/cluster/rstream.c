/* Redis-backed streams: the two Lua scripts and their C wrappers; see rstream.h. */
#include "cluster/rstream.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* KEYS: stream, seq, epoch. ARGV: frame, maxlen, ttl_ms, epoch candidate, channel[,
 * suffix]. With a suffix, the frame is ARGV[1] .. seq .. suffix: the position is
 * spliced into the message itself (the hub's JSON ends with "seq":N and its trace ids).
 * A missing epoch or seq means the history is gone or never was: everything restarts
 * under a new epoch, so no client can mistake the new positions for the old ones. */
static const char publish_lua[] =
    "local epoch = redis.call('GET', KEYS[3])\n"
    "if not epoch or redis.call('EXISTS', KEYS[2]) == 0 then\n"
    "  epoch = ARGV[4]\n"
    "  redis.call('DEL', KEYS[1], KEYS[2])\n"
    "  redis.call('SET', KEYS[3], epoch)\n"
    "end\n"
    "local seq = redis.call('INCR', KEYS[2])\n"
    "local frame = ARGV[1]\n"
    "if ARGV[6] then frame = frame .. seq .. ARGV[6] end\n"
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'f', frame)\n"
    "if tonumber(ARGV[3]) > 0 then\n"
    "  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[5], epoch .. ':' .. seq .. ':' .. frame)\n"
    "return {seq, epoch}\n";

/* KEYS: stream, seq, epoch. ARGV: first id ("<since+1>-0"), count. Returns {epoch or
 * false, top or false, entries}. */
static const char read_lua[] = "local epoch = redis.call('GET', KEYS[3])\n"
                               "local top = redis.call('GET', KEYS[2])\n"
                               "if not epoch or not top then return {false, false, {}} end\n"
                               "return {epoch, top, redis.call('XRANGE', KEYS[1], ARGV[1], "
                               "'+', 'COUNT', ARGV[2])}\n";

/* KEYS: stream, seq, epoch. ARGV: epoch candidate, ttl_ms. The position now, the
 * stream started (epoch, seq 0) when it does not exist, so that a member joining a
 * room nobody has written to yet gets an epoch that the first publish keeps. */
static const char anchor_lua[] = "local epoch = redis.call('GET', KEYS[3])\n"
                                 "local seq = redis.call('GET', KEYS[2])\n"
                                 "if not epoch or not seq then\n"
                                 "  epoch = ARGV[1]\n"
                                 "  seq = '0'\n"
                                 "  redis.call('DEL', KEYS[1])\n"
                                 "  redis.call('SET', KEYS[3], epoch)\n"
                                 "  redis.call('SET', KEYS[2], seq)\n"
                                 "end\n"
                                 "if tonumber(ARGV[2]) > 0 then\n"
                                 "  redis.call('PEXPIRE', KEYS[2], ARGV[2])\n"
                                 "  redis.call('PEXPIRE', KEYS[3], ARGV[2])\n"
                                 "end\n"
                                 "return {tonumber(seq), epoch}\n";

const char *const rstream_scripts[] = {publish_lua, read_lua, anchor_lua, NULL};

static char publish_sha[41], read_sha[41], anchor_sha[41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void compute_shas(void)
{
    sha_hex(publish_lua, publish_sha);
    sha_hex(read_lua, read_sha);
    sha_hex(anchor_lua, anchor_sha);
}

/* One script call, kept until answered so that a NOSCRIPT can be retried with EVAL.
 * argv[0] is EVALSHA or EVAL, argv[1] the sha or the source, argv[2] "3", then the
 * keys and arguments (copied into buf). */
#define MAX_ARGS 12
struct call {
    struct redis_conn *rc;
    const char *source, *sha;
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    void (*done)(struct call *c, const redisReply *r);
    union {
        rstream_publish_cb publish;
        rstream_read_cb read;
    } cb;
    void *arg;
    /* read_since's */
    uint64_t since;
    char epoch[RSTREAM_EPOCH_LEN + 1];
    bool any_epoch;
    char buf[];
};

static void on_script_reply(struct redis_conn *rc, const redisReply *r, void *arg)
{
    struct call *c = arg;
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8) &&
        c->argv[0][4] == 'S') {
        c->argv[0] = "EVAL", c->lens[0] = 4;
        c->argv[1] = c->source, c->lens[1] = strlen(c->source);
        if (redis_conn_command(rc, on_script_reply, c, c->argc, c->argv, c->lens) == 0) return;
        r = NULL;
    }
    c->done(c, r);
    free(c);
}

/* Builds "wshub:{name}<suffix>" at *p, records it as the next argument. */
static void add_key(struct call *c, char **p, const char *name, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    char *k = *p;
    memcpy(k, "wshub:{", 7);
    memcpy(k + 7, name, len);
    k[7 + len] = '}';
    memcpy(k + 8 + len, suffix, sl);
    c->argv[c->argc] = k;
    c->lens[c->argc++] = 8 + len + sl;
    *p = k + 8 + len + sl;
}

static void add_arg(struct call *c, char **p, const void *data, size_t len)
{
    memcpy(*p, data, len);
    c->argv[c->argc] = *p;
    c->lens[c->argc++] = len;
    *p += len;
}

static struct call *call_new(struct redis_conn *rc, const char *source, const char *sha,
                             const char *name, size_t name_len, size_t extra)
{
    pthread_once(&sha_once, compute_shas);
    struct call *c = malloc(sizeof *c + 3 * (name_len + 16) + extra);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->rc = rc;
    c->source = source;
    c->sha = sha;
    c->argv[0] = "EVALSHA", c->lens[0] = 7;
    c->argv[1] = sha, c->lens[1] = 40;
    c->argv[2] = "3", c->lens[2] = 1;
    c->argc = 3;
    char *p = c->buf;
    add_key(c, &p, name, name_len, ":x");
    add_key(c, &p, name, name_len, ":seq");
    add_key(c, &p, name, name_len, ":epoch");
    return c;
}

static int call_send(struct call *c)
{
    if (redis_conn_command(c->rc, on_script_reply, c, c->argc, c->argv, c->lens) == 0) return 0;
    free(c);
    return -1;
}

static void publish_done(struct call *c, const redisReply *r)
{
    rstream_publish_cb cb = c->cb.publish;
    struct rstream_published res = {0};
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer > 0 &&
        r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len == RSTREAM_EPOCH_LEN) {
        res.seq = (uint64_t)r->element[0]->integer;
        memcpy(res.epoch, r->element[1]->str, RSTREAM_EPOCH_LEN);
        cb(c->arg, 0, &res);
    } else {
        cb(c->arg, -1, NULL);
    }
}

static void new_epoch(char out[RSTREAM_EPOCH_LEN + 1])
{
    uint8_t b[RSTREAM_EPOCH_LEN / 2];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        /* getrandom only fails before the pool is seeded; mix the clock in instead. */
        uint64_t t = (uint64_t)clock_now_ms() * 0x9e3779b97f4a7c15ull;
        memcpy(b, &t, sizeof b);
    }
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

int rstream_publish(struct redis_conn *rc, const char *name, size_t name_len, const void *frame,
                    size_t frame_len, uint32_t maxlen, uint32_t ttl_ms, rstream_publish_cb cb,
                    void *arg)
{
    return rstream_publish_split(rc, name, name_len, frame, frame_len, NULL, 0, maxlen, ttl_ms, cb,
                                 arg);
}

int rstream_publish_split(struct redis_conn *rc, const char *name, size_t name_len,
                          const void *frame, size_t frame_len, const void *suffix,
                          size_t suffix_len, uint32_t maxlen, uint32_t ttl_ms,
                          rstream_publish_cb cb, void *arg)
{
    if (!redis_conn_up(rc) || maxlen == 0) return -1;
    struct call *c = call_new(rc, publish_lua, publish_sha, name, name_len,
                              frame_len + suffix_len + 3 * 12 + RSTREAM_EPOCH_LEN + name_len + 8);
    if (!c) return -1;
    char *p = c->buf;
    for (int i = 3; i < c->argc; i++)
        p += c->lens[i];
    char num[24], ep[RSTREAM_EPOCH_LEN + 1];
    add_arg(c, &p, frame, frame_len);
    add_arg(c, &p, num, (size_t)snprintf(num, sizeof num, "%u", maxlen));
    add_arg(c, &p, num, (size_t)snprintf(num, sizeof num, "%u", ttl_ms));
    new_epoch(ep);
    add_arg(c, &p, ep, RSTREAM_EPOCH_LEN);
    memcpy(p, "wshub:{", 7);
    memcpy(p + 7, name, name_len);
    p[7 + name_len] = '}';
    c->argv[c->argc] = p;
    c->lens[c->argc++] = 8 + name_len;
    p += 8 + name_len;
    if (suffix) add_arg(c, &p, suffix, suffix_len);
    c->done = publish_done;
    c->cb.publish = cb;
    c->arg = arg;
    return call_send(c);
}

static void anchor_done(struct call *c, const redisReply *r)
{
    struct rstream_published res = {0};
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer >= 0 &&
        r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len == RSTREAM_EPOCH_LEN) {
        res.seq = (uint64_t)r->element[0]->integer;
        memcpy(res.epoch, r->element[1]->str, RSTREAM_EPOCH_LEN);
        c->cb.publish(c->arg, 0, &res);
    } else {
        c->cb.publish(c->arg, -1, NULL);
    }
}

int rstream_anchor(struct redis_conn *rc, const char *name, size_t name_len, uint32_t ttl_ms,
                   rstream_publish_cb cb, void *arg)
{
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, anchor_lua, anchor_sha, name, name_len, 64);
    if (!c) return -1;
    char *p = c->buf;
    for (int i = 3; i < c->argc; i++)
        p += c->lens[i];
    char num[24], ep[RSTREAM_EPOCH_LEN + 1];
    new_epoch(ep);
    add_arg(c, &p, ep, RSTREAM_EPOCH_LEN);
    add_arg(c, &p, num, (size_t)snprintf(num, sizeof num, "%u", ttl_ms));
    c->done = anchor_done;
    c->cb.publish = cb;
    c->arg = arg;
    return call_send(c);
}

/* An XRANGE entry [id "<seq>-0", ["f", frame]] to an rstream_entry. */
static int parse_entry(const redisReply *e, struct rstream_entry *out)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
        e->element[1]->elements != 2 || e->element[1]->element[1]->type != REDIS_REPLY_STRING)
        return -1;
    const redisReply *id = e->element[0];
    const char *dash = memchr(id->str, '-', id->len);
    if (!dash || redis_parse_u64(id->str, (size_t)(dash - id->str), &out->seq) < 0) return -1;
    out->data = e->element[1]->element[1]->str;
    out->len = e->element[1]->element[1]->len;
    return 0;
}

static void read_done(struct call *c, const redisReply *r)
{
    rstream_read_cb cb = c->cb.read;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        cb(c->arg, RSTREAM_READ_FAILED, "", 0, NULL, 0);
        return;
    }
    const redisReply *ep = r->element[0], *top_r = r->element[1], *list = r->element[2];
    uint64_t top = 0;
    if (ep->type != REDIS_REPLY_STRING || top_r->type != REDIS_REPLY_STRING) {
        cb(c->arg, RSTREAM_READ_EPOCH, "", 0, NULL, 0); /* no such stream (any more) */
        return;
    }
    char epoch[RSTREAM_EPOCH_LEN + 1] = "";
    if (ep->len != RSTREAM_EPOCH_LEN || redis_parse_u64(top_r->str, top_r->len, &top) < 0) {
        cb(c->arg, RSTREAM_READ_FAILED, "", 0, NULL, 0);
        return;
    }
    memcpy(epoch, ep->str, RSTREAM_EPOCH_LEN);
    if (!c->any_epoch && strcmp(epoch, c->epoch)) {
        cb(c->arg, RSTREAM_READ_EPOCH, epoch, top, NULL, 0);
        return;
    }
    if (c->since > top) {
        cb(c->arg, RSTREAM_READ_GAP, epoch, top, NULL, 0);
        return;
    }
    struct rstream_entry *e = calloc(list->elements ? list->elements : 1, sizeof *e);
    if (!e) {
        cb(c->arg, RSTREAM_READ_FAILED, epoch, top, NULL, 0);
        return;
    }
    enum rstream_read_status st = RSTREAM_READ_OK;
    for (size_t i = 0; i < list->elements; i++) {
        if (parse_entry(list->element[i], &e[i]) < 0) {
            st = RSTREAM_READ_FAILED;
            break;
        }
        if (e[i].seq != c->since + 1 + i) {
            st = RSTREAM_READ_GAP;
            break;
        }
    }
    /* Nothing returned although positions exist after since: they were trimmed. */
    if (st == RSTREAM_READ_OK && list->elements == 0 && top > c->since) st = RSTREAM_READ_GAP;
    cb(c->arg, st, epoch, top, st == RSTREAM_READ_OK ? e : NULL,
       st == RSTREAM_READ_OK ? list->elements : 0);
    free(e);
}

int rstream_read_since(struct redis_conn *rc, const char *name, size_t name_len, const char *epoch,
                       uint64_t since, uint32_t max, rstream_read_cb cb, void *arg)
{
    if (!redis_conn_up(rc) || max == 0 || since == UINT64_MAX) return -1;
    if (epoch && strlen(epoch) != RSTREAM_EPOCH_LEN) return -1;
    struct call *c = call_new(rc, read_lua, read_sha, name, name_len, 64);
    if (!c) return -1;
    char *p = c->buf;
    for (int i = 3; i < c->argc; i++)
        p += c->lens[i];
    char num[32];
    add_arg(c, &p, num, (size_t)snprintf(num, sizeof num, "%llu-0", (unsigned long long)since + 1));
    add_arg(c, &p, num, (size_t)snprintf(num, sizeof num, "%u", max));
    c->since = since;
    c->any_epoch = !epoch;
    if (epoch) memcpy(c->epoch, epoch, RSTREAM_EPOCH_LEN + 1);
    c->done = read_done;
    c->cb.read = cb;
    c->arg = arg;
    return call_send(c);
}

int rstream_msg_parse(const char *msg, size_t len, struct rstream_published *hdr,
                      const char **frame, size_t *frame_len)
{
    if (len < RSTREAM_EPOCH_LEN + 3 || msg[RSTREAM_EPOCH_LEN] != ':') return -1;
    for (size_t i = 0; i < RSTREAM_EPOCH_LEN; i++) {
        char ch = msg[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return -1;
    }
    const char *s = msg + RSTREAM_EPOCH_LEN + 1, *end = msg + len;
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || redis_parse_u64(s, (size_t)(colon - s), &hdr->seq) < 0 || hdr->seq == 0 ||
        (colon - s > 1 && s[0] == '0'))
        return -1;
    memcpy(hdr->epoch, msg, RSTREAM_EPOCH_LEN);
    hdr->epoch[RSTREAM_EPOCH_LEN] = 0;
    *frame = colon + 1;
    *frame_len = (size_t)(end - colon - 1);
    return 0;
}
