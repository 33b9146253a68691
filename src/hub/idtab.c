/* A set of records by string id (struct id_tab in hub/internal.h): each shard's table
 * of the online users with connections on it, and the per-address table of
 * connection counts. Open addressing with linear probing on pointers to the records'
 * hash, which each record keeps just before its NUL-terminated id: a lookup hashes
 * the id once and compares ids only on equal hashes, and growing or shifting moves
 * pointers without hashing again. Removal shifts the following entries of the run
 * back (no tombstones), so lookups stay short after churn.
 *
 * Why not uthash: its handle is 56 bytes per entry plus a bucket array; this table is
 * 8 bytes per slot at a load between 3/16 and 3/4 (issue 13, memory per idle
 * connection: docs/design.md). Not thread-safe: the owner's thread or lock guards it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hub/internal.h"

#define TAB_MIN 16u

uint32_t id_hash(const char *id)
{
    unsigned hv;
    HASH_VALUE(id, strlen(id), hv);
    return (uint32_t)hv;
}

static void place(uint32_t **slot, uint32_t cap, uint32_t *e)
{
    uint32_t i = *e & (cap - 1);
    while (slot[i])
        i = (i + 1) & (cap - 1);
    slot[i] = e;
}

static int resize(struct id_tab *t, uint32_t cap)
{
    uint32_t **ns = calloc(cap, sizeof *ns);
    if (!ns) return -ENOMEM;
    for (uint32_t i = 0; i < t->cap; i++)
        if (t->slot[i]) place(ns, cap, t->slot[i]);
    free(t->slot);
    t->slot = ns;
    t->cap = cap;
    return 0;
}

int id_tab_add(struct id_tab *t, uint32_t *e)
{
    if ((t->n + 1) * 4 > t->cap * 3 && resize(t, t->cap ? t->cap * 2 : TAB_MIN) < 0) return -ENOMEM;
    place(t->slot, t->cap, e);
    t->n++;
    return 0;
}

uint32_t *id_tab_find(const struct id_tab *t, const char *id, uint32_t hv)
{
    if (!t->n) return NULL;
    uint32_t mask = t->cap - 1;
    for (uint32_t i = hv & mask; t->slot[i]; i = (i + 1) & mask) {
        uint32_t *e = t->slot[i];
        if (*e == hv && strcmp(id_key(e), id) == 0) return e;
    }
    return NULL;
}

void id_tab_del(struct id_tab *t, uint32_t *e)
{
    uint32_t mask = t->cap - 1, i = *e & mask;
    while (t->slot[i] && t->slot[i] != e)
        i = (i + 1) & mask;
    if (!t->slot[i]) return;
    /* Backward shift: an entry further along the run moves into the hole unless its
     * home slot lies cyclically after the hole (it would then be unreachable). */
    for (uint32_t j = (i + 1) & mask; t->slot[j]; j = (j + 1) & mask) {
        uint32_t home = *t->slot[j] & mask;
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

void id_tab_free(struct id_tab *t)
{
    free(t->slot);
    t->slot = NULL;
    t->cap = t->n = 0;
}
