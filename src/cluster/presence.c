/* Cluster-wide presence in Redis: the Lua scripts and their C wrappers; see presence.h. */
#include "cluster/presence.h"

#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the scripts ----
 *
 * Every script gets no KEYS (they compute their keys from the names: see the header)
 * and starts with the same helpers, which keep the global sums in step with a change
 * of n connections. The sums only change together with a node's field, so a sum never
 * goes below the contributions left; the "was > 0" tests guard against a hand-edited or
 * half-lost dataset rather than against anything the scripts can do. */
#define LUA_HELPERS                                                                                \
    "local function now_ms()\n"                                                                    \
    "  local t = redis.call('TIME')\n"                                                             \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                         \
    "end\n"                                                                                        \
    "local function user_inc(user, n)\n"                                                           \
    "  local c = redis.call('HINCRBY', 'wshub:online:n', user, n)\n"                               \
    "  if c == n then redis.call('ZADD', 'wshub:online', 0, user) end\n"                           \
    "  return c\n"                                                                                 \
    "end\n"                                                                                        \
    "local function user_dec(user, n)\n"                                                           \
    "  local c = redis.call('HINCRBY', 'wshub:online:n', user, -n)\n"                              \
    "  if c > 0 then return c end\n"                                                               \
    "  redis.call('HDEL', 'wshub:online:n', user)\n"                                               \
    "  redis.call('ZREM', 'wshub:online', user)\n"                                                 \
    "  return 0\n"                                                                                 \
    "end\n"                                                                                        \
    "local function room_inc(room, user, n)\n"                                                     \
    "  local c = redis.call('HINCRBY', 'wshub:room:' .. room .. ':c', user, n)\n"                  \
    "  if c == n then\n"                                                                           \
    "    redis.call('ZADD', 'wshub:room:' .. room .. ':m', 0, user)\n"                             \
    "    if redis.call('HINCRBY', 'wshub:rooms:n', room, 1) == 1 then\n"                           \
    "      redis.call('ZADD', 'wshub:rooms', 0, room)\n"                                           \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return c\n"                                                                                 \
    "end\n"                                                                                        \
    "local function room_dec(room, user, n)\n"                                                     \
    "  local ck = 'wshub:room:' .. room .. ':c'\n"                                                 \
    "  local c = redis.call('HINCRBY', ck, user, -n)\n"                                            \
    "  if c > 0 then return c end\n"                                                               \
    "  redis.call('HDEL', ck, user)\n"                                                             \
    "  if c + n > 0 then\n"                                                                        \
    "    redis.call('ZREM', 'wshub:room:' .. room .. ':m', user)\n"                                \
    "    if redis.call('HINCRBY', 'wshub:rooms:n', room, -1) <= 0 then\n"                          \
    "      redis.call('HDEL', 'wshub:rooms:n', room)\n"                                            \
    "      redis.call('ZREM', 'wshub:rooms', room)\n"                                              \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return 0\n"                                                                                 \
    "end\n"                                                                                        \
    "local function alive(node)\n"                                                                 \
    "  return redis.call('ZSCORE', 'wshub:nodes', node)\n"                                         \
    "end\n"

/* Removes up to budget fields of a node (memberships first, then users) with their
 * share of the sums; appends what reached 0. HRANDFIELD with a count is O(count) (it
 * copies the whole hash only when count > size / 3, i.e. O(3 * count) at most), and
 * the fields it returns are deleted, so repeated calls make progress. Returns the
 * budget left and whether the node has nothing left. */
