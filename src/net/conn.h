/* A TCP connection on one loop: reading into the loop's shared buffer, a queue of
 * outgoing messages held by reference, corked writes (one write per connection per
 * loop turn), one timer, and a close that is safe to call from inside any callback.
 * Protocols (HTTP, WebSocket) sit on top through conn_ops and embed struct conn as
 * their first member; a connection changes protocol with conn_migrate.
 *
 * Ownership: a conn owns its fd and the references to queued messages. After
 * conn_close the struct stays valid until the end of the loop turn, then ops->on_free
 * is called to release the protocol's part and the memory is freed (unless on_free
 * set CONN_KEEP: then the protocol frees it later): callers up the stack can still
 * look at it (conn_closed()) but must not use it further. */
#ifndef WSHUB_NET_CONN_H
#define WSHUB_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/msg.h"
#include "loop/loop.h"

struct conn;
struct conn_queue;
struct tls_stream;

struct conn_ops {
    /* Bytes arrived. data points into the loop's shared buffer (valid during the
     * call, may be modified in place). The callee may close the conn. */
    void (*on_data)(struct conn *c, uint8_t *data, size_t len);
    /* The peer finished sending (EOF). The conn is closed right after unless the
     * callee has already closed it. */
    void (*on_eof)(struct conn *c);
    /* The conn's timer fired. */
    void (*on_timer)(struct conn *c);
    /* The send queue has just become empty (optional). */
    void (*on_drain)(struct conn *c);
    /* The conn is about to be freed: release protocol state (optional). */
    void (*on_free)(struct conn *c);
    /* A write would block with data still queued (optional): the peer is not
     * reading. conn_blocked_since() says since when. */
    void (*on_blocked)(struct conn *c);
};

enum conn_flags {
    CONN_CLOSED = 1u << 0,      /* closed: ignore everything */
    CONN_WRITABLE = 1u << 1,    /* the last write did not hit EAGAIN */
    CONN_PAUSED = 1u << 2,      /* do not read (backpressure) */
    CONN_READ_AGAIN = 1u << 3,  /* input may be pending (read cap hit, or resumed) */
    CONN_FINISHING = 1u << 4,   /* flush, half-close, discard input until EOF */
    CONN_HALF_CLOSED = 1u << 5, /* our side is shut down */
    CONN_KEEP = 1u << 6,        /* set by on_free: its protocol frees the memory later */
    CONN_TLS = 1u << 7,         /* under TLS: conn_tls has its stream */
    CONN_UNWATCHED = 1u << 8,   /* not yet added to the loop (conn_init_read_first) */
    CONN_PROTO_BIT0 = 1u << 16, /* bits 16..31: the protocol's own (spares it a field) */
};

/* The owner's list of its live connections (what a shutdown walks): circular, through
 * a link in each connection, so that a connection leaves it without knowing which
 * list it is on (no back pointer in every connection). */
struct conn_link {
    struct conn_link *next, *prev; /* NULL while on no list */
};

struct conn_list {
    struct conn_link ring; /* the sentinel; conn_list_init makes it point at itself */
};

/* The ring and the state that only matters while something is queued live in one
 * allocation, made when something is queued and freed when the queue drains: an idle
 * connection carries one pointer for all of it (and its counts read as zero). */
struct conn_queue {
    uint32_t cap, head;     /* cap: a power of two; the oldest message at slot[head] */
    uint32_t count;         /* messages queued */
    uint32_t off;           /* bytes of the oldest message already written */
    uint64_t bytes;         /* bytes queued (not yet written) */
    uint32_t kernel_unsent; /* SIOCOUTQ when the block was last seen to progress */
    struct wh_msg *slot[];
};

struct conn {
    struct io_watch w; /* also names the conn's loop: conn_loop */
    const struct conn_ops *ops;
    struct conn_link link; /* on the owner's conn_list, if it gave one */
    struct timer timer;
    struct loop_task task; /* flush / read-again / free at the end of the turn */
    struct conn_queue *q;  /* queued messages, or NULL when none */
    uint32_t flags;
    /* Loop time (ms, mod 2^32; never 0) when a write hit EAGAIN with data queued, or 0:
     * read it with conn_blocked_since. 32 bits: a block is judged within seconds. */
    uint32_t blocked_since32;
};

/* A TLS connection's stream (net/tls_io.h) is found by its descriptor in a
 * process-wide table (tls_io.c), so that a plaintext connection does not carry a
 * pointer for it: the flag is tested where the pointer was. A slot is only touched by
 * the thread that owns the descriptor, and is emptied before the descriptor closes. */
extern struct tls_stream **conn_tls_table;
static inline struct tls_stream *conn_tls(const struct conn *c)
{
    return (c->flags & CONN_TLS) ? conn_tls_table[c->w.fd] : NULL;
}

static inline struct loop *conn_loop(const struct conn *c)
{
    return loop_of(&c->w);
}

static inline uint32_t conn_out_count(const struct conn *c)
{
    return c->q ? c->q->count : 0;
}

static inline uint64_t conn_out_bytes(const struct conn *c)
{
    return c->q ? c->q->bytes : 0;
}

