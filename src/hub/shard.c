/* Shards: each worker's local view of the hub, its inbox, and delivery.
 *
 * The inbox is a mutex-guarded array swapped out whole when drained, so a post costs
 * one uncontended lock and no allocation (the arrays grow and are then reused). A
 * post to another shard wakes it through an eventfd only when its inbox was empty; a
 * post to one's own shard defers the drain to the end of the loop turn. Every
 * delivery goes through an inbox, the sender's own shard included: that is what
 * makes all members of a room see its messages in one order. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"
#include "base/stats.h"
#include "hub/internal.h"
#include "telemetry/spans.h"

_Thread_local struct shard *shard_cur;

struct shard *hub_shard_current(void)
{
    return shard_cur;
}

struct hub *hub_of(struct shard *sh)
{
    return sh->hub;
}

/* ---- inbox ---- */

static void item_release(struct item *it)
{
    msg_unref(it->frame);
    if (it->room) room_unref(it->room);
    if (it->target) msg_unref(it->target);
}

void inbox_push(struct shard *to, const struct item *it)
{
    struct inbox *ib = &to->inbox;
    pthread_mutex_lock(&ib->mu);
    if (ib->n == ib->cap) {
        size_t cap = ib->cap ? ib->cap * 2 : 64;
        struct item *ni = realloc(ib->items, cap * sizeof *ni);
        if (!ni) {
            pthread_mutex_unlock(&ib->mu);
            struct item copy = *it;
            item_release(&copy);
            STAT_INC(hub_dropped_nomem);
            log_error("hub inbox: out of memory, delivery lost", "shard=%d", to->idx);
            return;
        }
        ib->items = ni;
        ib->cap = cap;
    }
    ib->items[ib->n++] = *it;
    bool was_empty = ib->n == 1;
    pthread_mutex_unlock(&ib->mu);
    if (!was_empty) return; /* a wake-up is already on its way */
    if (shard_cur == to) {
        loop_defer(to->loop, &ib->task);
    } else {
        uint64_t one = 1;
        ssize_t w = write(ib->w.fd, &one, sizeof one);
        (void)w; /* EAGAIN: the counter is already non-zero */
    }
}

/* Returns the number of recipients the frame was queued to. */
static uint64_t deliver_item(struct shard *sh, struct item *it)
{
    uint64_t n = 0;
    switch (it->kind) {
    case IT_ROOM: {
        struct local_room *lr;
        HASH_FIND_PTR(sh->rooms, &it->room, lr);
        if (!lr) break;
        for (uint32_t i = 0; i < lr->n; i++) {
            struct membership *m = lr->m[i];
            if (it->seq <= m->live_from || (it->presence && !m->presence)) continue;
            n += shard_deliver(m->c, it->frame);
        }
        break;
    }
    case IT_USER: {
        struct online_user *u = user_tab_find(&sh->users, (const char *)it->target->data);
        uint32_t nc = 0;
        struct client *const *cs = u ? ou_clients(u, sh, &nc) : NULL;
        for (uint32_t i = 0; i < nc; i++) {
            struct client *c = cs[i];
            const struct user_pos *up = client_upos(c);
            if (!up || it->seq > up->live_from) n += shard_deliver(c, it->frame);
        }
        break;
    }
    case IT_ROOM_ANCHOR:
        client_room_anchor(sh, it);
        break;
    case IT_USER_ANCHOR:
        client_user_anchor(sh, it);
        break;
    case IT_ALL: {
        /* (A delivery never unlinks a client: closes complete at the end of the turn.) */
        for (uint32_t s = 0; s < sh->users.cap; s++) {
            struct online_user *u = ou_of(sh->users.slot[s]);
            uint32_t nc = 0;
            struct client *const *cs = u ? ou_clients(u, sh, &nc) : NULL;
            for (uint32_t i = 0; i < nc; i++)
                n += shard_deliver(cs[i], it->frame);
        }
        break;
    }
    }
    return n;
}

