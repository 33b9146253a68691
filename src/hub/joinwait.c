/* Cluster mode: joins and sessions that wait for their stream's position, and
 * recoveries that read what the node's mirror does not hold from Redis (relay.c has
 * the other half and the reasoning).
 *
 * A join in cluster mode is answered when an anchor item for its room reaches the
 * member's shard (relay_ask makes sure one comes). That item is ordered with the
 * room's deliveries in the shard's inbox, so its position is exact: live delivery
 * starts after it. A join with `since` that the mirror cannot serve, but whose epoch
 * is the stream's, first reads from Redis (the probe): the answer `recovered` is
 * decided on what Redis really holds, never promised and then broken. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/stats.h"
#include "hub/internal.h"

#define PROBE_MAX 64 /* positions read by the probe */

static void epoch_of(struct hist_stream *s, char out[HIST_EPOCH_LEN + 1], uint64_t *top)
{
    hist_lock(s);
    memcpy(out, hist_epoch(s), HIST_EPOCH_LEN + 1);
    if (top) *top = hist_top(s);
    hist_unlock(s);
}

int join_wait(struct client *c, struct membership *m, json_t *id, bool has_since, uint64_t since,
              const char *epoch)
{
    struct pending_join *pj = calloc(1, sizeof *pj);
    if (!pj || relay_ask(client_sh(c), HIST_ROOM, m->lr->room->id) != 0) {
        free(pj);
        char ip[CLIENT_IP_LEN];
        hub_ip_room_give(client_sh(c)->hub, client_ip(c, ip), 1);
        shard_leave(c, m);
        client_reject(c, PE_INTERNAL, "could not join", id);
        return -1;
    }
    pj->id = id ? json_incref(id) : NULL;
    pj->has_since = has_since;
    pj->since = since;
    if (epoch) snprintf(pj->epoch, sizeof pj->epoch, "%s", epoch);
    m->pend = pj;
    m->live_from = UINT64_MAX; /* nothing live before room_joined */
    return 0;
}

static void room_joined(struct client *c, struct membership *m, json_t *id, uint64_t top,
                        const char *epoch, int recovered, uint64_t replayed)
{
    json_t *p = json_pack("{s:s, s:I, s:s}", "room_id", m->lr->room->id, "seq", (json_int_t)top,
                          "epoch", epoch);
    if (recovered >= 0) {
        json_object_set_new(p, "recovered", json_boolean(recovered));
        json_object_set_new(p, "replayed", json_integer((json_int_t)replayed));
    }
    client_reply(c, "room_joined", p, id);
    json_decref(p);
}

static void pend_free(struct membership *m)
{
    json_decref(m->pend->id);
    free(m->pend);
    m->pend = NULL;
}

/* Live from the stream's position now (read under its lock, so exact). */
static void go_live(struct membership *m, char epoch[HIST_EPOCH_LEN + 1], uint64_t *top)
{
    epoch_of(m->lr->room->stream, epoch, top);
    m->live_from = *top;
}

static void complete_join(struct client *c, struct membership *m, uint64_t top)
{
    struct pending_join *pj = m->pend;
    struct hist_stream *s = m->lr->room->stream;
    char epoch[HIST_EPOCH_LEN + 1];
    epoch_of(s, epoch, NULL);
    if (!pj->has_since) {
        m->live_from = top;
        room_joined(c, m, pj->id, top, epoch, -1, 0);
        pend_free(m);
        return;
    }
    hist_lock(s);
    bool local = hist_can_resume(s, pj->epoch, pj->since);
    hist_unlock(s);
    if (local) { /* the mirror holds it all */
        STAT_INC(hub_recoveries[0][0]);
        m->cursor = pj->since;
        m->replaying = true;
        c->replay_due = true;
        room_joined(c, m, pj->id, top, epoch, 1, top - pj->since);
        pend_free(m);
        replay_pump(c);
        return;
    }
    if (!strcmp(pj->epoch, epoch) && pj->since < top &&
        relay_fetch(c, false, m->lr->room->id, epoch, pj->since, PROBE_MAX) == 0) {
        pj->probing = true; /* answered in client_fetch_done */
        pj->top = top;
        return;
    }
    STAT_INC(hub_recoveries[0][1]);
    m->live_from = top;
    room_joined(c, m, pj->id, top, epoch, 0, 0);
    pend_free(m);
}