/* Loop time in ms since which queued output has been blocked, or 0 when it is not. */
static inline uint64_t conn_blocked_since(const struct conn *c)
{
    if (!c->blocked_since32) return 0;
    uint64_t now = loop_now(conn_loop(c));
    return now - (uint32_t)((uint32_t)now - c->blocked_since32);
}

void conn_list_init(struct conn_list *list);
/* The first connection on list (NULL when empty), and the one after c. A connection
 * closed during a walk leaves the list: take the next one before closing it. */
struct conn *conn_list_first(struct conn_list *list);
struct conn *conn_list_next(struct conn_list *list, struct conn *c);
size_t conn_list_count(const struct conn_list *list); /* O(n): for shutdown polling */

/* Sets up c (allocated by the caller, zeroed, with the protocol's size) for fd and
 * registers it with the loop. Returns 0 or -errno (the fd is then not owned). */
int conn_init(struct conn *c, struct loop *loop, int fd, const struct conn_ops *ops,
              struct conn_list *list);

/* conn_init for a socket whose first bytes are already there (accepted under
 * TCP_DEFER_ACCEPT): c is set up but not registered, and conn_read_first then reads
 * it before it is. A connection that is migrated by that read (an upgrade) is
 * registered once, as what it became, and none waits a loop turn for its first
 * event. Why: at the upgrade, conn_migrate would otherwise re-point the epoll entry
 * at the new struct, one epoll_ctl(MOD) per connection. Plaintext only. */
void conn_init_read_first(struct conn *c, struct loop *loop, int fd, const struct conn_ops *ops,
                          struct conn_list *list);
/* Reads c (set up by conn_init_read_first) as if it were readable, then registers
 * what is left of it: nothing if it closed, the new struct if it was migrated (done
 * by conn_migrate), else c. A registration that fails closes the connection. */
void conn_read_first(struct conn *c);

/* Moves a live connection into `to` (a fresh zeroed struct of another protocol):
 * fd, queue, list membership and epoll registration. `from` is freed without calling
 * its on_free; its timer must not be armed. */
int conn_migrate(struct conn *from, struct conn *to, const struct conn_ops *ops);

/* Queues a message (takes one reference of the caller's) and marks the connection for
 * flushing at the end of the turn. Ignored (reference dropped) once closing. */
void conn_send(struct conn *c, struct wh_msg *m);

/* Room for n bytes of output written in place, in the thread's cork: NULL when the
 * cork cannot take them (TLS, closing, blocked, something already queued, n over
 * 16 KiB), and the caller queues a message instead. The bytes count as sent in order
 * after everything before and before everything after; they go out at the end of the
 * turn with one send, and are not in conn_out_count/bytes nor ever dropped by
 * conn_drop_oldest/conn_discard_queued. Write them before the next call into this
 * module. */
uint8_t *conn_cork(struct conn *c, size_t n);
/* Copies data into a new message and queues it. Returns 0 or -ENOMEM. */
int conn_send_copy(struct conn *c, const void *data, size_t len);

/* Drops the oldest queued message that has not started to go out (the head is kept
 * when partly written). Returns 1 when one was dropped, 0 when none could be. */
int conn_drop_oldest(struct conn *c);

/* Drops every queued message that has not started to go out. Returns how many. */
size_t conn_discard_queued(struct conn *c);

/* For transports that write through a buffer of their own (TLS): moves up to cap
 * queued bytes into dst, oldest first. They count as written: a message taken in
 * part stays at the head, partly written. Returns the bytes moved. */
size_t conn_queue_take(struct conn *c, uint8_t *dst, size_t cap);

/* Bytes of the oldest queued message already written (0 when none is partly out):
 * such a message is never dropped. */
uint32_t conn_head_written(const struct conn *c);

/* Writes what is queued now rather than at the end of the turn. */
void conn_flush(struct conn *c);

/* Closes at once: queued data is dropped. Safe inside callbacks; idempotent. */
void conn_close(struct conn *c);

/* Sends what is queued, then half-closes and discards input until the peer closes or
 * linger_ms passes, then closes: how an HTTP error reaches a client that is still
 * sending, and how the WebSocket closing handshake ends on the server side. */
void conn_finish(struct conn *c, uint32_t linger_ms);

/* Called when a write deadline expires: true when the peer has taken bytes from the
 * kernel's send buffer since the block began (or the last call), in which case the
 * block is restarted from now. Our own writes resume only once a third of the
 * buffer is free, so they are too coarse a measure for a slow but steady reader. */
bool conn_write_progressed(struct conn *c);

void conn_pause(struct conn *c);
void conn_resume(struct conn *c);

void conn_timer_arm(struct conn *c, uint64_t ms);
void conn_timer_cancel(struct conn *c);

static inline bool conn_closed(const struct conn *c)
{
    return (c->flags & CONN_CLOSED) != 0;
}

/* Peer address as text ("1.2.3.4" / "::1"); out must hold INET6_ADDRSTRLEN. */
const char *conn_peer(const struct conn *c, char *out, size_t cap);

#endif