#define LUA_DROP                                                                                   \
    "local function drop(node, budget, users, pairs)\n"                                            \
    "  local mk = 'wshub:node:' .. node .. ':m'\n"                                                 \
    "  local uk = 'wshub:node:' .. node .. ':u'\n"                                                 \
    "  if budget > 0 then\n"                                                                       \
    "    local f = redis.call('HRANDFIELD', mk, budget, 'WITHVALUES')\n"                           \
    "    local names = {}\n"                                                                       \
    "    for i = 1, #f, 2 do\n"                                                                    \
    "      local k, n = f[i], tonumber(f[i + 1])\n"                                                \
    "      names[#names + 1] = k\n"                                                                \
    "      local nl = string.find(k, '\\n', 1, true)\n"                                            \
    "      if nl and n and n > 0 then\n"                                                           \
    "        local room, user = string.sub(k, 1, nl - 1), string.sub(k, nl + 1)\n"                 \
    "        if room_dec(room, user, n) == 0 then\n"                                               \
    "          pairs[#pairs + 1] = room\n"                                                         \
    "          pairs[#pairs + 1] = user\n"                                                         \
    "        end\n"                                                                                \
    "      end\n"                                                                                  \
    "    end\n"                                                                                    \
    "    if #names > 0 then redis.call('HDEL', mk, unpack(names)) end\n"                           \
    "    budget = budget - #names\n"                                                               \
    "  end\n"                                                                                      \
    "  if budget > 0 then\n"                                                                       \
    "    local f = redis.call('HRANDFIELD', uk, budget, 'WITHVALUES')\n"                           \
    "    local names = {}\n"                                                                       \
    "    for i = 1, #f, 2 do\n"                                                                    \
    "      local user, n = f[i], tonumber(f[i + 1])\n"                                             \
    "      names[#names + 1] = user\n"                                                             \
    "      if n and n > 0 and user_dec(user, n) == 0 then users[#users + 1] = user end\n"          \
    "    end\n"                                                                                    \
    "    if #names > 0 then redis.call('HDEL', uk, unpack(names)) end\n"                           \
    "    budget = budget - #names\n"                                                               \
    "  end\n"                                                                                      \
    "  return budget, redis.call('EXISTS', mk, uk) == 0\n"                                         \
    "end\n"

/* ARGV: node, ttl_ms. Returns 1 when the node's contribution is intact: listed, and
 * either its deadline has not passed or no sweep has started on it (a sweep sets the
 * score to 0 first), so a node that was merely late keeps its entries without a resync. */
static const char heartbeat_lua[] =
    LUA_HELPERS "local now = now_ms()\n"
                "local d = alive(ARGV[1])\n"
                "if not d and ARGV[3] ~= '1' then return 0 end\n"
                "redis.call('ZADD', 'wshub:nodes', string.format('%.0f', now + tonumber(ARGV[2])), "
                "ARGV[1])\n"
                "if d and tonumber(d) > 0 then return 1 end\n"
                "return 0\n";

/* ARGV: node, user, +1 or -1. Returns {count after, clamped}; count -2: unknown node. */
static const char user_lua[] =
    LUA_HELPERS "local node, user = ARGV[1], ARGV[2]\n"
                "if not alive(node) then return {-2, 0} end\n"
                "local nk = 'wshub:node:' .. node .. ':u'\n"
                "if ARGV[3] == '1' then\n"
                "  redis.call('HINCRBY', nk, user, 1)\n"
                "  return {user_inc(user, 1), 0}\n"
                "end\n"
                "local have = tonumber(redis.call('HGET', nk, user) or '0')\n"
                "if have <= 0 then\n"
                "  return {tonumber(redis.call('HGET', 'wshub:online:n', user) or '0'), 1}\n"
                "end\n"
                "if have == 1 then redis.call('HDEL', nk, user)\n"
                "else redis.call('HINCRBY', nk, user, -1) end\n"
                "return {user_dec(user, 1), 0}\n";

/* ARGV: node, room, user, +1 or -1. Returns {count in the room after, clamped}. */
static const char member_lua[] =
    LUA_HELPERS "local node, room, user = ARGV[1], ARGV[2], ARGV[3]\n"
                "if not alive(node) then return {-2, 0} end\n"
                "local nk = 'wshub:node:' .. node .. ':m'\n"
                "local f = room .. '\\n' .. user\n"
                "if ARGV[4] == '1' then\n"
                "  redis.call('HINCRBY', nk, f, 1)\n"
                "  return {room_inc(room, user, 1), 0}\n"
                "end\n"
                "local have = tonumber(redis.call('HGET', nk, f) or '0')\n"
                "if have <= 0 then\n"
                "  return {tonumber(redis.call('HGET', 'wshub:room:' .. room .. ':c', user) or "
                "'0'), 1}\n"
                "end\n"
                "if have == 1 then redis.call('HDEL', nk, f)\n"
                "else redis.call('HINCRBY', nk, f, -1) end\n"
                "return {room_dec(room, user, 1), 0}\n";

