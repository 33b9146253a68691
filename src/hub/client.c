/* A client of the hub: one WebSocket connection on /ws, with its user and rooms, from
 * its upgrade to its close (and after, while cluster answers hold it). Parses each
 * text message as an envelope, checks what every message must pass (JSON text,
 * rates, shutdown) and hands it to its command (hub/commands.c; `refresh`, which is
 * about the token's life, is here). Every refused message is answered with an `error` carrying a
 * machine-readable code and the client's id, and counted; a client that keeps
 * sending bad or excess messages (strikes_to_close in a row) is closed with 1008. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/stats.h"
#include "hub/internal.h"
#include "telemetry/spans.h"

struct client_cold *client_cold(struct client *c)
{
    if (!c->cold) c->cold = calloc(1, sizeof *c->cold);
    return c->cold;
}

const char *client_ip(const struct client *c, char *buf)
{
    /* A copy even from the entry: hub_release may free the entry it is given. */
    if (c->ipe) {
        snprintf(buf, CLIENT_IP_LEN, "%s", c->ipe->ip);
        return buf;
    }
    buf[0] = 0;
    /* While it is open, the socket's peer is the address (conn_peer, as at the
     * upgrade); after the close the descriptor may be another connection's. */
    struct ws_conn *ws = client_ws(c);
    if (ws && !conn_closed(&ws->c)) conn_peer(&ws->c, buf, CLIENT_IP_LEN);
    return buf;
}

const char *client_cid(const struct client *c, char *buf)
{
    /* Not stored: a keyed mix of the struct's address and its creation time, which
     * tell live clients apart and look random (the key is the registry's random
     * seed). Stable for the client's life. */
    uint64_t x = client_sh(c)->hub->reg.seed ^ (uint64_t)(uintptr_t)c;
    x ^= (uint64_t)c->opened_ms * UINT64_C(0x9e3779b97f4a7c15);
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    trace_hex((const uint8_t *)&x, sizeof x, buf);
    return buf;
}

/* A token's claims are kept only when they say something: under --auth none, and
 * for a token without rooms, broadcast or exp, the connection has no cold part. */
static bool claims_empty(const struct auth_identity *id)
{
    return !id->has_rooms && !id->can_broadcast && !id->exp && !id->join && !id->publish;
}

static void claims_free(struct client_claims *k)
{
    struct auth_identity id = {
        .join = k->join, .n_join = k->n_join, .publish = k->publish, .n_publish = k->n_publish};
    auth_identity_free(&id);
    memset(k, 0, sizeof *k);
}

/* Takes id's claims (and heap parts) into c: -1 when out of memory (id untouched). */
static int claims_take(struct client *c, struct auth_identity *id)
{
    if (c->cold) claims_free(&c->cold->claims);
    if (claims_empty(id)) return 0;
    struct client_cold *k = client_cold(c);
    if (!k) return -1;
    k->claims = (struct client_claims){.join = id->join,
                                       .publish = id->publish,
                                       .n_join = id->n_join,
                                       .n_publish = id->n_publish,
                                       .exp = id->exp,
                                       .has_rooms = id->has_rooms,
                                       .can_broadcast = id->can_broadcast};
    id->join = id->publish = NULL;
    id->n_join = id->n_publish = 0;
    return 0;
}

static const struct client_claims no_claims;

const struct client_claims *client_token_claims(const struct client *c)
{
    return c->cold ? &c->cold->claims : &no_claims;
}

/* The budget of an idle hub connection (issue 13, docs/design.md): the connection and
 * its client in one 160-byte malloc chunk (a request of n bytes takes n + 8 rounded
 * up to 16). A field added here or in ws_conn that crosses it costs every connection
 * 16 bytes: move something cold out instead. */
_Static_assert(WS_CONN_DATA_OFFSET + sizeof(struct client) <= 152,
               "a hub connection and its client fit one 160-byte chunk");

/* Releases what the client holds, not its memory (the connection's). */
static void client_clear(struct client *c)
{
    struct client_cold *k = c->cold;
    if (k) {
        if (k->upos) hist_unref(k->upos->stream);
        free(k->upos);
        claims_free(&k->claims);
        free(k);
    }
    if (c->user_own) free((char *)(uintptr_t)c->user);
    free(c->rooms);
    memset(c, 0, sizeof *c);
}

/* After the close (and the last hold): the connection's memory, the client in it. */
static void client_free(struct client *c)
{
    client_clear(c);
    ws_conn_release(ws_conn_of_data(c));
}