static void inbox_drain(struct shard *sh)
{
    struct inbox *ib = &sh->inbox;
    pthread_mutex_lock(&ib->mu);
    struct item *work = ib->items;
    size_t n = ib->n, work_cap = ib->cap;
    ib->items = ib->work; /* producers continue in the other array */
    ib->cap = ib->work_cap;
    ib->n = 0;
    ib->work = work;
    ib->work_cap = work_cap;
    pthread_mutex_unlock(&ib->mu);
    for (size_t i = 0; i < n; i++) {
        uint64_t queued = deliver_item(sh, &work[i]);
        /* One clock read per message per shard, counted once per recipient: the time
         * until this shard had queued it to all of its local recipients. */
        if (queued) {
            uint64_t now = stats_now_us(), then = work[i].published_us;
            stat_latency(now > then ? now - then : 0, queued); /* clocks of two CPUs */
        }
        item_release(&work[i]);
    }
    /* A burst leaves both arrays at its size: give back one that this drain used less
     * than a quarter of (the other follows on a later drain), down to the first
     * allocation. ib->work is this thread's alone. */
    if (ib->work_cap > 4096 && n < ib->work_cap / 4) {
        free(ib->work);
        ib->work = NULL;
        ib->work_cap = 0;
    }
}

void hub_shard_release_memory(struct shard *sh)
{
    struct inbox *ib = &sh->inbox;
    free(ib->work); /* this thread's alone, between drains */
    ib->work = NULL;
    ib->work_cap = 0;
    pthread_mutex_lock(&ib->mu);
    if (ib->n == 0) {
        free(ib->items);
        ib->items = NULL;
        ib->cap = 0;
    }
    pthread_mutex_unlock(&ib->mu);
}

static void inbox_wake_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    (void)events;
    struct shard *sh = (struct shard *)((char *)w - offsetof(struct shard, inbox.w));
    uint64_t n;
    ssize_t r = read(w->fd, &n, sizeof n);
    (void)r;
    inbox_drain(sh);
}

static void inbox_task_cb(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct shard *sh = (struct shard *)((char *)t - offsetof(struct shard, inbox.task));
    inbox_drain(sh);
}

/* ---- delivery to one client, with the slow-consumer policy ---- */

/* Full when the message count is reached, or when bytes would pass the limit with
 * something already queued (a single message larger than the byte bound still goes
 * out to an otherwise idle connection). */
static bool over_limit(const struct conn *cn, const struct hub_config *cfg, size_t len)
{
    const struct conn_queue *q = cn->q; /* NULL: nothing queued */
    uint32_t n = q ? q->count : 0;
    return n >= cfg->queue_msgs || (n > 0 && q->bytes + len > cfg->queue_bytes);
}

bool shard_deliver(struct client *c, struct wh_msg *frame)
{
    struct ws_conn *ws = client_ws(c);
    if (!ws || ws->state != WS_OPEN || conn_closed(&ws->c)) return false;
    struct conn *cn = &ws->c;
    const struct hub_config *cfg = &client_sh(c)->hub->cfg;
    if (over_limit(cn, cfg, frame->len) && (cn->flags & CONN_WRITABLE)) {
        /* Writes are corked until the end of the turn; a burst that fills the queue
         * within one turn is written out now rather than taken for a slow reader. */
        conn_flush(cn);
        if (conn_closed(cn)) return false;
    }
    if (over_limit(cn, cfg, frame->len)) {
        if (cfg->slow_policy == HUB_SLOW_DROP_OLDEST) {
            while (over_limit(cn, cfg, frame->len)) {
                if (conn_drop_oldest(cn) == 0) break;
                if (client_cold(c)) c->cold->dropped++; /* (no memory: not told) */
                STAT_INC(hub_dropped_oldest);
            }
        } else {
            size_t lost = conn_discard_queued(cn);
            STAT_ADD(hub_dropped_slow, lost + 1);
            STAT_INC(hub_slow_closes);
            log_info("slow consumer closed", "user=%s queued_messages=%zu", c->user, lost);
            ws_fail(ws, WS_CLOSE_TRY_AGAIN, "send queue full");
            return false;
        }
    }
    STAT_INC(hub_deliveries);
    ws_send_frame(ws, msg_ref(frame));
    stat_qdepth(conn_out_count(cn));
    return true;
}