/* ARGV: node, max. Returns {more, users offline, flat (room, user) pairs gone, 0}. */
static const char reset_lua[] =
    LUA_HELPERS LUA_DROP "local users, pairs = {}, {}\n"
                         "local left, empty = drop(ARGV[1], tonumber(ARGV[2]), users, pairs)\n"
                         "return {empty and 0 or 1, users, pairs, 0}\n";

/* ARGV: max. A dead node's score becomes 0 before anything of it is removed: it stays
 * dead (and first in line for the next sweep), and its heartbeat will say 0. Each dead
 * node visited costs one unit of the budget besides its fields, so a call's work is
 * bounded even when many dead nodes have nothing left. Returns {more, users, pairs,
 * nodes removed}. */
static const char sweep_lua[] = LUA_HELPERS LUA_DROP
    "local now = string.format('(%.0f', now_ms())\n"
    "local budget = tonumber(ARGV[1])\n"
    "local users, pairs, removed, more = {}, {}, 0, 0\n"
    "while true do\n"
    "  local dead = redis.call('ZRANGEBYSCORE', 'wshub:nodes', '-inf', now, 'LIMIT', 0, 1)\n"
    "  if #dead == 0 then break end\n"
    "  if budget <= 0 then more = 1 break end\n"
    "  redis.call('ZADD', 'wshub:nodes', 0, dead[1])\n"
    "  local empty\n"
    "  budget, empty = drop(dead[1], budget - 1, users, pairs)\n"
    "  if not empty then more = 1 break end\n"
    "  redis.call('ZREM', 'wshub:nodes', dead[1])\n"
    "  removed = removed + 1\n"
    "end\n"
    "return {more, users, pairs, removed}\n";

/* ARGV: node, number of users, (user, count) each, then (room, user, count) each. Sets
 * the node's fields to the counts; returns {0 or -2 (unknown node), users now online,
 * pairs now present, 0}. */
static const char sync_lua[] =
    LUA_HELPERS "local node = ARGV[1]\n"
                "if not alive(node) then return {-2, {}, {}, 0} end\n"
                "local uk = 'wshub:node:' .. node .. ':u'\n"
                "local mk = 'wshub:node:' .. node .. ':m'\n"
                "local users, pairs = {}, {}\n"
                "local i = 3\n"
                "for _ = 1, tonumber(ARGV[2]) do\n"
                "  local user, n = ARGV[i], tonumber(ARGV[i + 1])\n"
                "  i = i + 2\n"
                "  local old = tonumber(redis.call('HGET', uk, user) or '0')\n"
                "  if n > old then\n"
                "    redis.call('HSET', uk, user, ARGV[i - 1])\n"
                "    if user_inc(user, n - old) == n - old then users[#users + 1] = user end\n"
                "  elseif n < old then\n"
                "    redis.call('HSET', uk, user, ARGV[i - 1])\n"
                "    user_dec(user, old - n)\n"
                "  end\n"
                "end\n"
                "while i <= #ARGV do\n"
                "  local room, user, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])\n"
                "  local f = room .. '\\n' .. user\n"
                "  local old = tonumber(redis.call('HGET', mk, f) or '0')\n"
                "  if n > old then\n"
                "    redis.call('HSET', mk, f, ARGV[i + 2])\n"
                "    if room_inc(room, user, n - old) == n - old then\n"
                "      pairs[#pairs + 1] = room\n"
                "      pairs[#pairs + 1] = user\n"
                "    end\n"
                "  elseif n < old then\n"
                "    redis.call('HSET', mk, f, ARGV[i + 2])\n"
                "    room_dec(room, user, old - n)\n"
                "  end\n"
                "  i = i + 3\n"
                "end\n"
                "return {0, users, pairs, 0}\n";