size_t hub_client_size(const struct hub *h)
{
    return sizeof(struct client) + (h->cfg.conn_rate.rate ? sizeof(struct rate_bucket) : 0);
}

struct client *hub_client_init(void *data, struct shard *sh, const char *user,
                               struct auth_identity *id, const char *peer_ip)
{
    bool rl = sh->hub->cfg.conn_rate.rate != 0;
    struct client *c = data; /* zeroed, hub_client_size bytes */
    (void)sh;                /* = client_sh(c): clients are created on their shard's thread */
    c->opened_ms = (uint32_t)loop_now(sh->loop);
    /* The address is not copied: the per-address table's entry has it, and this
     * connection's count keeps the entry until hub_release. */
    c->ipe = peer_ip ? hub_ip_entry(sh->hub, peer_ip) : NULL;
    /* The client's own copy of the id until the open, when it takes the online user's
     * (shard_user_link). Copied before id is cleared: user may point into it. */
    c->user = strdup(user);
    c->user_own = true;
    if (!c->user || (id && claims_take(c, id) < 0)) {
        client_clear(c); /* user NULL: on_abandon leaves it be */
        return NULL;
    }
    if (id) auth_identity_free(id); /* what was not taken */
    if (rl) rate_bucket_init(client_rl(c), &sh->hub->cfg.conn_rate, loop_now(sh->loop));
    return c;
}

const char *hub_client_id(const struct client *c)
{
    /* Asked for by the upgrade's span only: the text is kept from then on. */
    struct client_cold *k = client_cold((struct client *)(uintptr_t)c);
    if (!k) return "";
    if (!k->cid[0]) client_cid(c, k->cid);
    return k->cid;
}

const char *hub_client_user(const struct client *c)
{
    return c->user;
}

void hub_client_trace(struct client *c, const struct trace_ctx *ctx)
{
    /* An invalid context is what an absent one means; without memory, not traced. */
    if (ctx->valid && client_cold(c)) c->cold->tctx = *ctx;
}

static const struct trace_ctx no_trace;

static const struct trace_ctx *client_tctx(const struct client *c)
{
    return c->cold ? &c->cold->tctx : &no_trace;
}

int hub_client_resume(struct client *c, uint64_t since, const char *epoch)
{
    struct client_cold *k = client_cold(c);
    if (!k || (!k->upos && !(k->upos = calloc(1, sizeof *k->upos)))) return -1;
    k->upos->since = since;
    snprintf(k->upos->epoch, sizeof k->upos->epoch, "%s", epoch ? epoch : "");
    return 0;
}

/* The connection will not open: its admission and what the client took. A client
 * that hub_client_init did not set up (user NULL) holds nothing. */
static void on_abandon(struct ws_conn *ws)
{
    struct client *c = ws_conn_data(ws);
    if (!c->user) return;
    char ip[CLIENT_IP_LEN];
    hub_release(client_sh(c)->hub, client_ip(c, ip));
    client_clear(c);
}

/* Replies (acks, errors, query answers) obey the same queue bounds as deliveries: a
 * client that asks without reading cannot grow its queue without limit. */
static void send_frame(struct client *c, struct wh_msg *m)
{
    if (!m) return;
    shard_deliver(c, m);
    msg_unref(m);
}

/* Answers a refused message; closes the connection when refusals keep coming. */
static int reject(struct client *c, enum proto_err e, const char *msg, json_t *id)
{
    STAT_INC(hub_errors[e]);
    msg_trace_error(proto_err_code(e));
    struct send_trace st;
    send_trace_begin(&st, "error");
    send_frame(c, proto_error_frame(e, msg, id));
    send_trace_end(&st);
    /* Refusals during shutdown are no fault of the client's (no strike: a 1008 must not
     * overtake the deliveries that shutdown still owes it). */
    if (e != PE_SHUTTING_DOWN && e != PE_UNAVAILABLE && c->strikes < UINT8_MAX &&
        ++c->strikes >= client_sh(c)->hub->cfg.strikes_to_close) {
        STAT_INC(hub_strike_closes);
        char tid[33], cid[17];
        const char *t = trace_log_id(tid);
        log_info("closing client after repeated bad messages", "user=%s client=%s strikes=%u%s%s",
                 c->user, client_cid(c, cid), c->strikes, t ? " trace_id=" : "", t ? t : "");
        ws_fail(client_ws(c), WS_CLOSE_POLICY,
                e == PE_RATE_LIMITED ? "rate limit exceeded" : "too many bad messages");
    }
    return -1;
}

