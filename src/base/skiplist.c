/* Skip list of borrowed string keys (see skiplist.h). The search keeps, per level, a
 * pointer to the link that points past the key ("update" links), so insert and remove
 * splice without a separate head node: the head is just an array of first links. */
#include "base/skiplist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void skl_init(struct skiplist *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->rng = seed ? seed : UINT64_C(0x9e3779b97f4a7c15);
}

void skl_clear(struct skiplist *s)
{
    struct skl_node *n = s->head ? s->head[0] : NULL;
    while (n) {
        struct skl_node *next = n->next[0];
        free(n);
        n = next;
    }
    free(s->head);
    uint64_t rng = s->rng;
    memset(s, 0, sizeof *s);
    s->rng = rng;
}

static uint32_t random_level(struct skiplist *s)
{
    uint64_t x = s->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    uint32_t lvl = 1;
    while (lvl < SKL_MAX_LEVEL && (x & 3) == 0) {
        lvl++;
        x >>= 2;
    }
    return lvl;
}

/* Fills upd[i] (i < s->level) with the link at level i after which key belongs: the
 * last link whose node is < key (or, with inclusive, <= key). */
static void find(const struct skiplist *s, const char *key, int inclusive, struct skl_node ***upd)
{
    struct skl_node **links = s->head;
    for (uint32_t i = s->level; i-- > 0;) {
        while (links[i]) {
            int c = strcmp(links[i]->key, key);
            if (c > 0 || (c == 0 && !inclusive)) break;
            links = links[i]->next;
        }
        upd[i] = &links[i];
    }
}

int skl_insert(struct skiplist *s, const char *key, void *val)
{
    uint32_t lvl = random_level(s);
    if (lvl > s->cap) {
        /* Grow the head first: find() keeps pointers into it. */
        struct skl_node **nh = realloc(s->head, lvl * sizeof *nh);
        if (!nh) return -ENOMEM;
        for (uint32_t i = s->cap; i < lvl; i++)
            nh[i] = NULL;
        s->head = nh;
        s->cap = lvl;
    }
    if (lvl > s->level) s->level = lvl;
    struct skl_node **upd[SKL_MAX_LEVEL];
    find(s, key, 0, upd);
    if (*upd[0] && strcmp((*upd[0])->key, key) == 0) return 1;
    struct skl_node *n = malloc(sizeof *n + lvl * sizeof n->next[0]);
    if (!n) return -ENOMEM;
    n->key = key;
    n->val = val;
    n->level = lvl;
    for (uint32_t i = 0; i < lvl; i++) {
        n->next[i] = *upd[i];
        *upd[i] = n;
    }
    s->n++;
    return 0;
}

void *skl_remove(struct skiplist *s, const char *key)
{
    if (!s->level) return NULL;
    struct skl_node **upd[SKL_MAX_LEVEL];
    find(s, key, 0, upd);
    struct skl_node *n = *upd[0];
    if (!n || strcmp(n->key, key) != 0) return NULL;
    for (uint32_t i = 0; i < n->level; i++)
        *upd[i] = n->next[i];
    while (s->level && !s->head[s->level - 1])
        s->level--;
    void *val = n->val;
    free(n);
    s->n--;
    return val;
}

struct skl_node *skl_after(const struct skiplist *s, const char *after)
{
    if (!s->level) return NULL;
    if (!after) return s->head[0];
    struct skl_node **upd[SKL_MAX_LEVEL];
    find(s, after, 1, upd);
    return *upd[0];
}
