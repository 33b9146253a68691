/* The process-wide registry: rooms with their de-duplicated members, and online users
 * with their connection counts. One mutex guards it; it is taken on connect,
 * disconnect, join, leave and queries, never per delivered message. Presence events
 * are published while it is held, so that a user's join and leave events reach the
 * room in the order they happened. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/stats.h"
#include "hub/internal.h"
#include "telemetry/trace.h"

static const char *user_order_key(const void *u)
{
    return ou_key(u);
}

void registry_init(struct registry *r)
{
    pthread_mutex_init(&r->mu, NULL);
    r->rooms = NULL;
    r->seed = trace_random64();
    skl_init(&r->room_order, trace_random64());
    ordset_init(&r->users, user_order_key);
}

static void online_user_free(struct hub *h, struct online_user *u)
{
    free((char *)u - ou_prefix(h));
}

void registry_destroy(struct registry *r)
{
    struct room *room, *rt;
    HASH_ITER(hh, r->rooms, room, rt)
    {
        HASH_DEL(r->rooms, room);
        room_unref(room);
    }
    struct hub *h = (struct hub *)(void *)((char *)r - offsetof(struct hub, reg));
    struct ordset_pos p;
    for (struct online_user *u = ordset_after(&r->users, NULL, &p), *next; u; u = next) {
        next = ordset_next(&r->users, &p); /* (does not read u) */
        hist_unref(u->stream);
        online_user_free(h, u);
    }
    skl_clear(&r->room_order);
    ordset_clear(&r->users);
    pthread_mutex_destroy(&r->mu);
}

struct room *room_ref(struct room *room)
{
    atomic_fetch_add_explicit(&room->refs, 1, memory_order_relaxed);
    return room;
}

void room_unref(struct room *room)
{
    if (atomic_fetch_sub_explicit(&room->refs, 1, memory_order_acq_rel) != 1) return;
    struct room_user *u, *t;
    HASH_ITER(hh, room->users, u, t)
    {
        HASH_DEL(room->users, u);
        free(u->user);
        free(u);
    }
    hist_unref(room->stream);
    skl_clear(&room->by_user);
    free(room->id);
    free(room);
}

/* One allocation per online user: the record, each shard's part, the id (see struct
 * online_user). */
static struct online_user *online_user_new(struct hub *h, const char *user, uint32_t hv)
{
    size_t len = strlen(user), locals = ou_prefix(h);
    char *base = calloc(1, locals + offsetof(struct online_user, key) + len + 1);
    if (!base) return NULL;
    struct online_user *u = (struct online_user *)(void *)(base + locals);
    memcpy(u->key, user, len + 1);
    u->hashv = hv;
    if (ordset_insert(&h->reg.users, u) != 0) {
        free(base); /* not listed anywhere: as if the allocation had failed */
        return NULL;
    }
    /* Keep the user's stream (if messages were ever sent to the user) while the user
     * is online, so its position survives a quiet hour. */
    u->stream = hist_get(h->hist, HIST_USER, user, false, NULL);
    return u;
}

struct online_user *registry_user_add(struct hub *h, const char *user)
{
    struct registry *r = &h->reg;
    uint32_t hv = user_hash(user); /* outside the lock (for a new record) */
    pthread_mutex_lock(&r->mu);
    struct online_user *u = ordset_find(&r->users, user);
    if (!u && (u = online_user_new(h, user, hv))) {
        /* In cluster mode the user's stream is the mirror of its stream in Redis,
         * followed while the user is online here. */
        if (h->relay && !u->stream) u->stream = hist_get(h->hist, HIST_USER, user, true, NULL);
        if (h->relay && u->stream) relay_watch(h, HIST_USER, user, NULL, u->stream, true);
        if (h->relay) cpresence_user(h, user, true);
    }
    if (u) u->conns++;
    pthread_mutex_unlock(&r->mu);
    return u;
}

