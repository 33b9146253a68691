/* Recovery: sending a returning client what it missed, from the stream's history,
 * then switching it to live delivery with no gap and no duplicate.
 *
 * A recovering membership skips live deliveries (live_from = max) and reads the
 * history from its cursor instead, a batch at a time, never filling more than half of
 * the client's send-queue bounds (the other half stays for live traffic of its other
 * rooms and for replies); when the queue drains, the pump goes on. When a read finds
 * nothing after the cursor, the cursor is the stream's top, read under the stream's
 * lock: every later position is posted to the shards after that moment and is
 * drained by this thread after this call, so setting live_from = top there is exact.
 * If the history moves past the cursor before the client has read it (the client
 * reads slower than the room publishes, beyond the history's size), the recovery
 * cannot be completed honestly: the connection is closed with 1013, the slow-consumer
 * answer, and the client's next recovery attempt gets `recovered: false`. */
#include <string.h>

#include "base/log.h"
#include "base/stats.h"
#include "hub/internal.h"

#define REPLAY_BATCH 32

/* Every room and user id fits a stream name. */
_Static_assert(PROTO_MAX_NAME <= HIST_MAX_NAME && AUTH_MAX_USER <= HIST_MAX_NAME,
               "ids longer than the history's names");

enum pump { PUMP_DONE, PUMP_PAUSED, PUMP_ABORT };

/* Room left in the half of the queue bounds that a replay may use. */
static int budget(const struct client *c)
{
    const struct conn *cn = &client_ws(c)->c;
    const struct hub_config *cfg = &client_sh(c)->hub->cfg;
    uint32_t half = cfg->queue_msgs / 2 ? cfg->queue_msgs / 2 : 1;
    if (conn_out_count(cn) >= half ||
        (conn_out_count(cn) > 0 && conn_out_bytes(cn) >= cfg->queue_bytes / 2))
        return 0;
    uint32_t n = half - conn_out_count(cn);
    return n < REPLAY_BATCH ? (int)n : REPLAY_BATCH;
}

/* Cluster mode: the positions after the cursor that the mirror no longer (or never)
 * held are read from Redis; the pump goes on when they are here (joinwait.c). */
struct fetch_ctx {
    bool *fetching;
    bool user;
    const char *id;
};

static enum pump pump_stream(struct client *c, struct hist_stream *s, uint64_t *cursor,
                             uint64_t *live_from, bool presence, const struct fetch_ctx *fx)
{
    struct hist_entry buf[REPLAY_BATCH];
    for (;;) {
        if (*fx->fetching) return PUMP_PAUSED;
        int max = budget(c);
        if (max == 0) return PUMP_PAUSED;
        hist_lock(s);
        int n = hist_read(s, *cursor, buf, max);
        if (n == 0) *live_from = hist_top(s); /* caught up: live from here */
        uint64_t first = hist_first(s);
        char epoch[HIST_EPOCH_LEN + 1];
        memcpy(epoch, hist_epoch(s), sizeof epoch);
        hist_unlock(s);
        if (n == 0) return PUMP_DONE;
        if (n < 0 && client_sh(c)->hub->relay) {
            uint64_t want = first - 1 - *cursor;
            if (relay_fetch(c, fx->user, fx->id, epoch, *cursor,
                            want < (uint64_t)max * 4 ? (uint32_t)want : (uint32_t)max * 4) != 0)
                return PUMP_ABORT;
            *fx->fetching = true;
            return PUMP_PAUSED;
        }
        if (n < 0) return PUMP_ABORT;
        const struct hub_config *cfg = &client_sh(c)->hub->cfg;
        int i = 0;
        for (; i < n; i++) {
            struct conn *cn = &client_ws(c)->c;
            if (conn_out_count(cn) > 0 &&
                conn_out_bytes(cn) + buf[i].frame->len > cfg->queue_bytes / 2)
                break; /* the rest waits for the drain */
            if (presence || !hist_entry_presence(&buf[i])) {
                ws_send_frame(client_ws(c), buf[i].frame); /* takes the reference */
                STAT_INC(hub_replayed);
            } else {
                msg_unref(buf[i].frame); /* an event this member opted out of */
            }
            (*cursor)++;
        }
        for (int k = i; k < n; k++)
            msg_unref(buf[k].frame);
        if (i < n) return PUMP_PAUSED;
    }
}

static bool finish(struct client *c, enum pump r, bool *flag)
{
    if (r == PUMP_DONE) {
        *flag = false;
        return true;
    }
    if (r == PUMP_ABORT) {
        STAT_INC(hub_replay_aborts);
        char cid[17];
        log_info("recovery overtaken by the history, closing", "user=%s client=%s", c->user,
                 client_cid(c, cid));
        ws_fail(client_ws(c), WS_CLOSE_TRY_AGAIN, "recovery fell behind the history");
        return false;
    }
    return true;
}

void replay_pump(struct client *c)
{
    struct ws_conn *ws = client_ws(c);
    if (!ws || ws->state != WS_OPEN || conn_closed(&ws->c)) return;
    if (!c->replay_due) return;
    struct user_pos *up = client_upos(c);
    if (up && up->replaying) {
        struct fetch_ctx fx = {&up->fetching, true, c->user};
        enum pump r = pump_stream(c, up->stream, &up->cursor, &up->live_from, true, &fx);
        if (!finish(c, r, &up->replaying) || r == PUMP_PAUSED) return;
    }
    for (uint32_t i = 0; i < client_n_rooms(c); i++) {
        struct membership *m = c->rooms->m[i];
        if (!m->replaying) continue;
        struct fetch_ctx fx = {&m->fetching, false, m->lr->room->id};
        enum pump r =
            pump_stream(c, m->lr->room->stream, &m->cursor, &m->live_from, m->presence, &fx);
        if (!finish(c, r, &m->replaying) || r == PUMP_PAUSED) return;
    }
    /* A whole pass without a pause: nothing is left replaying. */
    c->replay_due = false;
}

int hub_history(struct hub *h, bool user, const char *id, uint64_t after, struct hub_history *out)
{
    struct hist_stream *s = hist_get(h->hist, user ? HIST_USER : HIST_ROOM, id, false, NULL);
    if (!s) return -1;
    snprintf(out->epoch, sizeof out->epoch, "%s", hist_epoch(s));
    struct hist_entry buf[HUB_HISTORY_MAX];
    int max = out->n > 0 && out->n <= HUB_HISTORY_MAX ? out->n : HUB_HISTORY_MAX;
    hist_lock(s);
    out->top = hist_top(s);
    out->first = hist_first(s);
    if (after + 1 < out->first) after = out->first - 1; /* the rest is gone */
    int n = hist_read(s, after, buf, max);
    hist_unlock(s);
    hist_unref(s);
    out->n = n > 0 ? n : 0;
    out->from = after + 1;
    for (int i = 0; i < out->n; i++)
        out->frames[i] = buf[i].frame;
    return 0;
}

void hub_history_totals(struct hub *h, struct hist_totals *out)
{
    hist_totals(h->hist, out);
}
