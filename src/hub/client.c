/* A client of the hub: one WebSocket connection on /ws, with its user and rooms.
 * Parses each text message as an envelope, checks it (fields, permissions, rates)
 * and carries it out. Every refused message is answered with an `error` carrying a
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

struct client *hub_client_new(struct shard *sh, const char *user, struct auth_identity *id,
                              const char *peer_ip)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->sh = sh;
    snprintf(c->ip, sizeof c->ip, "%s", peer_ip ? peer_ip : "");
    if (id) {
        c->id = *id; /* takes the heap parts */
        c->has_id = true;
    }
    /* The user id lives once, in the identity (a refresh keeps the same sub). Copied
     * before id is cleared: user may point into it. */
    snprintf(c->id.user, sizeof c->id.user, "%s", user);
    c->user = c->id.user;
    if (id) memset(id, 0, sizeof *id);
    rate_bucket_init(&c->rl, &sh->hub->cfg.conn_rate, loop_now(sh->loop));
    rate_bucket_init(&c->qrl, &sh->hub->cfg.query_rate, loop_now(sh->loop));
    uint64_t r = trace_random64();
    trace_hex((const uint8_t *)&r, sizeof r, c->cid);
    return c;
}

const char *hub_client_id(const struct client *c)
{
    return c->cid;
}

const char *hub_client_user(const struct client *c)
{
    return c->user;
}

void hub_client_trace(struct client *c, const struct trace_ctx *ctx)
{
    c->tctx = *ctx;
}

int hub_client_resume(struct client *c, uint64_t since, const char *epoch)
{
    if (!c->upos && !(c->upos = calloc(1, sizeof *c->upos))) return -1;
    c->upos->since = since;
    snprintf(c->upos->epoch, sizeof c->upos->epoch, "%s", epoch ? epoch : "");
    return 0;
}

static void client_free(struct client *c)
{
    if (c->upos) hist_unref(c->upos->stream);
    free(c->upos);
    if (c->has_id) auth_identity_free(&c->id);
    free(c->rooms);
    free(c);
}

