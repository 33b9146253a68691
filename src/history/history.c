/* The in-memory stream store (history.h). Each stream keeps its messages in a ring of
 * (frame, stamp) entries that grows on demand up to the stream's size, so a quiet
 * room costs a few dozen bytes, not size * 16. */
#include "history/history.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uthash.h>

struct hist_stream {
    pthread_mutex_t mu;
    atomic_uint refs;
    char epoch[HIST_EPOCH_LEN + 1];
    uint64_t top;
    struct hist_limits lim;
    struct hist_entry *ring;
    uint32_t cap, head, count;
    uint64_t acct; /* bytes accounted to this stream in the store's total */
    struct hist_store *st;
    _Atomic uint64_t last_use_ms; /* last append or release: eviction order and TTL */
    atomic_bool live;             /* a mirror whose position is known (hist_set_live) */
    char *key;                    /* kind letter + name */
    UT_hash_handle hh;
};

struct hist_store {
    pthread_mutex_t mu;       /* the table */
    pthread_mutex_t evict_mu; /* one evictor at a time; others skip */
    struct hist_stream *streams;
    struct hist_config cfg;
    _Atomic uint64_t bytes;
    _Atomic uint64_t messages;
    _Atomic uint64_t evicted_messages, evicted_streams, expired_messages;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- accounting ---- */

static uint64_t entry_bytes(const struct wh_msg *m)
{
    return sizeof(struct wh_msg) + m->len;
}

static void acct_add(struct hist_stream *s, int64_t delta)
{
    s->acct = (uint64_t)((int64_t)s->acct + delta);
    if (delta >= 0)
        atomic_fetch_add_explicit(&s->st->bytes, (uint64_t)delta, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&s->st->bytes, (uint64_t)-delta, memory_order_relaxed);
}

/* ---- the ring ---- */

static struct hist_entry *at(struct hist_stream *s, uint32_t i)
{
    return &s->ring[(s->head + i) % s->cap];
}

static void drop_oldest(struct hist_stream *s)
{
    struct hist_entry *e = at(s, 0);
    acct_add(s, -(int64_t)entry_bytes(e->frame));
    msg_unref(e->frame);
    e->frame = NULL;
    s->head = (s->head + 1) % s->cap;
    s->count--;
    atomic_fetch_sub_explicit(&s->st->messages, 1, memory_order_relaxed);
}

static void drop_all(struct hist_stream *s)
{
    while (s->count)
        drop_oldest(s);
    acct_add(s, -(int64_t)(s->cap * sizeof *s->ring));
    free(s->ring);
    s->ring = NULL;
    s->cap = s->head = 0;
}

static void prune_expired(struct hist_stream *s, uint64_t now)
{
    if (!s->lim.ttl_ms) return;
    uint32_t n = 0;
    while (s->count && now - (at(s, 0)->stamp >> 1) >= s->lim.ttl_ms) {
        drop_oldest(s);
        n++;
    }
    if (n) atomic_fetch_add_explicit(&s->st->expired_messages, n, memory_order_relaxed);
    if (!s->count && s->ring) drop_all(s); /* an idle stream gives its ring back */
}

static int grow(struct hist_stream *s)
{
    uint32_t nc = s->cap ? s->cap * 2 : 8;
    if (nc > s->lim.size) nc = s->lim.size;
    struct hist_entry *nr = malloc((size_t)nc * sizeof *nr);
    if (!nr) return -1;
    for (uint32_t i = 0; i < s->count; i++)
        nr[i] = *at(s, i);
    acct_add(s, (int64_t)((nc - s->cap) * sizeof *nr));
    free(s->ring);
    s->ring = nr;
    s->cap = nc;
    s->head = 0;
    return 0;
}

/* ---- streams ---- */

static void new_epoch(char out[HIST_EPOCH_LEN + 1])
{
    static _Atomic uint64_t counter;
    uint64_t r;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* No entropy yet (early boot): unique within this process is what matters. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
            (atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull);
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < HIST_EPOCH_LEN; i++)
        out[i] = hex[(r >> (4 * i)) & 15];
    out[HIST_EPOCH_LEN] = '\0';
}

static void stream_free(struct hist_stream *s)
{
    for (uint32_t i = 0; i < s->count; i++)
        msg_unref(at(s, i)->frame);
    atomic_fetch_sub_explicit(&s->st->messages, s->count, memory_order_relaxed);
    free(s->ring);
    pthread_mutex_destroy(&s->mu);
    free(s->key);
    free(s);
}

