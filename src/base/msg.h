/* An immutable, reference-counted byte string: an outgoing frame serialised once and
 * queued by reference on every recipient's connection (on any thread), freed by
 * whoever drops the last reference. The count is atomic for that reason; a message
 * is never modified after it is first shared. */
#ifndef WSHUB_BASE_MSG_H
#define WSHUB_BASE_MSG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct wh_msg {
    atomic_uint refs;
    uint32_t len;
    uint8_t data[];
};

/* A message of len bytes (uninitialised) with one reference, or NULL. */
struct wh_msg *msg_new(size_t len);

static inline struct wh_msg *msg_ref(struct wh_msg *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void msg_unref(struct wh_msg *m);

/* Frees this thread's cache of small message blocks (call when a thread that handled
 * messages ends: workers, and the main thread after the hub is destroyed). */
void msg_thread_cleanup(void);

#endif