static void reply(struct client *c, const char *type, json_t *payload, json_t *id)
{
    struct proto_payload pp = proto_json(payload);
    struct send_trace st;
    send_trace_begin(&st, type);
    struct wh_msg *m = proto_frame(type, &pp, NULL, NULL, 0, id);
    send_trace_end(&st);
    send_frame(c, m);
}

static void ack(struct client *c, json_t *id, const char *room, uint64_t seq)
{
    if (!id) return;
    struct send_trace st;
    send_trace_begin(&st, "ack");
    send_frame(c, proto_ack_frame(id, room, seq));
    send_trace_end(&st);
}

void client_reply(struct client *c, const char *type, json_t *payload, json_t *id)
{
    reply(c, type, payload, id);
}

int client_reject(struct client *c, enum proto_err e, const char *msg, json_t *id)
{
    return reject(c, e, msg, id);
}

void client_ack(struct client *c, json_t *id, const char *room, uint64_t seq)
{
    ack(c, id, room, seq);
}

/* ---- cluster mode: answers that come back from the cluster thread ---- */

struct client *client_hold(struct client *c)
{
    c->holds++;
    return c;
}

void client_release(struct client *c)
{
    if (--c->holds == 0 && c->closed) client_free(c);
}

void client_publish_done(struct client *c, json_t *id, const char *room, uint64_t seq, bool ok)
{
    if (!c->closed) {
        if (ok)
            ack(c, id, room, seq);
        else
            /* Lost with the connection to Redis: Redis may or may not have run it. */
            reject(c, PE_UNAVAILABLE,
                   "the cluster's Redis did not answer: the message may not have been sent", id);
    }
    client_release(c);
}

/* Tokens that expire while connected (docs/protocol.md, "Token refresh"). A JWT
 * connection is warned with token_expiring ahead of its exp, by the lesser of 60 s
 * and half the token's remaining life at the time it was accepted; it is closed with
 * 4001 at exp + leeway unless a `refresh` brought a valid token for the same user.
 * Both moments are one deadline on the connection's liveness timer: no cost per
 * message, none at all under --auth none (exp 0). */
#define TOKEN_LEAD_MS 60000

static void token_arm(struct client *c)
{
    if (!c->open) return;
    if (!client_token_claims(c)->exp) {
        ws_set_deadline(client_ws(c), 0);
        return;
    }
    uint64_t now = loop_now(client_sh(c)->loop);
    int64_t left_ms = (client_token_claims(c)->exp - (int64_t)time(NULL)) * 1000;
    int64_t at;
    if (!c->cold->token_warned) {
        int64_t lead = left_ms / 2 < TOKEN_LEAD_MS ? left_ms / 2 : TOKEN_LEAD_MS;
        at = left_ms - (lead > 0 ? lead : 0);
    } else {
        at = left_ms + auth_leeway(client_sh(c)->hub->cfg.auth) * 1000;
    }
    ws_set_deadline(client_ws(c), now + (at > 1 ? (uint64_t)at : 1));
}

static void on_deadline(struct ws_conn *ws)
{
    struct client *c = ws_conn_data(ws);
    int64_t exp = client_token_claims(c)->exp; /* non-zero: c->cold exists */
    if (!exp) return;
    int64_t now = (int64_t)time(NULL);
    if (!c->cold->token_warned) {
        c->cold->token_warned = true;
        STAT_INC(hub_token_expiring);
        json_t *p = json_pack("{s:I, s:I}", "expires_at", (json_int_t)exp, "expires_in",
                              (json_int_t)(exp - now));
        reply(c, "token_expiring", p, NULL);
        json_decref(p);
        token_arm(c);
        return;
    }
    STAT_INC(hub_token_expired_closes);
    char cid[17];
    log_info("closing client: token expired", "user=%s client=%s exp=%lld", c->user,
             client_cid(c, cid), (long long)exp);
    ws_close(ws, 4001, "token expired");
}

/* {"type":"refresh","payload":{"token":"..."}}: verified like an upgrade token; it
 * must name the same user. Its exp and claims (rooms, broadcast) apply from now on;
 * rooms already joined are kept. */