/* Pages. ARGV: after ("" from the start), limit. One more id than the limit is read, to
 * tell whether more remain. */
#define LUA_PAGE                                                                                   \
    "local function page(key, after, limit)\n"                                                     \
    "  local min = '-'\n"                                                                          \
    "  if after ~= '' then min = '(' .. after end\n"                                               \
    "  return redis.call('ZRANGEBYLEX', key, min, '+', 'LIMIT', 0, tonumber(limit) + 1)\n"         \
    "end\n"

static const char online_lua[] = LUA_PAGE
    "return {redis.call('ZCARD', 'wshub:online'), page('wshub:online', ARGV[1], ARGV[2])}\n";

static const char rooms_lua[] =
    LUA_PAGE "local ids = page('wshub:rooms', ARGV[1], ARGV[2])\n"
             "local n = {}\n"
             "if #ids > 0 then n = redis.call('HMGET', 'wshub:rooms:n', unpack(ids)) end\n"
             "return {redis.call('ZCARD', 'wshub:rooms'), ids, n}\n";

/* ARGV: room, after, limit. Total -1: no such room. */
static const char members_lua[] = LUA_PAGE "local key = 'wshub:room:' .. ARGV[1] .. ':m'\n"
                                           "local total = redis.call('ZCARD', key)\n"
                                           "if total == 0 then return {-1, {}} end\n"
                                           "return {total, page(key, ARGV[2], ARGV[3])}\n";

/* ARGV: room. */
static const char count_lua[] =
    "return tonumber(redis.call('HGET', 'wshub:rooms:n', ARGV[1]) or '0')\n";

enum script {
    S_HEARTBEAT,
    S_USER,
    S_MEMBER,
    S_RESET,
    S_SWEEP,
    S_SYNC,
    S_ONLINE,
    S_ROOMS,
    S_MEMBERS,
    S_COUNT,
    S_N
};

const char *const presence_scripts[] = {heartbeat_lua, user_lua,  member_lua, reset_lua,
                                        sweep_lua,     sync_lua,  online_lua, rooms_lua,
                                        members_lua,   count_lua, NULL};

static char shas[S_N][41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void compute_shas(void)
{
    for (int s = 0; s < S_N; s++) {
        unsigned char d[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)presence_scripts[s], strlen(presence_scripts[s]), d);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            snprintf(shas[s] + 2 * i, 3, "%02x", d[i]);
    }
}

/* ---- counters and argument checks ---- */

static _Atomic uint64_t refused_args, clamped;

void presence_stats_get(struct presence_stats *out)
{
    out->refused_args = atomic_load_explicit(&refused_args, memory_order_relaxed);
    out->clamped = atomic_load_explicit(&clamped, memory_order_relaxed);
}

static int refuse(void)
{
    atomic_fetch_add_explicit(&refused_args, 1, memory_order_relaxed);
    return -1;
}

bool presence_name_ok(const char *s)
{
    if (!s) return false;
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= PRESENCE_MAX_NAME || (unsigned char)s[n] < 0x20 || s[n] == 0x7f) return false;
    return n > 0;
}

static bool node_ok(const char *node)
{
    if (!node) return false;
    for (int i = 0; i < PRESENCE_NODE_LEN; i++)
        if (!((node[i] >= '0' && node[i] <= '9') || (node[i] >= 'a' && node[i] <= 'f')))
            return false;
    return node[PRESENCE_NODE_LEN] == 0;
}

/* NULL and "" start from the beginning; anything else must be a name. */
static bool after_ok(const char *after)
{
    return !after || !*after || presence_name_ok(after);
}

/* ---- one script call ---- */

struct sync_state {
    presence_changes_cb cb;
    void *arg;
    size_t pending; /* batches not answered yet */
    bool failed;    /* a batch could not be sent */
};