void hub_client_abandon(struct client *c)
{
    if (!c || c->opened) return; /* an opened client is released by its close */
    hub_release(c->sh->hub, c->ip);
    client_free(c);
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
    if (e != PE_SHUTTING_DOWN && ++c->strikes >= c->sh->hub->cfg.strikes_to_close) {
        STAT_INC(hub_strike_closes);
        char tid[33];
        const char *t = trace_log_id(tid);
        log_info("closing client after repeated bad messages", "user=%s client=%s strikes=%u%s%s",
                 c->user, c->cid, c->strikes, t ? " trace_id=" : "", t ? t : "");
        ws_fail(c->ws, WS_CLOSE_POLICY,
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

void client_reject(struct client *c, enum proto_err e, const char *msg, json_t *id)
{
    reject(c, e, msg, id);
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
            reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached: not sent", id);
    }
    client_release(c);
}

/* May this client send to / join `room`? Token patterns first, then policy. */
static enum proto_err may_publish(struct client *c, const char *room)
{
    if (c->has_id && c->id.has_rooms && !auth_room_match(c->id.publish, c->id.n_publish, room))
        return PE_FORBIDDEN;
    if (c->sh->hub->cfg.send_policy == HUB_SEND_MEMBERS && !client_membership(c, room))
        return PE_NOT_MEMBER;
    return PE_NONE;
}

static bool may_join(struct client *c, const char *room)
{
    return !(c->has_id && c->id.has_rooms && !auth_room_match(c->id.join, c->id.n_join, room));
}

/* `since` in join_room: {"seq": N, "epoch": "E"}. */
static bool parse_since(json_t *since, uint64_t *seq, const char **epoch)
{
    json_t *sq = json_object_get(since, "seq"), *ep = json_object_get(since, "epoch");
    if (!json_is_object(since) || !json_is_integer(sq) || json_integer_value(sq) < 0 ||
        !json_is_string(ep) || json_string_length(ep) > 64)
        return false;
    *seq = (uint64_t)json_integer_value(sq);
    *epoch = json_string_value(ep);
    return true;
}

/* Decides a recovery of the stream s from (epoch, since), counted: on success the
 * caller's cursor and live_from are set for replay_pump. */
static bool begin_recovery(struct client *c, struct hist_stream *s, int stream, uint64_t since,
                           const char *epoch, uint64_t *cursor, uint64_t *live_from)
{
    hist_lock(s);
    bool ok = hist_can_resume(s, epoch, since);
    hist_unlock(s);
    STAT_INC(hub_recoveries[stream][ok ? 0 : 1]);
    if (!ok) return false;
    *cursor = since;
    *live_from = UINT64_MAX; /* the replay catches up from the history */
    c->n_replaying++;
    return true;
}

static int do_join(struct client *c, struct envelope *env)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return reject(c, e, "join_room needs a room_id string (1-128 bytes)", env->id);
    if (!may_join(c, room))
        return reject(c, PE_FORBIDDEN, "not allowed to join this room", env->id);
    json_t *pv = json_object_get(env->payload, "presence");
    if (pv && !json_is_boolean(pv))
        return reject(c, PE_BAD_FIELD, "presence must be true or false", env->id);
    bool presence = pv ? json_is_true(pv) : true;
    json_t *sv = json_object_get(env->payload, "since");
    uint64_t since = 0;
    const char *epoch = NULL;
    if (sv && !parse_since(sv, &since, &epoch))
        return reject(c, PE_BAD_FIELD, "since must be {\"seq\": integer >= 0, \"epoch\": string}",
                      env->id);
    struct membership *m = client_membership(c, room);
    uint64_t snap;
    bool already = m != NULL;
    if (m) {
        /* Already a member: live already, nothing to recover. */
        m->presence = presence;
        hist_lock(m->lr->room->stream);
        snap = hist_top(m->lr->room->stream);
        hist_unlock(m->lr->room->stream);
    } else {
        if (c->n_rooms >= c->sh->hub->cfg.max_rooms_per_conn)
            return reject(c, PE_TOO_LARGE, "too many rooms joined on this connection", env->id);
        if (!hub_ip_room_take(c->sh->hub, c->ip))
            return reject(c, PE_LIMIT_REACHED, "too many rooms joined from this address", env->id);
        if (!hub_ready(c->sh->hub)) {
            hub_ip_room_give(c->sh->hub, c->ip, 1);
            relay_count_unavailable(c->sh->hub);
            return reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached", env->id);
        }
        int rc = shard_join(c, room, presence, &snap);
        if (rc < 0) {
            hub_ip_room_give(c->sh->hub, c->ip, 1);
            return rc == -ENOSPC
                       ? reject(c, PE_LIMIT_REACHED, "the server has its most rooms", env->id)
                       : reject(c, PE_INTERNAL, "could not join", env->id);
        }
        m = c->rooms[c->n_rooms - 1];
        if (c->sh->hub->relay) /* room_joined once the room's position is known */
            return join_wait(c, m, env->id, sv != NULL, since, epoch);
    }
    struct hist_stream *s = m->lr->room->stream;
    char ep[HIST_EPOCH_LEN + 1];
    hist_lock(s);
    snprintf(ep, sizeof ep, "%s", hist_epoch(s)); /* a mirror's changes under the lock */
    hist_unlock(s);
    json_t *p = json_pack("{s:s, s:I, s:s}", "room_id", room, "seq", (json_int_t)snap, "epoch", ep);
    if (sv && !already) {
        struct recover_trace rt;
        recover_trace_begin(&rt, NULL, "room", room, since);
        m->replaying = begin_recovery(c, s, 0, since, epoch, &m->cursor, &m->live_from);
        uint64_t replayed = m->replaying && snap > since ? snap - since : 0;
        recover_trace_end(&rt, m->replaying, replayed);
        json_object_set_new(p, "recovered", json_boolean(m->replaying));
        json_object_set_new(p, "replayed", json_integer((json_int_t)replayed));
    }
    reply(c, "room_joined", p, env->id);
    json_decref(p);
    if (m->replaying) replay_pump(c);
    return 0;
}

static int do_leave(struct client *c, struct envelope *env)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return reject(c, e, "leave_room needs a room_id string (1-128 bytes)", env->id);
    struct membership *m = client_membership(c, room);
    if (!m) return reject(c, PE_NOT_MEMBER, "not a member of this room", env->id);
    json_t *p = json_pack("{s:s}", "room_id", room); /* room points into env: copy first */
    shard_leave(c, m);
    hub_ip_room_give(c->sh->hub, c->ip, 1);
    reply(c, "room_left", p, env->id);
    json_decref(p);
    return 0;
}

