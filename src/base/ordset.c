/* Ordered set in sorted blocks: see ordset.h. */
#include "base/ordset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ordset_blk {
    uint32_t n;
    void *e[ORDSET_BLOCK];
};

void ordset_init(struct ordset *s, const char *(*key)(const void *entry))
{
    memset(s, 0, sizeof *s);
    s->key = key;
}

void ordset_clear(struct ordset *s)
{
    for (uint32_t b = 0; b < s->nb; b++)
        free(s->blk[b]);
    free(s->blk);
    s->blk = NULL;
    s->nb = s->cap = 0;
    s->n = 0;
}

static const char *last_key(const struct ordset *s, uint32_t b)
{
    const struct ordset_blk *k = s->blk[b];
    return s->key(k->e[k->n - 1]);
}

/* The first block whose last key is >= key (strict: > key), or nb when none. */
static uint32_t find_blk(const struct ordset *s, const char *key, bool strict)
{
    uint32_t lo = 0, hi = s->nb;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(last_key(s, mid), key);
        if (c < 0 || (strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The first index in block b whose key is >= key (strict: > key); *eq when that key
 * equals key (not strict). */
static uint32_t find_in(const struct ordset *s, uint32_t b, const char *key, bool strict, bool *eq)
{
    const struct ordset_blk *k = s->blk[b];
    uint32_t lo = 0, hi = k->n;
    *eq = false;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->key(k->e[mid]), key);
        if (c < 0 || (strict && c == 0)) {
            lo = mid + 1;
        } else {
            if (c == 0) *eq = true;
            hi = mid;
        }
    }
    return lo;
}

/* Inserts a new, empty block at index b of the block list. */
static struct ordset_blk *blk_insert(struct ordset *s, uint32_t b)
{
    if (s->nb == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 4;
        struct ordset_blk **nl = realloc(s->blk, (size_t)cap * sizeof *nl);
        if (!nl) return NULL;
        s->blk = nl;
        s->cap = cap;
    }
    struct ordset_blk *k = malloc(sizeof *k);
    if (!k) return NULL;
    k->n = 0;
    memmove(&s->blk[b + 1], &s->blk[b], (size_t)(s->nb - b) * sizeof *s->blk);
    s->blk[b] = k;
    s->nb++;
    return k;
}

static void blk_delete(struct ordset *s, uint32_t b)
{
    free(s->blk[b]);
    memmove(&s->blk[b], &s->blk[b + 1], (size_t)(s->nb - b - 1) * sizeof *s->blk);
    s->nb--;
    if (s->cap > 4 && s->nb < s->cap / 4) { /* a failed shrink keeps the larger list */
        struct ordset_blk **nl = realloc(s->blk, (size_t)(s->cap / 2) * sizeof *nl);
        if (nl) {
            s->blk = nl;
            s->cap /= 2;
        }
    }
}

void *ordset_find(const struct ordset *s, const char *key)
{
    uint32_t b = s->nb ? find_blk(s, key, false) : 0;
    if (b == s->nb) return NULL;
    bool eq;
    uint32_t i = find_in(s, b, key, false, &eq);
    return eq ? s->blk[b]->e[i] : NULL;
}

int ordset_insert(struct ordset *s, void *entry)
{
    const char *key = s->key(entry);
    uint32_t b, i;
    bool eq = false;
    if (s->nb == 0) {
        if (!blk_insert(s, 0)) return -ENOMEM;
        b = i = 0;
    } else if ((b = find_blk(s, key, false)) == s->nb) {
        b = s->nb - 1; /* after every key: at the end of the last block */
        i = s->blk[b]->n;
    } else {
        i = find_in(s, b, key, false, &eq);
        if (eq) return 1;
    }
    struct ordset_blk *k = s->blk[b];
    if (k->n == ORDSET_BLOCK) {
        if (b == s->nb - 1 && i == k->n) {
            /* Appending (ids arriving in order): a new block, the full one stays full. */
            if (!(k = blk_insert(s, ++b))) return -ENOMEM;
            i = 0;
        } else if (b + 1 < s->nb && s->blk[b + 1]->n < ORDSET_BLOCK) {
            /* A neighbour with room takes one entry instead of a split: blocks stay
             * nearly full (ids in no order: ~11.5 bytes an entry with splits alone,
             * ~9 with this; an ascending run of ids that lands mid-set: 15.7 -> ~8.5). */
            struct ordset_blk *nx = s->blk[b + 1];
            memmove(&nx->e[1], nx->e, nx->n * sizeof *nx->e);
            nx->e[0] = k->e[ORDSET_BLOCK - 1]; /* i < ORDSET_BLOCK: the last stays in order */
            nx->n++;
            k->n--;
        } else if (b > 0 && s->blk[b - 1]->n < ORDSET_BLOCK) {
            struct ordset_blk *pv = s->blk[b - 1];
            if (i == 0) { /* between the two blocks: it goes last in the previous one */
                pv->e[pv->n++] = entry;
                s->n++;
                return 0;
            }
            pv->e[pv->n++] = k->e[0];
            memmove(&k->e[0], &k->e[1], (ORDSET_BLOCK - 1) * sizeof *k->e);
            k->n--;
            i--;
        } else {
            struct ordset_blk *hi = blk_insert(s, b + 1);
            if (!hi) return -ENOMEM;
            uint32_t half = ORDSET_BLOCK / 2;
            memcpy(hi->e, &k->e[half], (ORDSET_BLOCK - half) * sizeof *k->e);
            hi->n = ORDSET_BLOCK - half;
            k->n = half;
            if (i > half) {
                k = hi;
                i -= half;
            }
        }
    }
    memmove(&k->e[i + 1], &k->e[i], (size_t)(k->n - i) * sizeof *k->e);
    k->e[i] = entry;
    k->n++;
    s->n++;
    return 0;
}

void *ordset_remove(struct ordset *s, const char *key)
{
    if (s->nb == 0) return NULL;
    uint32_t b = find_blk(s, key, false);
    if (b == s->nb) return NULL;
    bool eq;
    uint32_t i = find_in(s, b, key, false, &eq);
    if (!eq) return NULL;
    struct ordset_blk *k = s->blk[b];
    void *entry = k->e[i];
    memmove(&k->e[i], &k->e[i + 1], (size_t)(k->n - i - 1) * sizeof *k->e);
    k->n--;
    s->n--;
    if (k->n == 0) {
        blk_delete(s, b);
    } else if (k->n < ORDSET_BLOCK / 4) {
        /* Keep blocks from thinning out: a block under a quarter full joins a
         * neighbour it fits into. */
        if (b + 1 < s->nb && k->n + s->blk[b + 1]->n <= ORDSET_BLOCK) {
            struct ordset_blk *nx = s->blk[b + 1];
            memcpy(&k->e[k->n], nx->e, nx->n * sizeof *k->e);
            k->n += nx->n;
            blk_delete(s, b + 1);
        } else if (b > 0 && s->blk[b - 1]->n + k->n <= ORDSET_BLOCK) {
            struct ordset_blk *pv = s->blk[b - 1];
            memcpy(&pv->e[pv->n], k->e, k->n * sizeof *k->e);
            pv->n += k->n;
            blk_delete(s, b);
        }
    }
    return entry;
}

void *ordset_after(const struct ordset *s, const char *after, struct ordset_pos *p)
{
    if (s->nb == 0) return NULL;
    if (!after) {
        *p = (struct ordset_pos){0, 0};
        return s->blk[0]->e[0];
    }
    uint32_t b = find_blk(s, after, true);
    if (b == s->nb) return NULL;
    bool eq;
    uint32_t i = find_in(s, b, after, true, &eq); /* < n: the block's last key is greater */
    *p = (struct ordset_pos){b, i};
    return s->blk[b]->e[i];
}

void *ordset_next(const struct ordset *s, struct ordset_pos *p)
{
    if (p->b >= s->nb) return NULL;
    if (++p->i >= s->blk[p->b]->n) {
        p->b++;
        p->i = 0;
        if (p->b >= s->nb) return NULL;
    }
    return s->blk[p->b]->e[p->i];
}