/* Kept until answered so that a NOSCRIPT can be retried with EVAL. argv[0] is EVALSHA
 * or EVAL, argv[1] the sha or the source, argv[2] "0" (no KEYS), then the arguments,
 * copied after the argv and lens arrays in the same allocation. */
struct call {
    struct redis_conn *rc;
    enum script script;
    int argc;
    const char **argv;
    size_t *lens;
    char *p; /* where the next argument is copied */
    void (*done)(struct call *c, const redisReply *r);
    union {
        presence_count_cb count;
        presence_changes_cb changes;
        presence_page_cb page;
    } cb;
    void *arg;
    uint32_t limit;          /* pages */
    bool rooms;              /* the rooms page carries member counts */
    struct sync_state *sync; /* sync batches */
};

static void on_script_reply(struct redis_conn *rc, const redisReply *r, void *arg)
{
    struct call *c = arg;
    if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8) &&
        c->argv[0][4] == 'S') {
        c->argv[0] = "EVAL", c->lens[0] = 4;
        c->argv[1] = presence_scripts[c->script], c->lens[1] = strlen(c->argv[1]);
        if (redis_conn_command(rc, on_script_reply, c, c->argc, c->argv, c->lens) == 0) return;
        r = NULL;
    }
    c->done(c, r);
    free(c);
}

static struct call *call_new(struct redis_conn *rc, enum script s, int nargs, size_t bytes)
{
    pthread_once(&sha_once, compute_shas);
    nargs += 3;
    struct call *c =
        malloc(sizeof *c + (size_t)nargs * (sizeof(const char *) + sizeof(size_t)) + bytes);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->rc = rc;
    c->script = s;
    c->argv = (const char **)(c + 1);
    c->lens = (size_t *)(c->argv + nargs);
    c->p = (char *)(c->lens + nargs);
    c->argv[0] = "EVALSHA", c->lens[0] = 7;
    c->argv[1] = shas[s], c->lens[1] = 40;
    c->argv[2] = "0", c->lens[2] = 1;
    c->argc = 3;
    return c;
}

static void add_arg(struct call *c, const char *data, size_t len)
{
    memcpy(c->p, data, len);
    c->argv[c->argc] = c->p;
    c->lens[c->argc++] = len;
    c->p += len;
}

static void add_str(struct call *c, const char *s)
{
    add_arg(c, s ? s : "", s ? strlen(s) : 0);
}

#define NUM_BYTES 21 /* a uint64 in decimal, or "-1" */
static void add_num(struct call *c, long long v)
{
    char num[NUM_BYTES + 1];
    add_arg(c, num, (size_t)snprintf(num, sizeof num, "%lld", v));
}

static int call_send(struct call *c)
{
    if (redis_conn_command(c->rc, on_script_reply, c, c->argc, c->argv, c->lens) == 0) return 0;
    free(c);
    return -1;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

/* ---- counts ---- */

static void count_done(struct call *c, const redisReply *r)
{
    long long v = PRESENCE_FAILED;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        v = r->integer; /* heartbeat, room count */
    } else if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == REDIS_REPLY_INTEGER &&
               r->element[1]->type == REDIS_REPLY_INTEGER) {
        v = r->element[0]->integer;
        if (v == -2)
            v = PRESENCE_UNKNOWN_NODE;
        else if (v < 0)
            v = PRESENCE_FAILED;
        if (r->element[1]->integer) atomic_fetch_add_explicit(&clamped, 1, memory_order_relaxed);
    }
    c->cb.count(c->arg, v);
}

static int count_call(struct call *c, presence_count_cb cb, void *arg)
{
    c->done = count_done;
    c->cb.count = cb;
    c->arg = arg;
    return call_send(c);
}

