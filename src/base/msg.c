/* Reference-counted messages. Small ones (most frames: chat, echo, acks) are all
 * allocated at one block size and recycled through a per-thread cache, so the echo
 * path and fan-out of small messages allocate nothing in the steady state (a profile
 * of echo put malloc+free at 5.6% before). A block may be released on another thread
 * than the one that made it (fan-out); it then joins that thread's cache, which is
 * bounded, so memory only moves between threads. Larger messages use malloc. */
#include "base/msg.h"

#include <stdlib.h>

#define MSG_SMALL_BLOCK 256u  /* header included */
#define MSG_CACHE_MAX   4096u /* blocks kept per thread: 1 MiB */

struct free_block {
    struct free_block *next;
};

static _Thread_local struct free_block *cache;
static _Thread_local unsigned cache_n;

static int is_small(size_t len)
{
    return sizeof(struct wh_msg) + len <= MSG_SMALL_BLOCK;
}

struct wh_msg *msg_new(size_t len)
{
    if (len > UINT32_MAX - MSG_SMALL_BLOCK) return NULL;
    struct wh_msg *m;
    if (is_small(len) && cache) {
        m = (struct wh_msg *)(void *)cache;
        cache = cache->next;
        cache_n--;
    } else {
        m = malloc(is_small(len) ? MSG_SMALL_BLOCK : sizeof *m + len);
        if (!m) return NULL;
    }
    atomic_init(&m->refs, 1);
    m->len = (uint32_t)len;
    return m;
}

void msg_unref(struct wh_msg *m)
{
    /* acq_rel: the freeing thread must see every write made before other releases. */
    if (!m || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return;
    if (is_small(m->len) && cache_n < MSG_CACHE_MAX) {
        struct free_block *b = (struct free_block *)(void *)m;
        b->next = cache;
        cache = b;
        cache_n++;
        return;
    }
    free(m);
}

void msg_thread_cleanup(void)
{
    while (cache) {
        struct free_block *b = cache;
        cache = b->next;
        free(b);
    }
    cache_n = 0;
}