static bool frame_is_presence(const struct wh_msg *f)
{
    static const char pre[] = "{\"type\":\"presence\"";
    uint8_t l = f->len >= 2 ? f->data[1] & 0x7f : 0;
    size_t off = l == 126 ? 4 : l == 127 ? 10 : 2;
    return f->len >= off + sizeof pre - 1 && !memcmp(f->data + off, pre, sizeof pre - 1);
}

/* Sends the fetched positions that follow *cursor. */
static void send_fetched(struct client *c, const struct relay_fetched *res, uint64_t *cursor,
                         bool presence)
{
    for (uint32_t i = 0; i < res->n; i++) {
        uint64_t seq = res->since + 1 + i;
        if (seq != *cursor + 1) continue;
        if (presence || !frame_is_presence(res->frames[i])) {
            ws_send_frame(client_ws(c), msg_ref(res->frames[i]));
            STAT_INC(hub_replayed);
        }
        (*cursor)++;
    }
}

static void abort_recovery(struct client *c)
{
    STAT_INC(hub_replay_aborts);
    char cid[17];
    log_info("recovery could not be completed from Redis, closing", "user=%s client=%s", c->user,
             client_cid(c, cid));
    ws_fail(client_ws(c), WS_CLOSE_TRY_AGAIN, "recovery fell behind the history");
}

static void room_fetched(struct client *c, const struct relay_fetched *res)
{
    struct membership *m = client_membership(c, res->room);
    if (!m) return;
    if (m->pend && m->pend->probing) {
        struct pending_join *pj = m->pend;
        char epoch[HIST_EPOCH_LEN + 1];
        if (!res->ok) {
            STAT_INC(hub_recoveries[0][1]);
            uint64_t top;
            go_live(m, epoch, &top);
            room_joined(c, m, pj->id, top, epoch, 0, 0);
            pend_free(m);
            return;
        }
        STAT_INC(hub_recoveries[0][0]);
        epoch_of(m->lr->room->stream, epoch, NULL);
        room_joined(c, m, pj->id, pj->top, epoch, 1, pj->top - pj->since);
        m->cursor = pj->since;
        pend_free(m);
        send_fetched(c, res, &m->cursor, m->presence);
        m->replaying = true;
        c->replay_due = true;
        replay_pump(c);
        return;
    }
    if (!m->replaying || !m->fetching) return;
    m->fetching = false;
    if (!res->ok) {
        abort_recovery(c);
        return;
    }
    send_fetched(c, res, &m->cursor, m->presence);
    replay_pump(c);
}

static void session_msg(struct client *c, uint64_t top, const char *epoch, bool ok,
                        uint64_t replayed)
{
    json_t *p = json_pack("{s:s, s:I, s:s, s:b, s:I}", "user_id", c->user, "seq", (json_int_t)top,
                          "epoch", epoch, "recovered", ok, "replayed", (json_int_t)replayed);
    client_reply(c, "session", p, NULL);
    json_decref(p);
}

static void user_fetched(struct client *c, const struct relay_fetched *res)
{
    struct user_pos *up = client_upos(c);
    if (!up) return;
    char epoch[HIST_EPOCH_LEN + 1];
    if (up->probing) {
        up->probing = false;
        up->pending = false;
        if (!res->ok) {
            STAT_INC(hub_recoveries[1][1]);
            uint64_t top;
            epoch_of(up->stream, epoch, &top);
            up->live_from = top;
            session_msg(c, top, epoch, false, 0);
            return;
        }
        STAT_INC(hub_recoveries[1][0]);
        epoch_of(up->stream, epoch, NULL);
        session_msg(c, res->top, epoch, true, res->top - up->since);
        send_fetched(c, res, &up->cursor, true);
        up->replaying = true;
        c->replay_due = true;
        replay_pump(c);
        return;
    }
    if (!up->replaying || !up->fetching) return;
    up->fetching = false;
    if (!res->ok) {
        abort_recovery(c);
        return;
    }
    send_fetched(c, res, &up->cursor, true);
    replay_pump(c);
}