static int do_send_room(struct client *c, struct envelope *env, bool chat)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return reject(c, e, "needs a room_id string (1-128 bytes)", env->id);
    if ((e = may_publish(c, room)))
        return reject(c, e,
                      e == PE_NOT_MEMBER ? "join the room before sending to it"
                                         : "not allowed to send to this room",
                      env->id);
    struct proto_payload payload = env->out;
    json_t *chatp = NULL;
    if (chat) {
        /* The guide's chat message: user_id is the sender, stamped by the server. */
        json_t *content = json_object_get(env->payload, "content");
        if (!content) return reject(c, PE_MISSING_FIELD, "chat_message needs content", env->id);
        if (!json_is_string(content))
            return reject(c, PE_BAD_FIELD, "content must be a string", env->id);
        chatp =
            json_pack("{s:s, s:s, s:O}", "room_id", room, "user_id", c->user, "content", content);
        payload = proto_json(chatp);
    }
    struct membership *m = client_membership(c, room);
    uint64_t seq;
    if (c->sh->hub->relay) { /* acked once Redis has given it its position */
        int rc = relay_publish(c->sh->hub, HIST_ROOM, room, env->type_str, &payload, c->user, c,
                               env->id);
        json_decref(chatp);
        if (rc != 0)
            return reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached: not sent",
                          env->id);
        return 0;
    }
    if (m) {
        seq = room_publish(c->sh->hub, m->lr->room, env->type_str, &payload, c->user, false);
    } else {
        seq = hub_publish_room(c->sh->hub, room, env->type_str, &payload, c->user);
    }
    json_decref(chatp);
    ack(c, env->id, room, seq);
    return 0;
}

static int do_send_user(struct client *c, struct envelope *env)
{
    const char *user;
    enum proto_err e = envelope_name(env, "user_id", &user);
    if (e) return reject(c, e, "send_to_user needs a user_id string (1-128 bytes)", env->id);
    if (c->sh->hub->relay) {
        if (relay_publish(c->sh->hub, HIST_USER, user, env->type_str, &env->out, c->user, c,
                          env->id) != 0)
            return reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached: not sent",
                          env->id);
        return 0;
    }
    hub_publish_user(c->sh->hub, user, env->type_str, &env->out, c->user);
    ack(c, env->id, NULL, 0);
    return 0;
}

static int do_broadcast(struct client *c, struct envelope *env)
{
    bool allowed = c->sh->hub->cfg.client_broadcast || (c->has_id && c->id.can_broadcast);
    if (!allowed) return reject(c, PE_FORBIDDEN, "broadcast is not allowed", env->id);
    if (c->sh->hub->relay) {
        if (relay_publish(c->sh->hub, HIST_ROOM, NULL, env->type_str, &env->out, c->user, c,
                          env->id) != 0)
            return reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached: not sent",
                          env->id);
        return 0;
    }
    hub_publish_all(c->sh->hub, env->type_str, &env->out, c->user);
    ack(c, env->id, NULL, 0);
    return 0;
}

/* Paging arguments of a listing: payload limit (1..HUB_PAGE_MAX, default
 * HUB_PAGE_DEFAULT) and cursor (an id: the last one of the previous page; absent or
 * null for the first page). */