static int beat(struct redis_conn *rc, const char *node, uint32_t ttl_ms, bool reg,
                presence_count_cb cb, void *arg)
{
    if (!node_ok(node) || ttl_ms == 0 || ttl_ms > 86400000u || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_HEARTBEAT, 3, PRESENCE_NODE_LEN + NUM_BYTES + 2);
    if (!c) return -1;
    add_str(c, node);
    add_num(c, ttl_ms);
    add_str(c, reg ? "1" : "0");
    return count_call(c, cb, arg);
}

int presence_heartbeat(struct redis_conn *rc, const char *node, uint32_t ttl_ms,
                       presence_count_cb cb, void *arg)
{
    return beat(rc, node, ttl_ms, false, cb, arg);
}

int presence_register(struct redis_conn *rc, const char *node, uint32_t ttl_ms,
                      presence_count_cb cb, void *arg)
{
    return beat(rc, node, ttl_ms, true, cb, arg);
}

static int user_op(struct redis_conn *rc, const char *node, const char *user, bool add,
                   presence_count_cb cb, void *arg)
{
    if (!node_ok(node) || !presence_name_ok(user) || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_USER, 3, PRESENCE_NODE_LEN + strlen(user) + 2);
    if (!c) return -1;
    add_str(c, node);
    add_str(c, user);
    add_str(c, add ? "1" : "-1");
    return count_call(c, cb, arg);
}

int presence_user_add(struct redis_conn *rc, const char *node, const char *user,
                      presence_count_cb cb, void *arg)
{
    return user_op(rc, node, user, true, cb, arg);
}

int presence_user_remove(struct redis_conn *rc, const char *node, const char *user,
                         presence_count_cb cb, void *arg)
{
    return user_op(rc, node, user, false, cb, arg);
}

static int member_op(struct redis_conn *rc, const char *node, const char *room, const char *user,
                     bool add, presence_count_cb cb, void *arg)
{
    if (!node_ok(node) || !presence_name_ok(room) || !presence_name_ok(user) || !cb)
        return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_MEMBER, 4, PRESENCE_NODE_LEN + strlen(room) + strlen(user) + 2);
    if (!c) return -1;
    add_str(c, node);
    add_str(c, room);
    add_str(c, user);
    add_str(c, add ? "1" : "-1");
    return count_call(c, cb, arg);
}

int presence_join(struct redis_conn *rc, const char *node, const char *room, const char *user,
                  presence_count_cb cb, void *arg)
{
    return member_op(rc, node, room, user, true, cb, arg);
}

int presence_leave(struct redis_conn *rc, const char *node, const char *room, const char *user,
                   presence_count_cb cb, void *arg)
{
    return member_op(rc, node, room, user, false, cb, arg);
}

int presence_room_count(struct redis_conn *rc, const char *room, presence_count_cb cb, void *arg)
{
    if (!presence_name_ok(room) || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_COUNT, 1, strlen(room));
    if (!c) return -1;
    add_str(c, room);
    return count_call(c, cb, arg);
}

/* ---- reset, sweep, sync: {status/more, users, flat pairs, nodes removed} ---- */

static bool all_strings(const redisReply *a)
{
    for (size_t i = 0; i < a->elements; i++)
        if (a->element[i]->type != REDIS_REPLY_STRING) return false;
    return true;
}

/* Calls back with the reply's changes; ok is PRESENCE_FAILED when the reply is not the
 * expected shape or allocation fails. */
static void report_changes(presence_changes_cb cb, void *arg, const redisReply *r, bool more,
                           int fail)
{
    if (fail || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[2]->type != REDIS_REPLY_ARRAY || r->element[3]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->elements % 2 || !all_strings(r->element[1]) || !all_strings(r->element[2])) {
        cb(arg, fail ? fail : PRESENCE_FAILED, NULL);
        return;
    }
    const redisReply *u = r->element[1], *p = r->element[2];
    const char **users = malloc((u->elements + 1) * sizeof *users);
    struct presence_pair *pairs = malloc((p->elements / 2 + 1) * sizeof *pairs);
    if (!users || !pairs) {
        free(users);
        free(pairs);
        cb(arg, PRESENCE_FAILED, NULL);
        return;
    }
    for (size_t i = 0; i < u->elements; i++)
        users[i] = u->element[i]->str;
    for (size_t i = 0; i < p->elements / 2; i++)
        pairs[i] = (struct presence_pair){p->element[2 * i]->str, p->element[2 * i + 1]->str};
    struct presence_changes ch = {.users = users,
                                  .n_users = u->elements,
                                  .pairs = pairs,
                                  .n_pairs = p->elements / 2,
                                  .nodes_removed = (uint32_t)r->element[3]->integer,
                                  .more = more};
    cb(arg, 0, &ch);
    free(users);
    free(pairs);
}

