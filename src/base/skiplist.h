/* An ordered index of string keys: a skip list (Pugh, 1990) with p = 1/4, used where a
 * hash table also holds the entries but a listing must walk them in byte order from a
 * given key (paginated queries: seek to the cursor, walk one page). Insert, remove and
 * seek are O(log n) expected; the count is O(1).
 *
 * Why not a library: GLib's GTree has the seek (g_tree_upper_bound, 2.68+), but in
 * Debian 12's GLib 2.74 its nodes come from GSlice, a per-thread magazine allocator
 * that keeps freed memory for itself (memory would not go back after a load), and
 * GLib aborts on allocation failure, where wshub answers it. docs/design.md has the
 * measurement.
 *
 * Levels are drawn from a per-list xorshift generator seeded by the caller (from a
 * random seed), so the order in which a client inserts keys cannot shape the list.
 *
 * Ownership: the list owns its nodes only. A key is borrowed: it must stay valid and
 * unchanged while its node is in the list (the entry that owns the string also owns
 * the node's place). Not thread-safe: the caller's lock guards it. */
#ifndef WSHUB_BASE_SKIPLIST_H
#define WSHUB_BASE_SKIPLIST_H

#include <stddef.h>
#include <stdint.h>

#define SKL_MAX_LEVEL 24 /* 4^24 entries before the top level saturates */

struct skl_node {
    const char *key; /* borrowed */
    void *val;
    uint32_t level;
    struct skl_node *next[]; /* [level] */
};

struct skiplist {
    struct skl_node **head; /* first node of each level, [cap]; NULL until the first insert */
    uint32_t level, cap;    /* levels in use, levels allocated */
    size_t n;
    uint64_t rng;
};

void skl_init(struct skiplist *s, uint64_t seed);
/* Frees the nodes (not the keys or values); the list is empty and usable after. */
void skl_clear(struct skiplist *s);

/* Returns 0 when inserted, 1 when key is already there (nothing changed), -ENOMEM. */
int skl_insert(struct skiplist *s, const char *key, void *val);
/* Removes key; returns its value, or NULL when absent. */
void *skl_remove(struct skiplist *s, const char *key);

/* The first node whose key is greater than `after` (strcmp order), or the first node
 * when after is NULL; NULL when there is none. */
struct skl_node *skl_after(const struct skiplist *s, const char *after);

static inline struct skl_node *skl_next(const struct skl_node *n)
{
    return n->next[0];
}

static inline size_t skl_count(const struct skiplist *s)
{
    return s->n;
}

#endif
