/* What a hub client asks of the hub, one envelope at a time (docs/protocol.md):
 * joining and leaving rooms (with recovery of what was missed), sending to a room, a
 * user or everyone, and the listing and history queries. Each is checked (fields,
 * the token's room patterns, the send policy, limits) and answered: a reply or ack
 * on success, an `error` with its code otherwise (client_reject, which counts the
 * strike). The connection's life (open, close, tokens) is hub/client.c's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/stats.h"
#include "hub/internal.h"
#include "telemetry/spans.h"

/* May this client send to / join `room`? Token patterns first, then policy. */
static enum proto_err may_publish(struct client *c, const char *room)
{
    const struct client_claims *k = client_token_claims(c);
    if (k->has_rooms && !auth_room_match(k->publish, k->n_publish, room)) return PE_FORBIDDEN;
    if (client_sh(c)->hub->cfg.send_policy == HUB_SEND_MEMBERS && !client_membership(c, room))
        return PE_NOT_MEMBER;
    return PE_NONE;
}

static bool may_join(struct client *c, const char *room)
{
    const struct client_claims *k = client_token_claims(c);
    return !(k->has_rooms && !auth_room_match(k->join, k->n_join, room));
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

/* In cluster mode a publish goes through Redis (relay_publish.c) and is acked once Redis has
 * given it its position (client_publish_done); id NULL with HIST_ROOM: everyone. */
static int send_cluster(struct client *c, struct envelope *env, enum hist_kind kind, const char *id,
                        const struct proto_payload *payload)
{
    if (relay_publish(client_sh(c)->hub, kind, id, env->type_str, payload, c->user, c, env->id) !=
        0)
        return client_reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached: not sent",
                             env->id);
    return 0;
}

/* Decides a recovery of the stream s from (epoch, since), counted: on success the
 * caller's cursor and live_from are set for replay_pump. */
bool client_begin_recovery(struct client *c, struct hist_stream *s, int stream, uint64_t since,
                           const char *epoch, uint64_t *cursor, uint64_t *live_from)
{
    hist_lock(s);
    bool ok = hist_can_resume(s, epoch, since);
    hist_unlock(s);
    STAT_INC(hub_recoveries[stream][ok ? 0 : 1]);
    if (!ok) return false;
    *cursor = since;
    *live_from = UINT64_MAX; /* the replay catches up from the history */
    c->replay_due = true;
    return true;
}

static int do_join(struct client *c, struct envelope *env)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return client_reject(c, e, "join_room needs a room_id string (1-128 bytes)", env->id);
    if (!may_join(c, room))
        return client_reject(c, PE_FORBIDDEN, "not allowed to join this room", env->id);
    json_t *pv = json_object_get(env->payload, "presence");
    if (pv && !json_is_boolean(pv))
        return client_reject(c, PE_BAD_FIELD, "presence must be true or false", env->id);
    bool presence = pv ? json_is_true(pv) : true;
    json_t *sv = json_object_get(env->payload, "since");
    uint64_t since = 0;
    const char *epoch = NULL;
    if (sv && !parse_since(sv, &since, &epoch))
        return client_reject(c, PE_BAD_FIELD,
                             "since must be {\"seq\": integer >= 0, \"epoch\": string}", env->id);
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
        if (client_n_rooms(c) >= client_sh(c)->hub->cfg.max_rooms_per_conn)
            return client_reject(c, PE_TOO_LARGE, "too many rooms joined on this connection",
                                 env->id);
        char ip[CLIENT_IP_LEN];
        if (!hub_ip_room_take(client_sh(c)->hub, client_ip(c, ip)))
            return client_reject(c, PE_LIMIT_REACHED, "too many rooms joined from this address",
                                 env->id);
        if (!hub_ready(client_sh(c)->hub)) {
            hub_ip_room_give(client_sh(c)->hub, ip, 1);
            relay_count_unavailable(client_sh(c)->hub);
            return client_reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached",
                                 env->id);
        }
        int rc = shard_join(c, room, presence, &snap);
        if (rc < 0) {
            hub_ip_room_give(client_sh(c)->hub, ip, 1);
            return rc == -ENOSPC ? client_reject(c, PE_LIMIT_REACHED,
                                                 "the server has its most rooms", env->id)
                                 : client_reject(c, PE_INTERNAL, "could not join", env->id);
        }
        m = c->rooms->m[c->rooms->n - 1];
        if (client_sh(c)->hub->relay) /* room_joined once the room's position is known */
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
        m->replaying = client_begin_recovery(c, s, 0, since, epoch, &m->cursor, &m->live_from);
        uint64_t replayed = m->replaying && snap > since ? snap - since : 0;
        recover_trace_end(&rt, m->replaying, replayed);
        json_object_set_new(p, "recovered", json_boolean(m->replaying));
        json_object_set_new(p, "replayed", json_integer((json_int_t)replayed));
    }
    client_reply(c, "room_joined", p, env->id);
    json_decref(p);
    if (m->replaying) replay_pump(c);
    return 0;
}