static int do_refresh(struct client *c, struct envelope *env)
{
    json_t *t = json_object_get(env->payload, "token");
    if (!t) return reject(c, PE_MISSING_FIELD, "refresh needs a token", env->id);
    if (!json_is_string(t)) return reject(c, PE_BAD_FIELD, "token must be a string", env->id);
    const struct auth *a = client_sh(c)->hub->cfg.auth;
    struct auth_identity id;
    enum auth_error ae =
        a ? auth_verify(a, json_string_value(t), json_string_length(t), (int64_t)time(NULL), &id)
          : AUTH_BAD_SIGNATURE;
    if (!a) memset(&id, 0, sizeof id);
    if (ae == AUTH_OK && strcmp(id.user, c->user) != 0) {
        auth_identity_free(&id);
        STAT_INC(hub_token_refused);
        return reject(c, PE_FORBIDDEN, "the token is for another user", env->id);
    }
    if (ae != AUTH_OK) {
        char msg[160];
        snprintf(msg, sizeof msg, "token refused: %s (%s)", auth_error_text(ae),
                 auth_error_code(ae));
        STAT_INC(hub_token_refused);
        return reject(c, PE_FORBIDDEN, msg, env->id);
    }
    if (claims_take(c, &id) < 0) { /* the old claims are gone: the new ones must hold */
        auth_identity_free(&id);
        ws_fail(client_ws(c), WS_CLOSE_INTERNAL, "out of memory");
        return -1;
    }
    auth_identity_free(&id); /* what was not taken */
    if (c->cold) c->cold->token_warned = false;
    token_arm(c);
    STAT_INC(hub_token_refreshes);
    json_t *p = client_token_claims(c)->exp
                    ? json_pack("{s:I}", "expires_at", (json_int_t)client_token_claims(c)->exp)
                    : json_object();
    reply(c, "token_refreshed", p, env->id);
    json_decref(p);
    return 0;
}

/* A connection that asked for its user stream's position (?since=): `session` with
 * the position, then what it missed when it can be recovered. */
static void open_session(struct client *c)
{
    struct hub *h = client_sh(c)->hub;
    struct user_pos *up = c->cold->upos;
    bool created = false;
    struct hist_stream *s = hist_get(h->hist, HIST_USER, c->user, true, &created);
    if (!s) {
        free(up); /* no position: the connection works as one without ?since= */
        c->cold->upos = NULL;
        return;
    }
    if (created) registry_user_stream(h, c->user, s);
    up->stream = s;
    if (h->relay) { /* `session` once the stream's position is known */
        up->pending = true;
        up->live_from = UINT64_MAX;
        if (relay_ask(client_sh(c), HIST_USER, c->user) != 0) {
            up->pending = false;
            up->live_from = 0;
        }
        return;
    }
    hist_lock(s);
    uint64_t top = hist_top(s);
    up->live_from = top; /* what was in flight before now is not delivered twice */
    hist_unlock(s);
    bool ok = false;
    uint64_t replayed = 0;
    if (up->epoch[0]) {
        struct recover_trace rt;
        recover_trace_begin(&rt, client_tctx(c), "user", c->user, up->since);
        ok = client_begin_recovery(c, s, 1, up->since, up->epoch, &up->cursor, &up->live_from);
        up->replaying = ok;
        replayed = ok && top > up->since ? top - up->since : 0;
        recover_trace_end(&rt, ok, replayed);
    }
    json_t *p =
        json_pack("{s:s, s:I, s:s, s:b, s:I}", "user_id", c->user, "seq", (json_int_t)top, "epoch",
                  hist_epoch(s), "recovered", ok, "replayed", (json_int_t)replayed);
    reply(c, "session", p, NULL);
    json_decref(p);
    if (ok) replay_pump(c);
}

static void on_open(struct ws_conn *ws)
{
    struct client *c = ws_conn_data(ws);
    c->open = true;
    /* From here the id is the online user's (one copy for the registry, the shards
     * and the client); without memory the client keeps its own and is not linked
     * (it then gets no messages sent to its user, as before when a link failed). */
    struct online_user *u = registry_user_add(client_sh(c)->hub, c->user);
    if (u) shard_user_link(client_sh(c), c, u);
    token_arm(c);
    if (client_upos(c)) open_session(c);
    if (LOG_DEBUG >= log_min_level) {
        char tid[33], cid[17], ip[CLIENT_IP_LEN];
        const struct trace_ctx *tc = client_tctx(c);
        bool t = tc->valid && (tc->flags & TRACE_FLAG_SAMPLED);
        if (t) trace_hex(tc->trace_id, TRACE_ID_LEN, tid);
        log_debug("client connected", "client=%s user=%s remote=%s%s%s", client_cid(c, cid),
                  c->user, client_ip(c, ip), t ? " trace_id=" : "", t ? tid : "");
    }
}