static void changes_done(struct call *c, const redisReply *r)
{
    bool more = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
    report_changes(c->cb.changes, c->arg, r, more, 0);
}

int presence_reset(struct redis_conn *rc, const char *node, uint32_t max, presence_changes_cb cb,
                   void *arg)
{
    if (!node_ok(node) || max == 0 || max > PRESENCE_WORK_MAX || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_RESET, 2, PRESENCE_NODE_LEN + NUM_BYTES);
    if (!c) return -1;
    add_str(c, node);
    add_num(c, max);
    c->done = changes_done;
    c->cb.changes = cb;
    c->arg = arg;
    return call_send(c);
}

int presence_sweep(struct redis_conn *rc, uint32_t max, presence_changes_cb cb, void *arg)
{
    if (max == 0 || max > PRESENCE_WORK_MAX || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_SWEEP, 1, NUM_BYTES);
    if (!c) return -1;
    add_num(c, max);
    c->done = changes_done;
    c->cb.changes = cb;
    c->arg = arg;
    return call_send(c);
}

static void sync_done(struct call *c, const redisReply *r)
{
    struct sync_state *s = c->sync;
    s->pending--;
    int fail = 0;
    if (!r)
        fail = PRESENCE_FAILED;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
             r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == -2)
        fail = PRESENCE_UNKNOWN_NODE;
    else if (s->pending == 0 && s->failed)
        fail = PRESENCE_FAILED;
    report_changes(s->cb, s->arg, r, s->pending > 0, fail);
    if (s->pending == 0) free(s);
}

int presence_sync(struct redis_conn *rc, const char *node, const struct presence_user_count *users,
                  size_t n_users, const struct presence_member_count *members, size_t n_members,
                  presence_changes_cb cb, void *arg)
{
    if (!node_ok(node) || !cb || (n_users && !users) || (n_members && !members)) return refuse();
    for (size_t i = 0; i < n_users; i++)
        if (!presence_name_ok(users[i].user) || users[i].count == 0) return refuse();
    for (size_t i = 0; i < n_members; i++)
        if (!presence_name_ok(members[i].room) || !presence_name_ok(members[i].user) ||
            members[i].count == 0)
            return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct sync_state *s = calloc(1, sizeof *s);
    if (!s) return -1;
    s->cb = cb;
    s->arg = arg;
    size_t total = n_users + n_members, done = 0;
    do {
        /* This batch: entries [done, end) of users then members. */
        size_t end = done + PRESENCE_SYNC_BATCH < total ? done + PRESENCE_SYNC_BATCH : total;
        size_t nu = 0, bytes = PRESENCE_NODE_LEN + NUM_BYTES;
        for (size_t i = done; i < end; i++) {
            if (i < n_users) {
                nu++;
                bytes += strlen(users[i].user) + NUM_BYTES;
            } else {
                const struct presence_member_count *m = &members[i - n_users];
                bytes += strlen(m->room) + strlen(m->user) + NUM_BYTES;
            }
        }
        int nargs = 2 + (int)(2 * nu + 3 * (end - done - nu));
        struct call *c = call_new(rc, S_SYNC, nargs, bytes);
        if (!c) break;
        add_str(c, node);
        add_num(c, (long long)nu);
        for (size_t i = done; i < end; i++) {
            if (i < n_users) {
                add_str(c, users[i].user);
                add_num(c, users[i].count);
            } else {
                const struct presence_member_count *m = &members[i - n_users];
                add_str(c, m->room);
                add_str(c, m->user);
                add_num(c, m->count);
            }
        }
        c->done = sync_done;
        c->sync = s;
        if (call_send(c) < 0) break;
        s->pending++;
        done = end;
    } while (done < total);
    if (s->pending == 0) {
        free(s);
        return -1;
    }
    /* Replies never come back inside redis_conn_command, so every batch that was sent
     * is still pending here; the last one to answer reports a batch that was not sent. */
    s->failed = done < total;
    return 0;
}