void registry_user_remove(struct hub *h, const char *user)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct online_user *u = ordset_find(&r->users, user);
    if (u && --u->conns == 0) {
        ordset_remove(&r->users, ou_key(u));
        if (h->relay && u->stream) relay_watch(h, HIST_USER, user, NULL, NULL, false);
        if (h->relay) cpresence_user(h, user, false);
        hist_unref(u->stream);  /* its time to live starts now */
        online_user_free(h, u); /* user may have pointed into it: not read after this */
    }
    pthread_mutex_unlock(&r->mu);
}

void registry_user_stream(struct hub *h, const char *user, struct hist_stream *s)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct online_user *u = ordset_find(&r->users, user);
    if (u && !u->stream) u->stream = hist_ref(s);
    pthread_mutex_unlock(&r->mu);
}

static json_t *presence_payload(const char *room, const char *user, const char *event)
{
    return json_pack("{s:s, s:s, s:s}", "room_id", room, "user_id", user, "event", event);
}

struct room *registry_join(struct hub *h, const char *room_id, const char *user, uint64_t *snap)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room *room;
    HASH_FIND_STR(r->rooms, room_id, room);
    if (!room) {
        if (h->cfg.max_rooms && HASH_COUNT(r->rooms) >= h->cfg.max_rooms) {
            pthread_mutex_unlock(&r->mu);
            errno = ENOSPC;
            return NULL;
        }
        room = calloc(1, sizeof *room);
        /* The stream may already exist: the room emptied less than its time to live
         * ago, and its position and history carry on. */
        if (!room || !(room->id = strdup(room_id)) ||
            !(room->stream = hist_get(h->hist, HIST_ROOM, room_id, true, NULL)) ||
            skl_insert(&r->room_order, room->id, room) < 0) {
            if (room) {
                if (room->stream) hist_unref(room->stream);
                free(room->id);
            }
            free(room);
            pthread_mutex_unlock(&r->mu);
            errno = ENOMEM;
            return NULL;
        }
        atomic_init(&room->refs, 1); /* the registry's */
        skl_init(&room->by_user, r->seed ^ (uint64_t)(uintptr_t)room);
        HASH_ADD_KEYPTR(hh, r->rooms, room->id, strlen(room->id), room);
        if (h->relay) relay_watch(h, HIST_ROOM, room_id, room, room->stream, true);
    }
    struct room_user *u;
    HASH_FIND_STR(room->users, user, u);
    bool first = false;
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->user = strdup(user)) || skl_insert(&room->by_user, u->user, u) < 0) {
            if (u) free(u->user);
            free(u);
            pthread_mutex_unlock(&r->mu);
            errno = ENOMEM;
            return NULL;
        }
        HASH_ADD_KEYPTR(hh, room->users, u->user, strlen(u->user), u);
        room->n_users++;
        first = true;
    }
    u->conns++;
    room_ref(room);
    hist_lock(room->stream);
    *snap = hist_top(room->stream);
    hist_unlock(room->stream);
    if (first && h->relay) {
        cpresence_member(h, room_id, user, true); /* the event is cluster-wide */
    } else if (first && h->cfg.presence) {
        json_t *p = presence_payload(room_id, user, "join");
        {
            struct proto_payload pp = proto_json(p);
            room_publish(h, room, "presence", &pp, NULL, true);
        }
        json_decref(p);
    }
    pthread_mutex_unlock(&r->mu);
    return room;
}