struct hist_stream *hist_ref(struct hist_stream *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void hist_unref(struct hist_stream *s)
{
    if (!s) return;
    atomic_store_explicit(&s->last_use_ms, now_ms(), memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) stream_free(s);
}

/* Removes s from the table (store mutex held) and drops the table's reference. */
static void unlist(struct hist_store *st, struct hist_stream *s)
{
    HASH_DEL(st->streams, s);
    atomic_fetch_sub_explicit(&st->bytes, s->acct, memory_order_relaxed);
    s->acct = 0;
    hist_unref(s);
}

struct hist_stream *hist_get(struct hist_store *st, enum hist_kind kind, const char *name,
                             bool create, bool *created)
{
    size_t n = strlen(name);
    char key[HIST_MAX_NAME + 2]; /* kind letter + name + NUL */
    if (created) *created = false;
    if (n > HIST_MAX_NAME) return NULL;
    key[0] = kind == HIST_ROOM ? 'r' : 'u';
    memcpy(key + 1, name, n + 1);
    pthread_mutex_lock(&st->mu);
    struct hist_stream *s;
    HASH_FIND(hh, st->streams, key, n + 1, s);
    if (!s && create && (s = calloc(1, sizeof *s))) {
        if (!(s->key = strdup(key))) {
            free(s);
            s = NULL;
        } else {
            pthread_mutex_init(&s->mu, NULL);
            atomic_init(&s->refs, 1); /* the table's */
            s->st = st;
            s->lim = hist_limits_for(&st->cfg, kind, name);
            new_epoch(s->epoch);
            atomic_init(&s->last_use_ms, now_ms());
            HASH_ADD_KEYPTR(hh, st->streams, s->key, n + 1, s);
            acct_add(s, (int64_t)(sizeof *s + n + 2));
            if (created) *created = true;
        }
    }
    if (s) hist_ref(s);
    pthread_mutex_unlock(&st->mu);
    return s;
}

const char *hist_epoch(const struct hist_stream *s)
{
    return s->epoch;
}

void hist_reset(struct hist_stream *s, const char *epoch, uint64_t top)
{
    if (s->ring) drop_all(s);
    s->count = 0;
    snprintf(s->epoch, sizeof s->epoch, "%s", epoch);
    s->top = top;
}

void hist_set_live(struct hist_stream *s, bool live)
{
    atomic_store(&s->live, live);
}

bool hist_live(const struct hist_stream *s)
{
    return atomic_load(&s->live);
}

void hist_lock(struct hist_stream *s)
{
    pthread_mutex_lock(&s->mu);
}

void hist_unlock(struct hist_stream *s)
{
    pthread_mutex_unlock(&s->mu);
}

uint64_t hist_top(const struct hist_stream *s)
{
    return s->top;
}

uint64_t hist_append(struct hist_stream *s, struct wh_msg *frame, bool presence)
{
    uint64_t seq = ++s->top, now = now_ms();
    atomic_store_explicit(&s->last_use_ms, now, memory_order_relaxed);
    if (!s->lim.size) return seq;
    prune_expired(s, now);
    if (s->count == s->lim.size) drop_oldest(s);
    if (s->count == s->cap && grow(s) < 0) {
        /* No memory for the ring: the history restarts after this position rather
         * than pretending to hold it (a resume from before it is refused). */
        drop_all(s);
        return seq;
    }
    struct hist_entry *e = &s->ring[(s->head + s->count) % s->cap];
    e->frame = msg_ref(frame);
    e->stamp = now << 1 | (presence ? 1u : 0u);
    s->count++;
    acct_add(s, (int64_t)entry_bytes(frame));
    atomic_fetch_add_explicit(&s->st->messages, 1, memory_order_relaxed);
    return seq;
}

uint64_t hist_first(struct hist_stream *s)
{
    return s->top - s->count + 1;
}

bool hist_can_resume(struct hist_stream *s, const char *epoch, uint64_t since)
{
    if (!epoch || strcmp(epoch, s->epoch) != 0 || since > s->top) return false;
    if (since == s->top) return true;
    prune_expired(s, now_ms());
    return since + 1 >= hist_first(s);
}

int hist_read(struct hist_stream *s, uint64_t after, struct hist_entry *out, int max)
{
    if (after >= s->top) return 0;
    prune_expired(s, now_ms());
    uint64_t first = hist_first(s);
    if (after + 1 < first) return -1;
    uint64_t avail = s->top - after;
    int n = avail < (uint64_t)max ? (int)avail : max;
    uint32_t off = (uint32_t)(after + 1 - first);
    for (int i = 0; i < n; i++) {
        out[i] = *at(s, off + (uint32_t)i);
        msg_ref(out[i].frame);
    }
    return n;
}

/* ---- the store ---- */

struct hist_store *hist_store_new(const struct hist_config *cfg)
{
    struct hist_store *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->cfg = *cfg;
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->evict_mu, NULL);
    return st;
}