void client_fetch_done(struct client *c, const struct relay_fetched *res)
{
    if (c->open && client_ws(c)->state == WS_OPEN) {
        if (res->user)
            user_fetched(c, res);
        else
            room_fetched(c, res);
    }
    client_release(c);
}

/* Members go on after the anchor: pending joins complete; on a new epoch, the others
 * are told (recovered: false) and go live from it; when the node had missed messages
 * (same epoch, position moved on), they catch up from where they were. */
void client_room_anchor(struct shard *sh, const struct item *it)
{
    struct local_room *lr;
    HASH_FIND_PTR(sh->rooms, &it->room, lr);
    if (!lr) return;
    bool reset = it->presence;
    uint64_t top = it->seq, old_top = it->published_us;
    for (uint32_t i = 0; i < lr->n; i++) {
        struct membership *m = lr->m[i];
        struct client *c = m->c;
        if (!c->open || client_ws(c)->state != WS_OPEN) continue;
        if (m->pend) {
            if (!m->pend->probing) complete_join(c, m, top);
            continue;
        }
        if (reset) {
            STAT_INC(hub_recoveries[0][1]);
            m->replaying = false;
            m->fetching = false;
            char epoch[HIST_EPOCH_LEN + 1];
            epoch_of(lr->room->stream, epoch, NULL);
            m->live_from = top;
            room_joined(c, m, NULL, top, epoch, 0, 0);
        } else if (old_top < top && !m->replaying) {
            m->cursor = old_top; /* what it had; the rest comes from Redis */
            m->live_from = UINT64_MAX;
            m->replaying = true;
            c->replay_due = true;
            replay_pump(c);
        }
    }
}

static void complete_session(struct client *c, uint64_t top)
{
    struct user_pos *up = client_upos(c);
    char epoch[HIST_EPOCH_LEN + 1];
    epoch_of(up->stream, epoch, NULL);
    up->pending = false;
    if (!up->epoch[0]) {
        up->live_from = top;
        session_msg(c, top, epoch, false, 0);
        return;
    }
    hist_lock(up->stream);
    bool local = hist_can_resume(up->stream, up->epoch, up->since);
    hist_unlock(up->stream);
    if (local) {
        STAT_INC(hub_recoveries[1][0]);
        up->cursor = up->since;
        up->replaying = true;
        c->replay_due = true;
        session_msg(c, top, epoch, true, top - up->since);
        replay_pump(c);
        return;
    }
    if (!strcmp(up->epoch, epoch) && up->since < top &&
        relay_fetch(c, true, c->user, epoch, up->since, PROBE_MAX) == 0) {
        up->pending = true;
        up->probing = true;
        up->cursor = up->since;
        return;
    }
    STAT_INC(hub_recoveries[1][1]);
    up->live_from = top;
    session_msg(c, top, epoch, false, 0);
}

void client_user_anchor(struct shard *sh, const struct item *it)
{
    struct online_user *u = user_tab_find(&sh->users, (const char *)it->target->data);
    if (!u) return;
    bool reset = it->presence;
    uint64_t top = it->seq, old_top = it->published_us;
    uint32_t nc;
    struct client *const *cs = ou_clients(u, sh, &nc);
    for (uint32_t i = 0; i < nc; i++) {
        struct client *c = cs[i];
        struct user_pos *up = client_upos(c);
        if (!up || !up->stream || !c->open || client_ws(c)->state != WS_OPEN) continue;
        if (up->pending) {
            if (!up->probing) complete_session(c, top);
            continue;
        }
        if (reset) {
            STAT_INC(hub_recoveries[1][1]);
            up->replaying = false;
            up->fetching = false;
            char epoch[HIST_EPOCH_LEN + 1];
            epoch_of(up->stream, epoch, NULL);
            up->live_from = top;
            session_msg(c, top, epoch, false, 0);
        } else if (old_top < top && !up->replaying) {
            up->cursor = old_top;
            up->live_from = UINT64_MAX;
            up->replaying = true;
            c->replay_due = true;
            replay_pump(c);
        }
    }
}