static const char *page_args(struct envelope *env, const char **after, size_t *limit)
{
    *after = NULL;
    *limit = HUB_PAGE_DEFAULT;
    json_t *l = json_object_get(env->payload, "limit");
    if (l && !json_is_null(l)) {
        if (!json_is_integer(l) || json_integer_value(l) < 1 ||
            json_integer_value(l) > HUB_PAGE_MAX)
            return "limit must be an integer from 1 to 1000";
        *limit = (size_t)json_integer_value(l);
    }
    enum proto_err e = envelope_name(env, "cursor", after);
    if (e == PE_BAD_FIELD) return "cursor must be null or a next_cursor string (1-128 bytes)";
    return NULL;
}

/* Cluster mode: a listing's answer from Redis, back on the client's shard. */
struct list_wait {
    struct client *c;
    json_t *id;
    enum msg_type type;
    char type_str[24];
    char room[PROTO_MAX_NAME + 1];
};

static void list_back(void *arg, int status, struct hub_page *pg)
{
    struct list_wait *w = arg;
    struct client *c = w->c;
    if (!c->closed) {
        if (status == HUB_LIST_FAILED) {
            reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached", w->id);
        } else {
            if (status == HUB_LIST_NOT_FOUND) pg->items = json_array();
            json_t *p = hub_page_json(pg, w->type == MT_ONLINE_USERS ? "online_users"
                                          : w->type == MT_LIST_ROOMS ? "rooms"
                                                                     : "members");
            if (p && w->type == MT_ROOM_MEMBERS)
                json_object_set_new(p, "room_id", json_string(w->room));
            reply(c, w->type_str, p, w->id);
            json_decref(p);
        }
    }
    client_release(c);
    json_decref(w->id);
    free(w);
}

static int query_cluster(struct client *c, struct envelope *env, const char *after, size_t limit)
{
    const char *room = NULL;
    if (env->type == MT_ROOM_MEMBERS) {
        enum proto_err e = envelope_name(env, "room_id", &room);
        if (e) return reject(c, e, "room_members needs a room_id string", env->id);
    }
    struct list_wait *w = calloc(1, sizeof *w);
    if (!w) return reject(c, PE_INTERNAL, "out of memory", env->id);
    w->type = env->type;
    snprintf(w->type_str, sizeof w->type_str, "%s", env->type_str);
    if (room) snprintf(w->room, sizeof w->room, "%s", room);
    enum hub_listing kind = env->type == MT_ONLINE_USERS ? HUB_LIST_ONLINE
                            : env->type == MT_LIST_ROOMS ? HUB_LIST_ROOMS
                                                         : HUB_LIST_MEMBERS;
    w->c = client_hold(c);
    w->id = env->id ? json_incref(env->id) : NULL;
    if (hub_list_async(c->sh->hub, kind, room, after, limit, c->sh->loop, list_back, w) != 0) {
        client_release(c);
        json_decref(w->id);
        free(w);
        return reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached", env->id);
    }
    return 0;
}

static int do_query(struct client *c, struct envelope *env)
{
    struct hub *h = c->sh->hub;
    json_t *p = NULL;
    const char *after = NULL, *why = NULL;
    size_t limit = 0;
    struct hub_page pg = {0};
    if (env->type == MT_ONLINE_USERS || env->type == MT_LIST_ROOMS ||
        env->type == MT_ROOM_MEMBERS) {
        if ((why = page_args(env, &after, &limit))) return reject(c, PE_BAD_FIELD, why, env->id);
        /* Listings have their own budget, on even when message rates are unlimited. */
        if (!hub_client_query_take(c, hub_query_cost(limit))) {
            STAT_INC(hub_query_limited);
            return reject(c, PE_RATE_LIMITED, "too many listing queries: slow down", env->id);
        }
        if (h->relay) return query_cluster(c, env, after, limit);
    }
    switch (env->type) {
    case MT_ONLINE_USERS:
        hub_online_users(h, after, limit, &pg);
        p = hub_page_json(&pg, "online_users");
        break;
    case MT_LIST_ROOMS:
        hub_rooms(h, after, limit, &pg);
        p = hub_page_json(&pg, "rooms");
        break;
    case MT_ROOM_MEMBERS: {
        const char *room;
        enum proto_err e = envelope_name(env, "room_id", &room);
        if (e) return reject(c, e, "room_members needs a room_id string", env->id);
        if (hub_room_members(h, room, after, limit, &pg) < 0) pg.items = json_array();
        p = hub_page_json(&pg, "members");
        if (p) json_object_set_new(p, "room_id", json_string(room));
        break;
    }
    default:
        p = json_object();
        break;
    }
    reply(c, env->type == MT_PING ? "pong" : env->type_str, p, env->id);
    json_decref(p);
    return 0;
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
    if (!c->ws) return;
    if (!c->has_id || !c->id.exp) {
        ws_set_deadline(c->ws, 0);
        return;
    }
    uint64_t now = loop_now(c->sh->loop);
    int64_t left_ms = (c->id.exp - (int64_t)time(NULL)) * 1000;
    int64_t at;
    if (!c->token_warned) {
        int64_t lead = left_ms / 2 < TOKEN_LEAD_MS ? left_ms / 2 : TOKEN_LEAD_MS;
        at = left_ms - (lead > 0 ? lead : 0);
    } else {
        at = left_ms + auth_leeway(c->sh->hub->cfg.auth) * 1000;
    }
    ws_set_deadline(c->ws, now + (at > 1 ? (uint64_t)at : 1));
}

