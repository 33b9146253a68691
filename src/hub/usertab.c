/* A set of online users by id (struct user_tab in hub/internal.h): the registry's
 * table of every online user and each shard's of those with connections on it. Open
 * addressing with linear probing on pointers to the users' records. The hash is
 * computed once per record (its hashv), so a lookup hashes the id once and compares
 * ids only on equal hashes, and growing or shifting moves pointers without hashing
 * again. Removal shifts the following entries of the run back (no tombstones), so
 * lookups stay short after churn.
 *
 * Why not uthash: its handle is 56 bytes per entry plus a bucket array; this table is
 * 8 bytes per slot at a load between 3/16 and 3/4 (issue 13, memory per idle
 * connection: docs/design.md). Not thread-safe: the registry's lock guards its table,
 * a shard's thread owns the shard's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hub/internal.h"

#define TAB_MIN 16u

uint32_t user_hash(const char *user)
{
    unsigned hv;
    HASH_VALUE(user, strlen(user), hv);
    return (uint32_t)hv;
}

static void place(struct online_user **slot, uint32_t cap, struct online_user *u)
{
    uint32_t i = u->hashv & (cap - 1);
    while (slot[i])
        i = (i + 1) & (cap - 1);
    slot[i] = u;
}

static int resize(struct user_tab *t, uint32_t cap)
{
    struct online_user **ns = calloc(cap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (uint32_t i = 0; i < t->cap; i++)
        if (t->slot[i]) place(ns, cap, t->slot[i]);
    free(t->slot);
    t->slot = ns;
    t->cap = cap;
    return 0;
}

int user_tab_add(struct user_tab *t, struct online_user *u)
{
    if ((t->n + 1) * 4 > t->cap * 3 && resize(t, t->cap ? t->cap * 2 : TAB_MIN) < 0) return -ENOMEM;
    place(t->slot, t->cap, u);
    t->n++;
    return 0;
}

struct online_user *user_tab_find(const struct user_tab *t, const char *user)
{
    return t->n ? user_tab_find_hv(t, user, user_hash(user)) : NULL;
}

struct online_user *user_tab_find_hv(const struct user_tab *t, const char *user, uint32_t hv)
{
    if (!t->n) return NULL;
    uint32_t mask = t->cap - 1;
    for (uint32_t i = hv & mask; t->slot[i]; i = (i + 1) & mask) {
        struct online_user *u = t->slot[i];
        if (u->hashv == hv && strcmp(ou_key(u), user) == 0) return u;
    }
    return NULL;
}

void user_tab_del(struct user_tab *t, struct online_user *u)
{
    uint32_t mask = t->cap - 1, i = u->hashv & mask;
    while (t->slot[i] && t->slot[i] != u)
        i = (i + 1) & mask;
    if (!t->slot[i]) return;
    /* Backward shift: an entry further along the run moves into the hole unless its
     * home slot lies cyclically after the hole (it would then be unreachable). */
    for (uint32_t j = (i + 1) & mask; t->slot[j]; j = (j + 1) & mask) {
        uint32_t home = t->slot[j]->hashv & mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays) continue;
        t->slot[i] = t->slot[j];
        i = j;
    }
    t->slot[i] = NULL;
    t->n--;
    /* Give memory back after a crowd has gone (a failed shrink keeps the table). */
    if (t->cap > TAB_MIN && t->n * 16 < t->cap * 3) resize(t, t->cap / 2);
}

void user_tab_free(struct user_tab *t)
{
    free(t->slot);
    t->slot = NULL;
    t->cap = t->n = 0;
}