/* ---- publishing ---- */

/* Recipients for a traced publish's recipients.count: the room's members (users),
 * a user's connections, or every connection. Only sampled publishes ask. */
static int64_t room_members(struct hub *h, struct room *room)
{
    pthread_mutex_lock(&h->reg.mu);
    int64_t n = (int64_t)room->n_users;
    pthread_mutex_unlock(&h->reg.mu);
    return n;
}

static int64_t user_conns(struct hub *h, const char *user)
{
    pthread_mutex_lock(&h->reg.mu);
    const struct online_user *u = ordset_find(&h->reg.users, user);
    int64_t n = u ? (int64_t)u->conns : 0;
    pthread_mutex_unlock(&h->reg.mu);
    return n;
}

/* Assigns the next position in s, builds the frame with it, keeps it in the history
 * and posts it to every shard, all under the stream's lock: so the order of positions
 * is the order of posting (every member sees one order), and a recovering member's
 * "history up to top, then live after top" has no gap and no duplicate. Returns the
 * position, 0 when the frame could not be built. */
static uint64_t stream_publish(struct hub *h, struct hist_stream *s, enum item_kind kind,
                               struct room *room, const char *room_id, struct wh_msg *target,
                               const char *type, const struct proto_payload *payload,
                               const char *from, bool presence, bool deliver)
{
    hist_lock(s);
    uint64_t seq = hist_top(s) + 1;
    struct wh_msg *frame = proto_frame(type, payload, from, room_id, seq, NULL);
    uint64_t now = stats_now_us();
    if (frame) {
        hist_append(s, frame, presence); /* a failed build leaves no gap */
        for (int i = 0; deliver && i < h->n_shards; i++) {
            struct item it = {.kind = (uint8_t)kind,
                              .presence = presence,
                              .frame = msg_ref(frame),
                              .room = room ? room_ref(room) : NULL,
                              .target = target ? msg_ref(target) : NULL,
                              .seq = seq,
                              .published_us = now};
            inbox_push(&h->shards[i], &it);
        }
    }
    hist_unlock(s);
    if (!frame) return 0;
    hist_enforce_cap(h->hist);
    STAT_INC(hub_published);
    msg_unref(frame);
    return seq;
}

uint64_t room_publish(struct hub *h, struct room *room, const char *type,
                      const struct proto_payload *payload, const char *from, bool presence)
{
    if (h->relay) { /* the position comes from Redis, the delivery with it */
        relay_publish(h, HIST_ROOM, room->id, type, payload, from, NULL, NULL);
        return 0;
    }
    struct pub_trace pt;
    int64_t recipients = 0;
    if (pub_trace_begin(&pt, type, "room", room->id))
        /* Presence events are published by the registry, which holds its lock. */
        recipients = presence ? (int64_t)room->n_users : room_members(h, room);
    uint64_t seq = stream_publish(h, room->stream, IT_ROOM, room, room->id, NULL, type, payload,
                                  from, presence, true);
    pub_trace_end(&pt, recipients);
    return seq;
}

uint64_t hub_publish_room(struct hub *h, const char *room_id, const char *type,
                          const struct proto_payload *payload, const char *from)
{
    if (h->relay) { /* members may be on any node: 0, the position comes later */
        relay_publish(h, HIST_ROOM, room_id, type, payload, from, NULL, NULL);
        return 0;
    }
    struct room *room = registry_find(h, room_id);
    if (room) {
        uint64_t seq = room_publish(h, room, type, payload, from, false);
        room_unref(room);
        return seq;
    }
    /* No member now, but the room's stream is still kept (it emptied less than its
     * time to live ago): the message goes into its history for those coming back. */
    struct hist_stream *s = hist_get(h->hist, HIST_ROOM, room_id, false, NULL);
    if (!s) return 0;
    uint64_t seq =
        stream_publish(h, s, IT_ROOM, NULL, room_id, NULL, type, payload, from, false, false);
    hist_unref(s);
    return seq;
}