/* ---- pages ---- */

static void page_done(struct call *c, const redisReply *r)
{
    presence_page_cb cb = c->cb.page;
    size_t want = c->rooms ? 3 : 2;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != want ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY ||
        !all_strings(r->element[1])) {
        cb(c->arg, PRESENCE_FAILED, NULL);
        return;
    }
    if (r->element[0]->integer < 0) {
        cb(c->arg, PRESENCE_NOT_FOUND, NULL);
        return;
    }
    const redisReply *ids = r->element[1];
    size_t n = ids->elements > c->limit ? c->limit : ids->elements;
    if (c->rooms &&
        (r->element[2]->type != REDIS_REPLY_ARRAY || r->element[2]->elements != ids->elements)) {
        cb(c->arg, PRESENCE_FAILED, NULL);
        return;
    }
    const char **v = malloc((n + 1) * sizeof *v);
    uint64_t *members = c->rooms ? calloc(n + 1, sizeof *members) : NULL;
    if (!v || (c->rooms && !members)) {
        free(v);
        free(members);
        cb(c->arg, PRESENCE_FAILED, NULL);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = ids->element[i]->str;
        /* A room listed without a count (never, unless the keys were edited by hand)
         * shows 0 members. */
        const redisReply *m = c->rooms ? r->element[2]->element[i] : NULL;
        if (m && m->type == REDIS_REPLY_STRING) redis_parse_u64(m->str, m->len, &members[i]);
    }
    struct presence_page pg = {.ids = v,
                               .members = members,
                               .n = n,
                               .total = (uint64_t)r->element[0]->integer,
                               .next = ids->elements > c->limit ? v[n - 1] : NULL};
    cb(c->arg, 0, &pg);
    free(v);
    free(members);
}

static int page_call(struct call *c, const char *after, uint32_t limit, presence_page_cb cb,
                     void *arg)
{
    add_str(c, after);
    add_num(c, limit);
    c->limit = limit;
    c->done = page_done;
    c->cb.page = cb;
    c->arg = arg;
    return call_send(c);
}

int presence_online_page(struct redis_conn *rc, const char *after, uint32_t limit,
                         presence_page_cb cb, void *arg)
{
    if (!after_ok(after) || limit == 0 || limit > PRESENCE_PAGE_MAX || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_ONLINE, 2, slen(after) + NUM_BYTES);
    if (!c) return -1;
    return page_call(c, after, limit, cb, arg);
}

int presence_rooms_page(struct redis_conn *rc, const char *after, uint32_t limit,
                        presence_page_cb cb, void *arg)
{
    if (!after_ok(after) || limit == 0 || limit > PRESENCE_PAGE_MAX || !cb) return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_ROOMS, 2, slen(after) + NUM_BYTES);
    if (!c) return -1;
    c->rooms = true;
    return page_call(c, after, limit, cb, arg);
}

int presence_room_members_page(struct redis_conn *rc, const char *room, const char *after,
                               uint32_t limit, presence_page_cb cb, void *arg)
{
    if (!presence_name_ok(room) || !after_ok(after) || limit == 0 || limit > PRESENCE_PAGE_MAX ||
        !cb)
        return refuse();
    if (!redis_conn_up(rc)) return -1;
    struct call *c = call_new(rc, S_MEMBERS, 3, strlen(room) + slen(after) + NUM_BYTES);
    if (!c) return -1;
    add_str(c, room);
    return page_call(c, after, limit, cb, arg);
}