static int do_leave(struct client *c, struct envelope *env)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return client_reject(c, e, "leave_room needs a room_id string (1-128 bytes)", env->id);
    struct membership *m = client_membership(c, room);
    if (!m) return client_reject(c, PE_NOT_MEMBER, "not a member of this room", env->id);
    json_t *p = json_pack("{s:s}", "room_id", room); /* room points into env: copy first */
    shard_leave(c, m);
    char ip[CLIENT_IP_LEN];
    hub_ip_room_give(client_sh(c)->hub, client_ip(c, ip), 1);
    client_reply(c, "room_left", p, env->id);
    json_decref(p);
    return 0;
}

static int do_send_room(struct client *c, struct envelope *env, bool chat)
{
    const char *room;
    enum proto_err e = envelope_name(env, "room_id", &room);
    if (e) return client_reject(c, e, "needs a room_id string (1-128 bytes)", env->id);
    if ((e = may_publish(c, room)))
        return client_reject(c, e,
                             e == PE_NOT_MEMBER ? "join the room before sending to it"
                                                : "not allowed to send to this room",
                             env->id);
    struct proto_payload payload = env->out;
    json_t *chatp = NULL;
    if (chat) {
        /* The guide's chat message: user_id is the sender, stamped by the server. */
        json_t *content = json_object_get(env->payload, "content");
        if (!content)
            return client_reject(c, PE_MISSING_FIELD, "chat_message needs content", env->id);
        if (!json_is_string(content))
            return client_reject(c, PE_BAD_FIELD, "content must be a string", env->id);
        chatp =
            json_pack("{s:s, s:s, s:O}", "room_id", room, "user_id", c->user, "content", content);
        payload = proto_json(chatp);
    }
    struct membership *m = client_membership(c, room);
    uint64_t seq;
    if (client_sh(c)->hub->relay) {
        int rc = send_cluster(c, env, HIST_ROOM, room, &payload);
        json_decref(chatp);
        return rc;
    }
    if (m) {
        seq = room_publish(client_sh(c)->hub, m->lr->room, env->type_str, &payload, c->user, false);
    } else {
        seq = hub_publish_room(client_sh(c)->hub, room, env->type_str, &payload, c->user);
    }
    json_decref(chatp);
    client_ack(c, env->id, room, seq);
    return 0;
}

static int do_send_user(struct client *c, struct envelope *env)
{
    const char *user;
    enum proto_err e = envelope_name(env, "user_id", &user);
    if (e) return client_reject(c, e, "send_to_user needs a user_id string (1-128 bytes)", env->id);
    if (client_sh(c)->hub->relay) return send_cluster(c, env, HIST_USER, user, &env->out);
    hub_publish_user(client_sh(c)->hub, user, env->type_str, &env->out, c->user);
    client_ack(c, env->id, NULL, 0);
    return 0;
}