uint64_t hub_publish_user(struct hub *h, const char *user, const char *type,
                          const struct proto_payload *payload, const char *from)
{
    uint64_t seq = 0;
    if (h->relay) {
        relay_publish(h, HIST_USER, user, type, payload, from, NULL, NULL);
        return 0;
    }
    struct pub_trace pt;
    int64_t recipients = 0;
    if (pub_trace_begin(&pt, type, "user", user)) recipients = user_conns(h, user);
    bool created = false;
    struct hist_stream *s = hist_get(h->hist, HIST_USER, user, true, &created);
    size_t n = strlen(user);
    struct wh_msg *target = msg_new(n + 1);
    if (s && target) {
        memcpy(target->data, user, n + 1);
        if (created) registry_user_stream(h, user, s);
        seq = stream_publish(h, s, IT_USER, NULL, NULL, target, type, payload, from, false, true);
    }
    pub_trace_end(&pt, recipients);
    if (target) msg_unref(target);
    if (s) hist_unref(s);
    return seq;
}

void hub_publish_all(struct hub *h, const char *type, const struct proto_payload *payload,
                     const char *from)
{
    if (h->relay) {
        relay_publish(h, HIST_ROOM, NULL, type, payload, from, NULL, NULL);
        return;
    }
    struct pub_trace pt;
    int64_t recipients = 0;
    if (pub_trace_begin(&pt, type, "all", NULL)) recipients = (int64_t)atomic_load(&h->conns);
    struct wh_msg *frame = proto_frame(type, payload, from, NULL, 0, NULL);
    pub_trace_end(&pt, recipients);
    if (!frame) return;
    uint64_t now = stats_now_us();
    for (int i = 0; i < h->n_shards; i++) {
        struct item it = {.kind = IT_ALL, .frame = msg_ref(frame), .published_us = now};
        inbox_push(&h->shards[i], &it);
    }
    STAT_INC(hub_published);
    msg_unref(frame);
}

/* ---- local users and rooms ---- */

static int grow(void **arr, uint32_t *cap, size_t elem)
{
    uint32_t nc = *cap ? *cap * 2 : 4;
    void *na = realloc(*arr, (size_t)nc * elem);
    if (!na) return -ENOMEM;
    *arr = na;
    *cap = nc;
    return 0;
}

/* Adds c to a user's connections slot (see ou_slot): -ENOMEM leaves it unchanged. */
static int slot_add(uintptr_t *slot, struct client *c)
{
    if (!*slot) {
        *slot = (uintptr_t)c;
        return 0;
    }
    struct user_conns *uc = (struct user_conns *)(*slot & ~(uintptr_t)1);
    if (!(*slot & 1)) { /* a second connection: the array starts */
        if (!(uc = malloc(sizeof *uc + 4 * sizeof uc->c[0]))) return -ENOMEM;
        uc->c[0] = (struct client *)*slot;
        uc->n = 1;
        uc->cap = 4;
    } else if (uc->n == uc->cap) {
        struct user_conns *g = realloc(uc, sizeof *uc + 2 * (size_t)uc->cap * sizeof uc->c[0]);
        if (!g) return -ENOMEM;
        uc = g;
        uc->cap *= 2;
    }
    uc->c[uc->n++] = c;
    *slot = (uintptr_t)uc | 1;
    return 0;
}

static void slot_del(uintptr_t *slot, struct client *c)
{
    if (!(*slot & 1)) {
        if (*slot == (uintptr_t)c) *slot = 0;
        return;
    }
    struct user_conns *uc = (struct user_conns *)(*slot & ~(uintptr_t)1);
    uint32_t i = 0;
    while (i < uc->n && uc->c[i] != c) /* a scan: the user's connections on one shard */
        i++;
    if (i == uc->n) return;
    uc->c[i] = uc->c[--uc->n];
    if (uc->n == 1) { /* back to the client itself in the slot */
        *slot = (uintptr_t)uc->c[0];
        free(uc);
    } else if (uc->cap > 4 && uc->n * 4 <= uc->cap) { /* a crowd has gone */
        struct user_conns *s = realloc(uc, sizeof *uc + (size_t)uc->cap / 2 * sizeof uc->c[0]);
        if (s) {
            s->cap /= 2;
            *slot = (uintptr_t)s | 1;
        }
    }
}