static void on_deadline(struct ws_conn *ws)
{
    struct client *c = ws->ud;
    if (!c->has_id || !c->id.exp) return;
    int64_t now = (int64_t)time(NULL);
    if (!c->token_warned) {
        c->token_warned = true;
        STAT_INC(hub_token_expiring);
        json_t *p = json_pack("{s:I, s:I}", "expires_at", (json_int_t)c->id.exp, "expires_in",
                              (json_int_t)(c->id.exp - now));
        reply(c, "token_expiring", p, NULL);
        json_decref(p);
        token_arm(c);
        return;
    }
    STAT_INC(hub_token_expired_closes);
    log_info("closing client: token expired", "user=%s client=%s exp=%lld", c->user, c->cid,
             (long long)c->id.exp);
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
    const struct auth *a = c->sh->hub->cfg.auth;
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
    if (c->has_id) auth_identity_free(&c->id);
    c->id = id; /* takes the heap parts */
    c->has_id = true;
    c->token_warned = false;
    token_arm(c);
    STAT_INC(hub_token_refreshes);
    json_t *p = c->id.exp ? json_pack("{s:I}", "expires_at", (json_int_t)c->id.exp) : json_object();
    reply(c, "token_refreshed", p, env->id);
    json_decref(p);
    return 0;
}

/* A connection that asked for its user stream's position (?since=): `session` with
 * the position, then what it missed when it can be recovered. */
