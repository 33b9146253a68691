/* Per-thread span rings (see spanq.h). head is written only by the producer and
 * tail only by the consumer; the acquire/release pair on each publishes the slot
 * contents across threads. */
#include "telemetry/spanq.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ring {
    _Atomic uint64_t head; /* next slot the producer writes */
    _Atomic uint64_t tail; /* next slot the consumer reads */
    _Atomic uint64_t dropped;
    uint64_t taken; /* consumer: slots handed out by the last spanq_take */
    struct ring *next;
    struct span slots[];
};

static pthread_mutex_t rings_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ring *_Atomic rings;
static size_t cap_slots, batch_size;
static void (*wake_fn)(void);
static _Atomic uint64_t lost_no_ring; /* a thread whose ring could not be allocated */
static _Atomic unsigned generation;   /* bumped by init/destroy: stale thread pointers */

static _Thread_local struct ring *my_ring;
static _Thread_local unsigned my_generation;

int spanq_init(size_t ring_cap, size_t batch, void (*wake)(void))
{
    size_t c = 16;
    while (c < ring_cap)
        c *= 2;
    cap_slots = c;
    /* The exporter is woken when one ring holds a batch; a ring smaller than a batch
     * (the queue split over many workers) would never get there and would wait for
     * the schedule delay while dropping. Half a ring wakes it in time. */
    batch_size = batch ? batch : 1;
    if (batch_size > c / 2) batch_size = c / 2;
    wake_fn = wake;
    atomic_fetch_add(&generation, 1);
    return 0;
}

void spanq_destroy(void)
{
    pthread_mutex_lock(&rings_mu);
    struct ring *r = atomic_exchange(&rings, NULL);
    atomic_fetch_add(&generation, 1);
    pthread_mutex_unlock(&rings_mu);
    while (r) {
        struct ring *n = r->next;
        free(r);
        r = n;
    }
    atomic_store(&lost_no_ring, 0);
}

static struct ring *ring_get(void)
{
    unsigned gen = atomic_load_explicit(&generation, memory_order_relaxed);
    if (my_ring && my_generation == gen) return my_ring;
    struct ring *r = calloc(1, sizeof *r + cap_slots * sizeof r->slots[0]);
    if (!r) return NULL;
    pthread_mutex_lock(&rings_mu);
    r->next = atomic_load(&rings);
    atomic_store(&rings, r);
    pthread_mutex_unlock(&rings_mu);
    my_ring = r;
    my_generation = gen;
    return r;
}

int spanq_push(const struct span *s)
{
    struct ring *r = ring_get();
    if (!r) {
        atomic_fetch_add_explicit(&lost_no_ring, 1, memory_order_relaxed);
        return -1;
    }
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail >= cap_slots) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return -1;
    }
    /* Only the used part of the string area is copied. */
    struct span *slot = &r->slots[head & (cap_slots - 1)];
    memcpy(slot, s, offsetof(struct span, str) + s->str_used);
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    if (head + 1 - tail == batch_size && wake_fn) wake_fn();
    return 0;
}

size_t spanq_take(const struct span **out, size_t max)
{
    /* Each take starts one ring further along, so a worker that refills its ring
     * faster than a batch goes out cannot starve the rings behind it. */
    static unsigned start; /* the exporter thread is the only caller */
    size_t n = 0, n_rings = 0;
    struct ring *first = atomic_load(&rings);
    for (struct ring *r = first; r; r = r->next) {
        r->taken = 0;
        n_rings++;
    }
    if (!n_rings) return 0;
    struct ring *r = first;
    for (unsigned i = start++ % (unsigned)n_rings; i; i--)
        r = r->next;
    for (size_t seen = 0; seen < n_rings; seen++, r = r->next ? r->next : first) {
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail + r->taken < head && n < max)
            out[n++] = &r->slots[(tail + r->taken++) & (cap_slots - 1)];
    }
    return n;
}

void spanq_release(void)
{
    for (struct ring *r = atomic_load(&rings); r; r = r->next) {
        if (!r->taken) continue;
        atomic_fetch_add_explicit(&r->tail, r->taken, memory_order_release);
        r->taken = 0;
    }
}

size_t spanq_pending(void)
{
    size_t n = 0;
    for (struct ring *r = atomic_load(&rings); r; r = r->next)
        n += (size_t)(atomic_load_explicit(&r->head, memory_order_acquire) -
                      atomic_load_explicit(&r->tail, memory_order_relaxed));
    return n;
}

uint64_t spanq_dropped(void)
{
    uint64_t n = atomic_load_explicit(&lost_no_ring, memory_order_relaxed);
    for (struct ring *r = atomic_load(&rings); r; r = r->next)
        n += atomic_load_explicit(&r->dropped, memory_order_relaxed);
    return n;
}
