/* The process-wide registry: rooms with their de-duplicated members, and online users
 * with their connection counts. One mutex guards it; it is taken on connect,
 * disconnect, join, leave and queries, never per delivered message. Presence events
 * are published while it is held, so that a user's join and leave events reach the
 * room in the order they happened. */
#include <stdlib.h>
#include <string.h>

#include "base/stats.h"
#include "hub/internal.h"

void registry_init(struct registry *r)
{
    pthread_mutex_init(&r->mu, NULL);
    r->rooms = NULL;
    r->users = NULL;
}

void registry_destroy(struct registry *r)
{
    struct room *room, *rt;
    HASH_ITER(hh, r->rooms, room, rt)
    {
        HASH_DEL(r->rooms, room);
        room_unref(room);
    }
    struct online_user *u, *ut;
    HASH_ITER(hh, r->users, u, ut)
    {
        HASH_DEL(r->users, u);
        hist_unref(u->stream);
        free(u->user);
        free(u);
    }
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
    free(room->id);
    free(room);
}

void registry_user_add(struct hub *h, const char *user)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct online_user *u;
    HASH_FIND_STR(r->users, user, u);
    if (!u && (u = calloc(1, sizeof *u)) && !(u->user = strdup(user))) {
        free(u);
        u = NULL;
    }
    if (u && u->conns++ == 0) {
        HASH_ADD_KEYPTR(hh, r->users, u->user, strlen(u->user), u);
        /* Keep the user's stream (if messages were ever sent to the user) while the
         * user is online, so its position survives a quiet hour. */
        u->stream = hist_get(h->hist, HIST_USER, user, false, NULL);
    }
    pthread_mutex_unlock(&r->mu);
}

void registry_user_remove(struct hub *h, const char *user)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct online_user *u;
    HASH_FIND_STR(r->users, user, u);
    if (u && --u->conns == 0) {
        HASH_DEL(r->users, u);
        hist_unref(u->stream); /* its time to live starts now */
        free(u->user);
        free(u);
    }
    pthread_mutex_unlock(&r->mu);
}

void registry_user_stream(struct hub *h, const char *user, struct hist_stream *s)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct online_user *u;
    HASH_FIND_STR(r->users, user, u);
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
        room = calloc(1, sizeof *room);
        if (!room || !(room->id = strdup(room_id))) {
            free(room);
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        /* The stream may already exist: the room emptied less than its time to live
         * ago, and its position and history carry on. */
        room->stream = hist_get(h->hist, HIST_ROOM, room_id, true, NULL);
        if (!room->stream) {
            free(room->id);
            free(room);
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
        atomic_init(&room->refs, 1); /* the registry's */
        HASH_ADD_KEYPTR(hh, r->rooms, room->id, strlen(room->id), room);
    }
    struct room_user *u;
    HASH_FIND_STR(room->users, user, u);
    bool first = false;
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->user = strdup(user))) {
            free(u);
            pthread_mutex_unlock(&r->mu);
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
    if (first && h->cfg.presence) {
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
        free(u->user);
        free(u);
        room->n_users--;
        if (h->cfg.presence && room->n_users > 0) {
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

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

json_t *hub_online_users(struct hub *h)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    size_t n = HASH_COUNT(r->users), i = 0;
    const char **v = malloc((n ? n : 1) * sizeof *v);
    struct online_user *u, *t;
    if (v) HASH_ITER(hh, r->users, u, t) v[i++] = u->user;
    if (v) qsort(v, n, sizeof *v, cmp_str);
    json_t *arr = json_array();
    for (size_t k = 0; v && k < n; k++)
        json_array_append_new(arr, json_string(v[k]));
    pthread_mutex_unlock(&r->mu);
    free(v);
    return arr;
}

size_t hub_online_user_count(struct hub *h)
{
    pthread_mutex_lock(&h->reg.mu);
    size_t n = HASH_COUNT(h->reg.users);
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

static int cmp_room(const void *a, const void *b)
{
    return strcmp((*(struct room *const *)a)->id, (*(struct room *const *)b)->id);
}

json_t *hub_rooms(struct hub *h)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    size_t n = HASH_COUNT(r->rooms), i = 0;
    struct room **v = malloc((n ? n : 1) * sizeof *v);
    struct room *room, *t;
    if (v) HASH_ITER(hh, r->rooms, room, t) v[i++] = room;
    if (v) qsort(v, n, sizeof *v, cmp_room);
    json_t *arr = json_array();
    for (size_t k = 0; v && k < n; k++)
        json_array_append_new(arr, json_pack("{s:s, s:I}", "room_id", v[k]->id, "members",
                                             (json_int_t)v[k]->n_users));
    pthread_mutex_unlock(&r->mu);
    free(v);
    return arr;
}

json_t *hub_room_members(struct hub *h, const char *room_id)
{
    struct registry *r = &h->reg;
    pthread_mutex_lock(&r->mu);
    struct room *room;
    HASH_FIND_STR(r->rooms, room_id, room);
    json_t *arr = NULL;
    if (room) {
        size_t n = room->n_users, i = 0;
        const char **v = malloc((n ? n : 1) * sizeof *v);
        struct room_user *u, *t;
        if (v) HASH_ITER(hh, room->users, u, t) v[i++] = u->user;
        if (v) qsort(v, n, sizeof *v, cmp_str);
        arr = json_array();
        for (size_t k = 0; v && k < n; k++)
            json_array_append_new(arr, json_string(v[k]));
        free(v);
    }
    pthread_mutex_unlock(&r->mu);
    return arr;
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