static void on_message(struct ws_conn *ws, enum ws_opcode op, uint8_t *data, size_t len)
{
    struct client *c = ws_conn_data(ws);
    if (op != WS_OP_TEXT) {
        reject(c, PE_BINARY, "messages on /ws are JSON text frames", NULL);
        return;
    }
    uint64_t now = loop_now(client_sh(c)->loop);
    const struct hub_config *cfg = &client_sh(c)->hub->cfg;
    /* (The buckets exist only when their limits are on.) */
    bool ok = !cfg->conn_rate.rate || rate_bucket_take(client_rl(c), &cfg->conn_rate, now);
    if (ok && cfg->user_rate.rate && !c->user_own)
        ok = rate_bucket_take(ou_bucket(client_ou(c), client_sh(c)), &cfg->user_rate, now);
    struct envelope env;
    const char *detail = NULL;
    enum proto_err e = envelope_parse((const char *)data, len, &env, &detail);
    if (!ok) {
        STAT_INC(hub_rate_limited);
        reject(c, PE_RATE_LIMITED, "too many messages: slow down", env.id);
        envelope_free(&env);
        return;
    }
    struct msg_trace mt;
    char cid[17] = "";
    const struct trace_ctx *tc = client_tctx(c);
    if (tc->valid) client_cid(c, cid); /* only a traced connection's spans name it */
    msg_trace_begin(&mt, tc, env.root, env.type_str, cid, c->user, len);
    if (e) {
        reject(c, e, detail, env.id);
        msg_trace_end(&mt);
        envelope_free(&env);
        return;
    }
    int rc;
    bool publishes = env.type == MT_SEND_TO_ROOM || env.type == MT_CHAT_MESSAGE ||
                     env.type == MT_SEND_TO_USER || env.type == MT_BROADCAST;
    if (publishes && hub_closing(client_sh(c)->hub)) {
        /* Shutdown has begun: nothing new is taken, so nothing is acked that the
         * shutdown's drain would not deliver (server.c). */
        STAT_INC(hub_shutdown_refused);
        reject(c, PE_SHUTTING_DOWN, "the server is shutting down: send it elsewhere", env.id);
        msg_trace_end(&mt);
        envelope_free(&env);
        return;
    }
    rc = env.type == MT_REFRESH ? do_refresh(c, &env) : client_command(c, &env);
    if (rc == 0) c->strikes = 0; /* only a message carried out clears the strikes */
    msg_trace_end(&mt);
    envelope_free(&env);
}

static void on_drain(struct ws_conn *ws)
{
    struct client *c = ws_conn_data(ws);
    if (c->replay_due) replay_pump(c);
    if (!c->cold || !c->cold->dropped) return;
    /* Tell a drop-oldest client what it lost, once its queue has room again. */
    json_t *p = json_pack("{s:I}", "count", (json_int_t)c->cold->dropped);
    c->cold->dropped = 0;
    reply(c, "dropped", p, NULL);
    json_decref(p);
}

static void on_close(struct ws_conn *ws, unsigned code)
{
    struct client *c = ws_conn_data(ws);
    char ip[CLIENT_IP_LEN];
    client_ip(c, ip);
    if (LOG_DEBUG >= log_min_level) {
        char cid[17];
        /* 32-bit milliseconds: right for connections shorter than 49 days */
        uint32_t ms = (uint32_t)loop_now(client_sh(c)->loop) - c->opened_ms;
        log_debug("client disconnected", "client=%s user=%s remote=%s duration_ms=%u code=%u",
                  client_cid(c, cid), c->user, ip, ms, code);
    }
    hub_ip_room_give(client_sh(c)->hub, ip, client_n_rooms(c));
    while (client_n_rooms(c))
        shard_leave(c, c->rooms->m[c->rooms->n - 1]);
    shard_user_unlink(client_sh(c), c);
    /* c->user may be the online user's id, which the last remove frees: a copy. */
    char user[AUTH_MAX_USER + 1];
    snprintf(user, sizeof user, "%s", c->user);
    registry_user_remove(client_sh(c)->hub, user);
    hub_release(client_sh(c)->hub, ip);
    c->open = false;
    if (c->holds) { /* answers from the cluster are on their way: freed after them */
        c->closed = true;
        ws_conn_keep(ws);
        return;
    }
    client_clear(c); /* the connection layer frees the memory */
}

const struct ws_handler hub_ws_handler = {
    .on_open = on_open,
    .on_message = on_message,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_deadline = on_deadline,
    .on_abandon = on_abandon,
};
