/* An ordered set of entries with string keys, for listings that walk them in byte
 * order from a given key (paginated queries): the entries' pointers kept sorted in
 * blocks of up to ORDSET_BLOCK, found by a binary search over the blocks' last keys
 * and then within a block. Insert, remove and seek are O(log n) comparisons plus a
 * move of at most two blocks (1 KiB each: a full block hands one entry to a
 * neighbour with room rather than split) and, when a block splits or goes, of the
 * block index.
 *
 * Why not the skip list (base/skiplist.h): a skip-list node is a 48-byte allocation
 * per entry (key, value, level, next pointers, malloc header); here an entry costs
 * its pointer in a block that is at least a quarter full and usually most of it,
 * about 8.5-10 bytes (issue 13, memory per online user: docs/design.md).
 *
 * Ownership: the set owns its blocks only. Entries are borrowed; key(entry) must stay
 * valid and unchanged while the entry is in the set. Not thread-safe: the caller's
 * lock guards it. */
#ifndef WSHUB_BASE_ORDSET_H
#define WSHUB_BASE_ORDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ORDSET_BLOCK 128

struct ordset_blk;

struct ordset {
    struct ordset_blk **blk; /* [nb], in key order; every block non-empty */
    uint32_t nb, cap;
    size_t n;
    const char *(*key)(const void *entry);
};

/* A place in the set: block and index in it. */
struct ordset_pos {
    uint32_t b, i;
};

void ordset_init(struct ordset *s, const char *(*key)(const void *entry));
/* Frees the blocks (not the entries); the set is empty and usable after. */
void ordset_clear(struct ordset *s);

/* Returns 0 when inserted, 1 when an entry with the same key is there (nothing
 * changed), -ENOMEM. */
int ordset_insert(struct ordset *s, void *entry);
/* Removes the entry with this key; returns it, or NULL when absent. */
void *ordset_remove(struct ordset *s, const char *key);

/* The entry with this key, or NULL: O(log n) comparisons, as a seek. */
void *ordset_find(const struct ordset *s, const char *key);

/* The first entry whose key is greater than `after` (strcmp order), or the first
 * entry when after is NULL: its place in *p, its pointer returned; NULL when none. */
void *ordset_after(const struct ordset *s, const char *after, struct ordset_pos *p);
/* The entry after *p (advancing *p), or NULL at the end. */
void *ordset_next(const struct ordset *s, struct ordset_pos *p);

static inline size_t ordset_count(const struct ordset *s)
{
    return s->n;
}

#endif