void shard_user_link(struct shard *sh, struct client *c, struct online_user *u)
{
    uintptr_t *slot = ou_slot(u, sh);
    bool first = !*slot;
    if (first) {
        if (user_tab_add(&sh->users, u) < 0) return;
        if (sh->hub->cfg.user_rate.rate)
            rate_bucket_init(ou_bucket(u, sh), &sh->hub->cfg.user_rate, loop_now(sh->loop));
    }
    if (slot_add(slot, c) < 0) return; /* (not first: a single client needs no memory) */
    free((char *)(uintptr_t)c->user);
    c->user = ou_key(u); /* the one copy of the id */
    c->user_own = false;
    sh->n_clients++;
}

void shard_user_unlink(struct shard *sh, struct client *c)
{
    if (c->user_own) return; /* never linked */
    struct online_user *u = client_ou(c);
    uintptr_t *slot = ou_slot(u, sh);
    slot_del(slot, c);
    sh->n_clients--;
    if (!*slot) user_tab_del(&sh->users, u);
}

struct membership *client_membership(const struct client *c, const char *room)
{
    for (uint32_t i = 0; i < client_n_rooms(c); i++)
        if (strcmp(c->rooms->m[i]->lr->room->id, room) == 0) return c->rooms->m[i];
    return NULL;
}

/* A shard keeps a local room only while it has local members; the last one out
 * releases the shard's reference to the process-wide room. */
static void local_room_drop_if_empty(struct shard *sh, struct local_room *lr)
{
    if (lr->n) return;
    struct room *room = lr->room;
    HASH_DEL(sh->rooms, lr);
    free(lr->m);
    free(lr);
    room_unref(room);
}

int shard_join(struct client *c, const char *room_id, bool presence, uint64_t *snap)
{
    struct shard *sh = client_sh(c);
    /* The array's capacity is not stored: it is rooms_cap(n), so it grows when n
     * reaches it (a realloc to the next size; leaving never shrinks it). */
    uint32_t n = client_n_rooms(c), cap = rooms_cap(n);
    if (n == cap) {
        cap = cap ? cap * 2 : 4;
        struct client_rooms *nr = realloc(c->rooms, sizeof *nr + (size_t)cap * sizeof nr->m[0]);
        if (!nr) return -ENOMEM;
        nr->n = n;
        c->rooms = nr;
    }
    struct membership *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    struct local_room *lr;
    m->c = c;
    m->presence = presence;
    /* Our own presence event is delivered from the inbox after we return, by which
     * time the local entry below exists: the joiner sees its own join. */
    struct room *room = registry_join(sh->hub, room_id, c->user, snap);
    if (!room) {
        int err = errno; /* before free() */
        free(m);
        return err == ENOSPC ? -ENOSPC : -ENOMEM;
    }
    HASH_FIND_PTR(sh->rooms, &room, lr);
    if (lr) {
        room_unref(room); /* the local entry already holds one */
    } else {
        lr = calloc(1, sizeof *lr);
        if (!lr) {
            registry_leave(sh->hub, room, c->user);
            room_unref(room);
            free(m);
            return -ENOMEM;
        }
        lr->room = room;
        HASH_ADD_PTR(sh->rooms, room, lr);
    }
    if (lr->n == lr->cap && grow((void **)&lr->m, &lr->cap, sizeof *lr->m) < 0) {
        registry_leave(sh->hub, room, c->user);
        local_room_drop_if_empty(sh, lr);
        free(m);
        return -ENOMEM;
    }
    m->lr = lr;
    m->live_from = *snap;
    m->index = lr->n;
    lr->m[lr->n++] = m;
    c->rooms->m[c->rooms->n++] = m;
    return 0;
}

int shard_leave(struct client *c, struct membership *m)
{
    struct shard *sh = client_sh(c);
    struct local_room *lr = m->lr;
    struct room *room = lr->room;
    uint32_t i = m->index;
    lr->m[i] = lr->m[--lr->n];
    lr->m[i]->index = i;
    for (uint32_t k = 0; k < client_n_rooms(c); k++) {
        if (c->rooms->m[k] == m) {
            c->rooms->m[k] = c->rooms->m[--c->rooms->n];
            break;
        }
    }
    if (m->pend) {
        json_decref(m->pend->id);
        free(m->pend);
    }
    free(m);
    registry_leave(sh->hub, room, c->user);
    local_room_drop_if_empty(sh, lr);
    return 0;
}