void registry_leave(struct hub *h, struct room *room, const char *user)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room_user *u;
    HASH_FIND_STR(room->users, user, u);
    if (u && --u->conns == 0) {
        HASH_DEL(room->users, u);
        skl_remove(&room->by_user, u->user);
        free(u->user);
        free(u);
        room->n_users--;
        if (h->relay) {
            cpresence_member(h, room->id, user, false); /* the event is cluster-wide */
        } else if (h->cfg.presence && room->n_users > 0) {
            json_t *p = presence_payload(room->id, user, "leave");
            {
                struct proto_payload pp = proto_json(p);
                room_publish(h, room, "presence", &pp, NULL, true);
            }
            json_decref(p);
        }
        if (room->n_users == 0) {
            /* Unlisted: a later join creates a new room, which takes up the stream
             * (position, epoch, history) if it is still kept. */
            HASH_DEL(r->rooms, room);
            skl_remove(&r->room_order, room->id);
            if (h->relay) relay_watch(h, HIST_ROOM, room->id, NULL, NULL, false);
            room_unref(room);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

struct room *registry_find(struct hub *h, const char *room_id)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room *room;
    HASH_FIND_STR(r->rooms, room_id, room);
    if (room) room_ref(room);
    pthread_mutex_unlock(&r->mu);
    return room;
}

size_t hub_online_user_count(struct hub *h)
{
    pthread_mutex_lock(&h->reg.mu);
    size_t n = ordset_count(&h->reg.users);
    pthread_mutex_unlock(&h->reg.mu);
    return n;
}

size_t hub_room_count(struct hub *h)
{
    pthread_mutex_lock(&h->reg.mu);
    size_t n = HASH_COUNT(h->reg.rooms);
    pthread_mutex_unlock(&h->reg.mu);
    return n;
}

/* ---- paginated listing ---- */

void hub_page_free(struct hub_page *p)
{
    json_decref(p->items);
    json_decref(p->next);
    p->items = p->next = NULL;
}

json_t *hub_page_json(struct hub_page *p, const char *key)
{
    size_t n = json_array_size(p->items);
    json_t *o = json_pack("{s:o, s:I, s:I, s:o}", key, p->items, "count", (json_int_t)n, "total",
                          (json_int_t)p->total, "next_cursor", p->next ? p->next : json_null());
    p->items = p->next = NULL;
    return o;
}

/* One seek and at most `limit` steps: O(log n + limit) under the caller's lock. Each
 * entry is turned into an item by `item` while it is still alive. */
static void page_walk(const struct skiplist *s, const char *after, size_t limit,
                      json_t *(*item)(const struct skl_node *), struct hub_page *out)
{
    out->items = json_array();
    out->next = NULL;
    out->total = skl_count(s);
    struct skl_node *x = skl_after(s, after);
    const char *last = NULL;
    for (size_t k = 0; x && k < limit; k++, x = skl_next(x)) {
        json_array_append_new(out->items, item(x));
        last = x->key;
    }
    if (x && last) out->next = json_string(last);
}

/* The same over the online users' ordered set. */
static void page_walk_users(const struct ordset *s, const char *after, size_t limit,
                            struct hub_page *out)
{
    out->items = json_array();
    out->next = NULL;
    out->total = ordset_count(s);
    struct ordset_pos p;
    const struct online_user *u = ordset_after(s, after, &p);
    const char *last = NULL;
    for (size_t k = 0; u && k < limit; k++, u = ordset_next(s, &p)) {
        json_array_append_new(out->items, json_string(ou_key(u)));
        last = ou_key(u);
    }
    if (u && last) out->next = json_string(last);
}

static json_t *id_item(const struct skl_node *x)
{
    return json_string(x->key);
}

static json_t *room_item(const struct skl_node *x)
{
    const struct room *room = x->val;
    return json_pack("{s:s, s:I}", "room_id", room->id, "members", (json_int_t)room->n_users);
}

void hub_online_users(struct hub *h, const char *after, size_t limit, struct hub_page *out)
{
    pthread_mutex_lock(&h->reg.mu);
    page_walk_users(&h->reg.users, after, limit, out);
    pthread_mutex_unlock(&h->reg.mu);
}

void hub_rooms(struct hub *h, const char *after, size_t limit, struct hub_page *out)
{
    pthread_mutex_lock(&h->reg.mu);
    page_walk(&h->reg.room_order, after, limit, room_item, out);
    pthread_mutex_unlock(&h->reg.mu);
}

int hub_room_members(struct hub *h, const char *room_id, const char *after, size_t limit,
                     struct hub_page *out)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room *room;
    HASH_FIND_STR(r->rooms, room_id, room);
    if (room) page_walk(&room->by_user, after, limit, id_item, out);
    pthread_mutex_unlock(&r->mu);
    return room ? 0 : -1;
}

size_t hub_room_member_count(struct hub *h, const char *room_id)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room *room;
    HASH_FIND_STR(r->rooms, room_id, room);
    size_t n = room ? room->n_users : 0;
    pthread_mutex_unlock(&r->mu);
    return n;
}
