/* Drives one hiredis async context (hiredis 0.14, Debian 12) from a wshub event loop
 * (loop/loop.h), so a Redis connection lives on a worker's own loop and never blocks
 * it: hiredis asks for read/write interest through its ev hooks, and this adapter turns
 * them into one io_watch.
 *
 * The loop is edge-triggered while hiredis reads at most 16 KiB per call, so on a read
 * event the adapter calls redisAsyncHandleRead until the socket has no byte left
 * (FIONREAD), and once more when the peer hung up so that hiredis sees the EOF. On a
 * write event hiredis writes its whole output buffer, or re-asks for write interest when
 * the socket is full (EPOLL_CTL_MOD then reports the next edge).
 *
 * Ownership: the caller owns the struct (embedded in its own) and the context; hiredis
 * frees the context (on error, disconnect or redisAsyncFree) and then calls the cleanup
 * hook, which removes the watch, clears io->ac and calls gone(io): from then on the
 * owner must not touch the old context. Loop thread only. */
#ifndef WSHUB_CLUSTER_REDIS_LOOP_H
#define WSHUB_CLUSTER_REDIS_LOOP_H

#include <stdbool.h>

#include <hiredis/async.h>

#include "loop/loop.h"

struct redis_loop_io {
    struct io_watch w;
    struct loop *loop;
    redisAsyncContext *ac; /* NULL once hiredis has freed it */
    bool reading, writing, added;
    void (*gone)(struct redis_loop_io *io); /* called from the cleanup hook */
};

/* Attaches ac (fresh from redisAsyncConnect, without an error) to loop. Returns 0, or
 * -1 when ac already has event hooks. */
int redis_loop_attach(struct redis_loop_io *io, struct loop *loop, redisAsyncContext *ac,
                      void (*gone)(struct redis_loop_io *io));

#endif