static int do_broadcast(struct client *c, struct envelope *env)
{
    bool allowed = client_sh(c)->hub->cfg.client_broadcast || client_token_claims(c)->can_broadcast;
    if (!allowed) return client_reject(c, PE_FORBIDDEN, "broadcast is not allowed", env->id);
    if (client_sh(c)->hub->relay) return send_cluster(c, env, HIST_ROOM, NULL, &env->out);
    hub_publish_all(client_sh(c)->hub, env->type_str, &env->out, c->user);
    client_ack(c, env->id, NULL, 0);
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
            client_reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached", w->id);
        } else {
            if (status == HUB_LIST_NOT_FOUND) pg->items = json_array();
            json_t *p = hub_page_json(pg, w->type == MT_ONLINE_USERS ? "online_users"
                                          : w->type == MT_LIST_ROOMS ? "rooms"
                                                                     : "members");
            if (p && w->type == MT_ROOM_MEMBERS)
                json_object_set_new(p, "room_id", json_string(w->room));
            client_reply(c, w->type_str, p, w->id);
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
        if (e) return client_reject(c, e, "room_members needs a room_id string", env->id);
    }
    struct list_wait *w = calloc(1, sizeof *w);
    if (!w) return client_reject(c, PE_INTERNAL, "out of memory", env->id);
    w->type = env->type;
    snprintf(w->type_str, sizeof w->type_str, "%s", env->type_str);
    if (room) snprintf(w->room, sizeof w->room, "%s", room);
    enum hub_listing kind = env->type == MT_ONLINE_USERS ? HUB_LIST_ONLINE
                            : env->type == MT_LIST_ROOMS ? HUB_LIST_ROOMS
                                                         : HUB_LIST_MEMBERS;
    w->c = client_hold(c);
    w->id = env->id ? json_incref(env->id) : NULL;
    if (hub_list_async(client_sh(c)->hub, kind, room, after, limit, client_sh(c)->loop, list_back,
                       w) != 0) {
        client_release(c);
        json_decref(w->id);
        free(w);
        return client_reject(c, PE_UNAVAILABLE, "the cluster's Redis cannot be reached", env->id);
    }
    return 0;
}

static int do_query(struct client *c, struct envelope *env)
{
    struct hub *h = client_sh(c)->hub;
    json_t *p = NULL;
    const char *after = NULL, *why = NULL;
    size_t limit = 0;
    struct hub_page pg = {0};
    if (env->type == MT_ONLINE_USERS || env->type == MT_LIST_ROOMS ||
        env->type == MT_ROOM_MEMBERS) {
        if ((why = page_args(env, &after, &limit)))
            return client_reject(c, PE_BAD_FIELD, why, env->id);
        /* Listings have their own budget, on even when message rates are unlimited. */
        if (!hub_client_query_take(c, hub_query_cost(limit))) {
            STAT_INC(hub_query_limited);
            return client_reject(c, PE_RATE_LIMITED, "too many listing queries: slow down",
                                 env->id);
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
        if (e) return client_reject(c, e, "room_members needs a room_id string", env->id);
        if (hub_room_members(h, room, after, limit, &pg) < 0) pg.items = json_array();
        p = hub_page_json(&pg, "members");
        if (p) json_object_set_new(p, "room_id", json_string(room));
        break;
    }
    default:
        p = json_object();
        break;
    }
    client_reply(c, env->type == MT_PING ? "pong" : env->type_str, p, env->id);
    json_decref(p);
    return 0;
}

int client_command(struct client *c, struct envelope *env)
{
    switch (env->type) {
    case MT_JOIN_ROOM:
        return do_join(c, env);
    case MT_LEAVE_ROOM:
        return do_leave(c, env);
    case MT_SEND_TO_ROOM:
        return do_send_room(c, env, false);
    case MT_CHAT_MESSAGE:
        return do_send_room(c, env, true);
    case MT_SEND_TO_USER:
        return do_send_user(c, env);
    case MT_BROADCAST:
        return do_broadcast(c, env);
    default:
        return do_query(c, env);
    }
}