static void open_session(struct client *c)
{
    struct hub *h = c->sh->hub;
    struct user_pos *up = c->upos;
    bool created = false;
    struct hist_stream *s = hist_get(h->hist, HIST_USER, c->user, true, &created);
    if (!s) {
        free(up); /* no position: the connection works as one without ?since= */
        c->upos = NULL;
        return;
    }
    if (created) registry_user_stream(h, c->user, s);
    up->stream = s;
    if (h->relay) { /* `session` once the stream's position is known */
        up->pending = true;
        up->live_from = UINT64_MAX;
        if (relay_ask(c->sh, HIST_USER, c->user) != 0) {
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
        recover_trace_begin(&rt, &c->tctx, "user", c->user, up->since);
        ok = begin_recovery(c, s, 1, up->since, up->epoch, &up->cursor, &up->live_from);
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
    struct client *c = ws->ud;
    c->ws = ws;
    c->opened = true;
    shard_user_link(c->sh, c);
    registry_user_add(c->sh->hub, c->user);
    c->opened_ms = loop_now(c->sh->loop);
    token_arm(c);
    if (c->upos) open_session(c);
    if (LOG_DEBUG >= log_min_level) {
        char tid[33];
        bool t = c->tctx.valid && (c->tctx.flags & TRACE_FLAG_SAMPLED);
        if (t) trace_hex(c->tctx.trace_id, TRACE_ID_LEN, tid);
        log_debug("client connected", "client=%s user=%s remote=%s%s%s", c->cid, c->user, c->ip,
                  t ? " trace_id=" : "", t ? tid : "");
    }
}

static void on_message(struct ws_conn *ws, enum ws_opcode op, uint8_t *data, size_t len)
{
    struct client *c = ws->ud;
    if (op != WS_OP_TEXT) {
        reject(c, PE_BINARY, "messages on /ws are JSON text frames", NULL);
        return;
    }
    uint64_t now = loop_now(c->sh->loop);
    const struct hub_config *cfg = &c->sh->hub->cfg;
    bool ok = rate_bucket_take(&c->rl, &cfg->conn_rate, now);
    if (ok && c->lu) ok = rate_bucket_take(&c->lu->rl, &cfg->user_rate, now);
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
    msg_trace_begin(&mt, &c->tctx, env.root, env.type_str, c->cid, c->user, len);
    if (e) {
        reject(c, e, detail, env.id);
        msg_trace_end(&mt);
        envelope_free(&env);
        return;
    }
    int rc;
    bool publishes = env.type == MT_SEND_TO_ROOM || env.type == MT_CHAT_MESSAGE ||
                     env.type == MT_SEND_TO_USER || env.type == MT_BROADCAST;
    if (publishes && hub_closing(c->sh->hub)) {
        /* Shutdown has begun: nothing new is taken, so nothing is acked that the
         * shutdown's drain would not deliver (server.c). */
        STAT_INC(hub_shutdown_refused);
        reject(c, PE_SHUTTING_DOWN, "the server is shutting down: send it elsewhere", env.id);
        msg_trace_end(&mt);
        envelope_free(&env);
        return;
    }
    switch (env.type) {
    case MT_JOIN_ROOM:
        rc = do_join(c, &env);
        break;
    case MT_LEAVE_ROOM:
        rc = do_leave(c, &env);
        break;
    case MT_SEND_TO_ROOM:
        rc = do_send_room(c, &env, false);
        break;
    case MT_CHAT_MESSAGE:
        rc = do_send_room(c, &env, true);
        break;
    case MT_SEND_TO_USER:
        rc = do_send_user(c, &env);
        break;
    case MT_BROADCAST:
        rc = do_broadcast(c, &env);
        break;
    case MT_REFRESH:
        rc = do_refresh(c, &env);
        break;
    default:
        rc = do_query(c, &env);
        break;
    }
    if (rc == 0) c->strikes = 0; /* only a message carried out clears the strikes */
    msg_trace_end(&mt);
    envelope_free(&env);
}

static void on_drain(struct ws_conn *ws)
{
    struct client *c = ws->ud;
    if (c->n_replaying) replay_pump(c);
    if (!c->dropped) return;
    /* Tell a drop-oldest client what it lost, once its queue has room again. */
    json_t *p = json_pack("{s:I}", "count", (json_int_t)c->dropped);
    c->dropped = 0;
    reply(c, "dropped", p, NULL);
    json_decref(p);
}

static void on_close(struct ws_conn *ws, unsigned code)
{
    struct client *c = ws->ud;
    log_debug("client disconnected", "client=%s user=%s remote=%s duration_ms=%llu code=%u", c->cid,
              c->user, c->ip, (unsigned long long)(loop_now(c->sh->loop) - c->opened_ms), code);
    hub_ip_room_give(c->sh->hub, c->ip, c->n_rooms);
    while (c->n_rooms)
        shard_leave(c, c->rooms[c->n_rooms - 1]);
    shard_user_unlink(c->sh, c);
    registry_user_remove(c->sh->hub, c->user);
    hub_release(c->sh->hub, c->ip);
    c->ws = NULL;
    if (c->holds) { /* answers from the cluster are on their way: freed after them */
        c->closed = true;
        return;
    }
    client_free(c);
}

const struct ws_handler hub_ws_handler = {
    .on_open = on_open,
    .on_message = on_message,
    .on_drain = on_drain,
    .on_close = on_close,
    .on_deadline = on_deadline,
};