void hist_store_free(struct hist_store *st)
{
    if (!st) return;
    struct hist_stream *s, *t;
    HASH_ITER(hh, st->streams, s, t)
    {
        unlist(st, s);
    }
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->evict_mu);
    free(st);
}

void hist_totals(struct hist_store *st, struct hist_totals *out)
{
    out->bytes = atomic_load_explicit(&st->bytes, memory_order_relaxed);
    out->messages = atomic_load_explicit(&st->messages, memory_order_relaxed);
    out->evicted_messages = atomic_load_explicit(&st->evicted_messages, memory_order_relaxed);
    out->evicted_streams = atomic_load_explicit(&st->evicted_streams, memory_order_relaxed);
    out->expired_messages = atomic_load_explicit(&st->expired_messages, memory_order_relaxed);
    pthread_mutex_lock(&st->mu);
    out->streams = HASH_COUNT(st->streams);
    pthread_mutex_unlock(&st->mu);
}

struct by_use {
    struct hist_stream *s;
    uint64_t used;
};

static int cmp_use(const void *a, const void *b)
{
    uint64_t x = ((const struct by_use *)a)->used, y = ((const struct by_use *)b)->used;
    return x < y ? -1 : x > y;
}

void hist_enforce_cap(struct hist_store *st)
{
    uint64_t cap = st->cfg.memory_cap;
    if (atomic_load_explicit(&st->bytes, memory_order_relaxed) <= cap) return;
    if (pthread_mutex_trylock(&st->evict_mu) != 0) return; /* someone is at it */
    pthread_mutex_lock(&st->mu);
    /* Down to 90% of the cap, so that a store at its cap does not sort on every
     * append. Histories go first (oldest use first); then, if streams alone are over
     * (many idle user streams), the unused streams themselves. */
    uint64_t target = cap - cap / 10;
    size_t n = HASH_COUNT(st->streams), i = 0;
    struct by_use *v = malloc((n ? n : 1) * sizeof *v);
    if (v) {
        struct hist_stream *s, *t;
        HASH_ITER(hh, st->streams, s, t)
        {
            v[i].s = s;
            v[i++].used = atomic_load_explicit(&s->last_use_ms, memory_order_relaxed);
        }
        qsort(v, n, sizeof *v, cmp_use);
        for (i = 0; i < n && atomic_load(&st->bytes) > target; i++) {
            s = v[i].s;
            hist_lock(s);
            uint32_t dropped = s->count;
            if (s->ring) drop_all(s);
            hist_unlock(s);
            if (dropped) {
                atomic_fetch_add_explicit(&st->evicted_messages, dropped, memory_order_relaxed);
                atomic_fetch_add_explicit(&st->evicted_streams, 1, memory_order_relaxed);
            }
        }
        for (i = 0; i < n && atomic_load(&st->bytes) > target; i++) {
            s = v[i].s;
            if (atomic_load(&s->refs) == 1) unlist(st, s); /* empty, and only listed */
        }
        free(v);
    }
    pthread_mutex_unlock(&st->mu);
    pthread_mutex_unlock(&st->evict_mu);
}

void hist_sweep(struct hist_store *st)
{
    uint64_t now = now_ms();
    pthread_mutex_lock(&st->mu);
    struct hist_stream *s, *t;
    HASH_ITER(hh, st->streams, s, t)
    {
        hist_lock(s);
        prune_expired(s, now);
        bool empty = s->count == 0;
        hist_unlock(s);
        /* Nobody holds it (a reference is only taken under the table's mutex, which
         * we hold) and its last use is older than its time to live: forget it. */
        uint64_t used = atomic_load_explicit(&s->last_use_ms, memory_order_relaxed);
        if (empty && atomic_load(&s->refs) == 1 && now - used >= s->lim.ttl_ms) unlist(st, s);
    }
    pthread_mutex_unlock(&st->mu);
}
