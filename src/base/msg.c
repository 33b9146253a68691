/* Reference-counted messages. Plain malloc for now: glibc's per-thread cache serves
 * the small sizes without locking; a pool replaces it only if a profile says so. */
#include "base/msg.h"

#include <stdlib.h>

struct wh_msg *msg_new(size_t len)
{
    if (len > UINT32_MAX) return NULL;
    struct wh_msg *m = malloc(sizeof *m + len);
    if (!m) return NULL;
    atomic_init(&m->refs, 1);
    m->len = (uint32_t)len;
    return m;
}

void msg_unref(struct wh_msg *m)
{
    /* acq_rel: the freeing thread must see every write made before other releases. */
    if (m && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) free(m);
}