/* ---- life cycle ---- */

struct hub *hub_create(const struct hub_config *cfg, int n_shards)
{
    struct hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cfg = *cfg;
    registry_init(&h->reg);
    pthread_mutex_init(&h->ip_mu, NULL);
    hub_limits_init(h); /* without its table, listings are not limited per address */
    h->n_shards = n_shards;
    h->shards = calloc((size_t)n_shards, sizeof *h->shards);
    h->hist = hist_store_new(&cfg->hist);
    if (!h->shards || !h->hist) {
        h->n_shards = 0; /* no inbox was set up */
        hub_destroy(h);
        return NULL;
    }
    for (int i = 0; i < n_shards; i++) {
        struct shard *sh = &h->shards[i];
        sh->inbox.w.fd = -1;
    }
    for (int i = 0; i < n_shards; i++) {
        struct shard *sh = &h->shards[i];
        sh->idx = i;
        sh->hub = h;
        pthread_mutex_init(&sh->inbox.mu, NULL);
        loop_watch_init(&sh->inbox.w, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), inbox_wake_cb);
        loop_task_init(&sh->inbox.task, inbox_task_cb);
        if (sh->inbox.w.fd < 0) {
            hub_destroy(h);
            return NULL;
        }
    }
    if (cfg->n_redis > 0 && relay_start(h) != 0) {
        hub_destroy(h);
        return NULL;
    }
    return h;
}

#define SWEEP_MS 1000

static void sweep_cb(struct loop *loop, struct timer *t)
{
    struct hub *h = (struct hub *)((char *)t - offsetof(struct hub, sweep));
    hist_sweep(h->hist);
    loop_timer_arm(loop, t, SWEEP_MS);
}

struct shard *hub_shard_attach(struct hub *h, int idx, struct loop *loop)
{
    struct shard *sh = &h->shards[idx];
    sh->loop = loop;
    shard_cur = sh;
    if (loop_watch_add(loop, &sh->inbox.w, EPOLLIN) < 0) return NULL;
    if (idx == 0) {
        /* History expiry is shard 0's chore: the store is shared, one sweeper is
         * enough, and the sweep takes well under a millisecond per 10k streams. */
        loop_timer_init(&h->sweep, sweep_cb);
        loop_timer_arm(loop, &h->sweep, SWEEP_MS);
    }
    return sh;
}

void hub_shard_drain(struct shard *sh)
{
    if (sh) inbox_drain(sh);
}

void hub_shard_detach(struct shard *sh)
{
    if (!sh) return;
    if (sh->idx == 0) loop_timer_cancel(sh->loop, &sh->hub->sweep);
    inbox_drain(sh); /* release what is still posted */
    loop_watch_del(sh->loop, &sh->inbox.w);
    shard_cur = NULL;
}

void hub_destroy(struct hub *h)
{
    if (!h) return;
    relay_stop(h); /* normally done already (hub_cluster_stop) */
    for (int i = 0; h->shards && i < h->n_shards; i++) {
        struct shard *sh = &h->shards[i];
        for (size_t k = 0; k < sh->inbox.n; k++)
            item_release(&sh->inbox.items[k]);
        free(sh->inbox.items);
        free(sh->inbox.work);
        id_tab_free(&sh->users);
        if (sh->inbox.w.fd >= 0) close(sh->inbox.w.fd);
        pthread_mutex_destroy(&sh->inbox.mu);
    }
    free(h->shards);
    registry_destroy(&h->reg);
    hist_store_free(h->hist); /* after the rooms and users that hold streams */
    for (uint32_t i = 0; i < h->ips.cap; i++)
        if (h->ips.slot[i]) free(ip_of(h->ips.slot[i]));
    id_tab_free(&h->ips);
    pthread_mutex_destroy(&h->ip_mu);
    hub_limits_destroy(h);
    free(h);
}
