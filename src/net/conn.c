/* Connection plumbing shared by every protocol. Reads go into the loop's shared
 * buffer; writes are corked: conn_send only queues and marks the connection, and the
 * end-of-turn task writes the whole queue with one write (small frames coalesced, see
 * flush_plain). The fd is registered once
 * for IN|OUT|RDHUP in edge-triggered mode, so no epoll_ctl is needed when a socket
 * fills up or drains: CONN_WRITABLE tracks the edge instead.
 *
 * TLS (CONN_TLS set, conn_tls; see net/tls_io.h) branches off at the three points where bytes
 * meet the socket: the read call, the flush and the first events (the handshake);
 * queueing, timers, backpressure and closing are shared. */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/tls_io.h"

#define CONN_EVENTS         (EPOLLIN | EPOLLOUT | EPOLLRDHUP)
#define CONN_READS_PER_TURN 8 /* fairness: then yield to other connections */
#define CONN_IOV_MAX        64

/* The send queue is a ring of message pointers: contiguous, so building the iovec
 * for writev reads one array instead of chasing list nodes (a cache miss each, the top
 * cost of fan-out when it was a list), and nothing is allocated per message. The ring
 * is allocated when something is queued and freed when the queue drains, so an idle
 * connection holds none; re-allocating it per burst costs far less than the writev
 * that drains it. It starts at 8 slots (88 bytes, a 96-byte chunk): at 16, the
 * ring that carries each connection's 101 left freed 160-byte chunks between the
 * connections' own, and idle memory rose from 139 to 155 B per /echo connection and
 * from 242 to 250 B per hub connection (10k, docs/benchmarks.md), for a saving on
 * bursts of 16 replies too small to measure. */
#define RING_MIN 8u

static inline struct wh_msg *ring_at(const struct conn *c, uint32_t i)
{
    return c->q->slot[(c->q->head + i) & (c->q->cap - 1)];
}

static int ring_grow(struct conn *c)
{
    struct conn_queue *old = c->q;
    uint32_t cap = old ? old->cap * 2 : RING_MIN;
    struct conn_queue *q = malloc(sizeof *q + (size_t)cap * sizeof q->slot[0]);
    if (!q) return -1;
    q->cap = cap;
    q->head = 0;
    q->off = old ? old->off : 0;
    q->kernel_unsent = old ? old->kernel_unsent : 0;
    q->count = old ? old->count : 0;
    q->bytes = old ? old->bytes : 0;
    for (uint32_t i = 0; i < q->count; i++)
        q->slot[i] = ring_at(c, i);
    free(old);
    c->q = q;
    return 0;
}

static void ring_pop(struct conn *c)
{
    struct conn_queue *q = c->q;
    struct wh_msg *m = q->slot[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    q->bytes -= m->len - q->off;
    q->off = 0;
    msg_unref(m);
}

static void ring_release(struct conn *c)
{
    free(c->q);
    c->q = NULL;
}

uint32_t conn_head_written(const struct conn *c)
{
    return c->q ? c->q->off : 0;
}

/* The cork: small frames a connection sends while nothing else is queued for it are
 * written straight into this per-thread buffer (conn_cork), and the buffer goes out
 * with one send at the end of the turn, when its owner flushes. One connection owns
 * it at a time; another that wants it first sends the owner's bytes (the send the
 * owner's flush would have made). Bytes that cannot go out at once are moved into the
 * owner's queue as one message ("spilled"), and anything queued for the owner with
 * conn_send spills the cork first, so the order on the wire is the order of sending.
 *
 * Why: an echo reply (ws_send, the one user today) through the queue is a message
 * allocated, filled, queued, copied again into the staging buffer and released, per
 * frame; with 16 replies per read, corking took wshub's user time per echoed message
 * from 56–79 ns to 52–60 (four interleaved runs; uWebSockets, which corks the same
 * way, 39–51; see docs/benchmarks.md). */
#define CONN_CORK_SIZE (16u * 1024u)

static _Thread_local struct {
    struct conn *owner; /* NULL: free */
    uint32_t len;
    uint8_t buf[CONN_CORK_SIZE];
} cork;

/* Output not yet handed to the kernel: corked, queued, or staged by TLS for a retry. */
static inline bool has_output(const struct conn *c)
{
    return cork.owner == c || conn_out_count(c) || (conn_tls(c) && tls_io_staged(c));
}

static int ring_push(struct conn *c, struct wh_msg *m);

/* Moves the cork's unsent bytes from `from` on into its queue (which is empty: a
 * queued message would have spilled the cork before it) and frees the cork. On
 * allocation failure the connection is closed: the stream would have a hole. */
static void cork_spill(struct conn *c, uint32_t from)
{
    uint32_t n = cork.len - from;
    cork.owner = NULL;
    cork.len = 0;
    if (n == 0) return; /* (only if conn_cork was asked for 0 bytes) */
    struct wh_msg *m = msg_new(n);
    if (!m || ring_push(c, m) < 0) {
        msg_unref(m);
        conn_close(c);
        return;
    }
    memcpy(m->data, cork.buf + from, n);
}

/* Sends the cork for its owner (one send, as the owner's flush would), spilling what
 * the socket does not take into the owner's queue. */
static void cork_send(void)
{
    struct conn *c = cork.owner;
    ssize_t w;
    do
        w = send(c->w.fd, cork.buf, cork.len, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)cork.len) {
        cork.owner = NULL;
        cork.len = 0;
        c->blocked_since32 = 0;
        return;
    }
    /* Short, EAGAIN or an error: the owner's own flush takes it from here (and sees
     * EAGAIN or the error again, and acts on it). */
    cork_spill(c, w > 0 ? (uint32_t)w : 0);
}

uint8_t *conn_cork(struct conn *c, size_t n)
{
    if ((c->flags & (CONN_CLOSED | CONN_HALF_CLOSED | CONN_TLS | CONN_WRITABLE)) != CONN_WRITABLE ||
        conn_out_count(c) || n > CONN_CORK_SIZE)
        return NULL;
    if (cork.owner && (cork.owner != c || n > CONN_CORK_SIZE - cork.len)) cork_send();
    if (cork.owner != c) {
        if (conn_out_count(c)) return NULL; /* (cork_send spilled into c's own queue) */
        cork.owner = c;
        cork.len = 0;
        loop_defer(conn_loop(c), &c->task);
    }
    uint8_t *p = cork.buf + cork.len;
    cork.len += (uint32_t)n;
    return p;
}

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events);
static void conn_timer_cb(struct loop *loop, struct timer *t);
static void conn_task_cb(struct loop *loop, struct loop_task *t);

void conn_list_init(struct conn_list *list)
{
    list->ring.next = list->ring.prev = &list->ring;
}

static struct conn *link_conn(struct conn_link *l)
{
    return (struct conn *)((char *)l - offsetof(struct conn, link));
}

struct conn *conn_list_first(struct conn_list *list)
{
    return list->ring.next == &list->ring ? NULL : link_conn(list->ring.next);
}

struct conn *conn_list_next(struct conn_list *list, struct conn *c)
{
    return c->link.next == &list->ring ? NULL : link_conn(c->link.next);
}

size_t conn_list_count(const struct conn_list *list)
{
    size_t n = 0;
    for (const struct conn_link *l = list->ring.next; l != &list->ring; l = l->next)
        n++;
    return n;
}

static void list_link(struct conn *c, struct conn_list *list)
{
    if (!list) return;
    c->link.prev = &list->ring;
    c->link.next = list->ring.next;
    list->ring.next->prev = &c->link;
    list->ring.next = &c->link;
}

static void list_unlink(struct conn *c)
{
    if (!c->link.next) return;
    c->link.prev->next = c->link.next;
    c->link.next->prev = c->link.prev;
    c->link.next = c->link.prev = NULL;
}

static void conn_setup(struct conn *c, int fd, const struct conn_ops *ops)
{
    loop_watch_init(&c->w, fd, conn_io_cb);
    c->ops = ops;
    c->flags = CONN_WRITABLE;
    loop_timer_init(&c->timer, conn_timer_cb);
    loop_task_init(&c->task, conn_task_cb);
}

int conn_init(struct conn *c, struct loop *loop, int fd, const struct conn_ops *ops,
              struct conn_list *list)
{
    conn_setup(c, fd, ops);
    int rc = loop_watch_add(loop, &c->w, CONN_EVENTS);
    if (rc < 0) return rc;
    list_link(c, list);
    return 0;
}

void conn_init_read_first(struct conn *c, struct loop *loop, int fd, const struct conn_ops *ops,
                          struct conn_list *list)
{
    conn_setup(c, fd, ops);
    c->flags |= CONN_UNWATCHED;
    loop_watch_bind(loop, &c->w);
    list_link(c, list);
}

static void conn_read(struct conn *c, bool until_eof);

/* Registers a connection that was served before it was watched. Edge-triggered: what
 * arrived since the read is reported by the registration itself. */
static int watch_now(struct conn *c)
{
    c->flags &= ~(uint32_t)CONN_UNWATCHED;
    return loop_watch_add(conn_loop(c), &c->w, CONN_EVENTS);
}

void conn_read_first(struct conn *c)
{
    conn_read(c, false);
    if ((c->flags & (CONN_CLOSED | CONN_UNWATCHED)) == CONN_UNWATCHED && watch_now(c) < 0)
        conn_close(c);
}

static void free_task(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, task));
    if (c->ops && c->ops->on_free) c->ops->on_free(c);
    if (!(c->flags & CONN_KEEP)) free(c);
}

static void free_raw_task(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    free((char *)t - offsetof(struct conn, task));
}

int conn_migrate(struct conn *from, struct conn *to, const struct conn_ops *ops)
{
    *to = *from;
    if (cork.owner == from) cork.owner = to;
    to->ops = ops;
    loop_timer_init(&to->timer, conn_timer_cb);
    loop_task_init(&to->task, conn_task_cb);
    if (from->link.next) { /* `to` takes from's place on the list */
        to->link.prev->next = &to->link;
        to->link.next->prev = &to->link;
    }
    loop_timer_cancel(conn_loop(from), &from->timer);
    int rc = (to->flags & CONN_UNWATCHED) ? watch_now(to)
                                          : loop_watch_mod(conn_loop(to), &to->w, CONN_EVENTS);
    /* `from` may still be on the task list: let that entry free it. */
    from->flags = CONN_CLOSED; /* (a TLS stream goes with `to`'s CONN_TLS) */
    from->q = NULL;
    from->link.next = from->link.prev = NULL;
    from->task.fn = free_raw_task;
    loop_defer(conn_loop(from), &from->task);
    if (has_output(to) || (to->flags & CONN_READ_AGAIN)) loop_defer(conn_loop(to), &to->task);
    if (rc < 0) conn_close(to);
    return rc;
}

static void queue_clear(struct conn *c)
{
    for (uint32_t i = 0; i < conn_out_count(c); i++)
        msg_unref(ring_at(c, i));
    ring_release(c);
}

void conn_close(struct conn *c)
{
    if (c->flags & CONN_CLOSED) return;
    c->flags |= CONN_CLOSED;
    if (cork.owner == c) { /* dropped with the rest of the output */
        cork.owner = NULL;
        cork.len = 0;
    }
    /* No EPOLL_CTL_DEL: closing the last descriptor of a socket takes it out of the
     * epoll set, and the server never forks or duplicates a connection's descriptor
     * (accepted with SOCK_CLOEXEC), so close is the last one; that is one system call
     * less per connection. Events already fetched in this turn find CONN_CLOSED, and
     * the struct outlives the turn. */
    if (conn_tls(c)) tls_io_free(c);
    close(c->w.fd);
    c->w.fd = -1;
    loop_timer_cancel(conn_loop(c), &c->timer);
    queue_clear(c);
    list_unlink(c);
    c->task.fn = free_task;
    loop_defer(conn_loop(c), &c->task);
}

static int ring_push(struct conn *c, struct wh_msg *m)
{
    if ((!c->q || c->q->count == c->q->cap) && ring_grow(c) < 0) return -1;
    struct conn_queue *q = c->q;
    q->slot[(q->head + q->count) & (q->cap - 1)] = m;
    q->count++;
    q->bytes += m->len;
    loop_defer(conn_loop(c), &c->task);
    return 0;
}

void conn_send(struct conn *c, struct wh_msg *m)
{
    if (c->flags & (CONN_CLOSED | CONN_HALF_CLOSED)) {
        msg_unref(m);
        return;
    }
    if (cork.owner == c) cork_spill(c, 0); /* what was corked goes first */
    if (c->flags & CONN_CLOSED) {
        msg_unref(m);
        return;
    }
    if (ring_push(c, m) < 0) {
        msg_unref(m);
        conn_close(c); /* cannot keep the stream consistent without this message */
    }
}

int conn_send_copy(struct conn *c, const void *data, size_t len)
{
    struct wh_msg *m = msg_new(len);
    if (!m) return -ENOMEM;
    memcpy(m->data, data, len);
    conn_send(c, m);
    return 0;
}

int conn_drop_oldest(struct conn *c)
{
    /* The oldest message is kept when it is partly written. */
    uint32_t k = conn_head_written(c) ? 1 : 0;
    if (conn_out_count(c) <= k) return 0;
    struct conn_queue *q = c->q;
    uint32_t mask = q->cap - 1;
    struct wh_msg *victim = q->slot[(q->head + k) & mask];
    if (k) q->slot[(q->head + 1) & mask] = q->slot[q->head];
    q->head = (q->head + 1) & mask;
    q->count--;
    q->bytes -= victim->len;
    msg_unref(victim);
    return 1;
}

size_t conn_discard_queued(struct conn *c)
{
    uint32_t keep = conn_head_written(c) ? 1 : 0;
    size_t n = 0;
    while (conn_out_count(c) > keep) {
        struct wh_msg *m = ring_at(c, c->q->count - 1);
        c->q->count--;
        c->q->bytes -= m->len;
        msg_unref(m);
        n++;
    }
    return n;
}

static void half_close(struct conn *c)
{
    if (c->flags & CONN_HALF_CLOSED) return;
    c->flags |= CONN_HALF_CLOSED;
    if (conn_tls(c)) tls_io_shutdown(c);
    shutdown(c->w.fd, SHUT_WR);
}

static void mark_blocked(struct conn *c)
{
    uint32_t now = (uint32_t)loop_now(conn_loop(c));
    c->blocked_since32 = now ? now : 1;
}

static uint32_t kernel_unsent(const struct conn *c)
{
    int n = 0;
    if (ioctl(c->w.fd, SIOCOUTQ, &n) < 0 || n < 0) return UINT32_MAX;
    return (uint32_t)n;
}

bool conn_write_progressed(struct conn *c)
{
    if (!c->q) return true; /* nothing queued any more */
    uint32_t now = kernel_unsent(c);
    bool moved = now < c->q->kernel_unsent;
    c->q->kernel_unsent = now;
    if (moved) mark_blocked(c);
    return moved;
}

size_t conn_queue_take(struct conn *c, uint8_t *dst, size_t cap)
{
    size_t got = 0;
    while (got < cap && conn_out_count(c)) {
        struct wh_msg *m = c->q->slot[c->q->head];
        size_t rest = m->len - c->q->off;
        size_t k = rest < cap - got ? rest : cap - got;
        memcpy(dst + got, m->data + c->q->off, k);
        got += k;
        if (k == rest) {
            ring_pop(c);
        } else {
            c->q->off += (uint32_t)k;
            c->q->bytes -= k;
        }
    }
    return got;
}

/* Small frames are copied into one per-thread staging buffer and go out with the
 * large ones in a single write: the kernel walks one iovec per run of small frames
 * instead of one per frame (with 30 small frames queued, writev's per-iovec copy was
 * the top kernel cost of fan-out). Frames of CONN_COALESCE_MIN bytes or more are
 * handed over where they are, so a big frame shared by many recipients is not copied
 * once more per recipient.
 *
 * Copying does not take a frame off the queue: the ring stays the record of what the
 * kernel has not accepted, and only what write returns is popped (a frame written in
 * part stays at the head with its written part counted). So a plain socket needs no per-connection
 * stage for a blocked write, unlike TLS (SSL_write must be handed the same bytes
 * again): the unsent rest is copied again on the next try, at most one staging
 * buffer's worth per blocked write, and drop-oldest/discard only ever see frames the
 * kernel has taken nothing of, or the partly written head, which they keep. */
#define CONN_COALESCE_MIN 1024u
#define CONN_STAGE_SIZE   (32u * 1024u)

static _Thread_local uint8_t stage_buf[CONN_STAGE_SIZE];

/* Builds the iovec for the oldest queued bytes; returns the count, *want the bytes.
 * A run of small frames is copied into the staging buffer only once it has a second
 * frame: a lone small frame (the common case at a low message rate) is written from
 * where it is. */
static int gather(const struct conn *c, struct iovec *iov, size_t *want)
{
    int n = 0;
    size_t used = 0, total = 0;
    bool in_run = false;     /* iov[n - 1] is a run of small frames */
    bool run_copied = false; /* ... already in the staging buffer */
    for (uint32_t i = 0; i < c->q->count; i++) {
        struct wh_msg *m = ring_at(c, i);
        size_t off = i == 0 ? c->q->off : 0;
        uint8_t *p = m->data + off;
        size_t len = m->len - off;
        if (len < CONN_COALESCE_MIN) {
            if (!in_run) {
                if (n == CONN_IOV_MAX) break;
                iov[n].iov_base = p; /* alone so far: in place */
                iov[n++].iov_len = len;
                in_run = true;
                run_copied = false;
                total += len;
                continue;
            }
            struct iovec *run = &iov[n - 1];
            size_t need = len + (run_copied ? 0 : run->iov_len);
            if (used + need > CONN_STAGE_SIZE) break;
            if (!run_copied) {
                memcpy(stage_buf + used, run->iov_base, run->iov_len);
                run->iov_base = stage_buf + used;
                used += run->iov_len;
                run_copied = true;
            }
            memcpy(stage_buf + used, p, len);
            run->iov_len += len;
            used += len;
        } else {
            if (n == CONN_IOV_MAX) break;
            iov[n].iov_base = p;
            iov[n++].iov_len = len;
            in_run = false;
        }
        total += len;
    }
    *want = total;
    return n;
}

static void flush_plain(struct conn *c)
{
    if (cork.owner == c && (c->flags & (CONN_WRITABLE | CONN_CLOSED)) == CONN_WRITABLE)
        cork_send(); /* (the queue is empty while c holds the cork) */
    while (conn_out_count(c) && (c->flags & (CONN_WRITABLE | CONN_CLOSED)) == CONN_WRITABLE) {
        struct iovec iov[CONN_IOV_MAX];
        size_t want;
        int n = gather(c, iov, &want);
        /* send/sendmsg rather than write/writev: the socket calls skip the VFS layer
         * (vfs_write's fsnotify hook and fdget_pos), ~5% of the kernel's time per
         * small write in a fan-out profile. */
        ssize_t w;
        if (n == 1) {
            w = send(c->w.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(c->w.fd, &mh, MSG_NOSIGNAL);
        }
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                c->flags &= ~CONN_WRITABLE;
                break;
            }
            conn_close(c); /* EPIPE, ECONNRESET: the peer is gone */
            return;
        }
        size_t left = (size_t)w;
        c->blocked_since32 = 0;
        while (left > 0) {
            struct wh_msg *m = c->q->slot[c->q->head];
            size_t rest = m->len - c->q->off;
            if (left < rest) {
                c->q->off += (uint32_t)left;
                c->q->bytes -= left;
                break;
            }
            left -= rest;
            ring_pop(c);
        }
        /* A short write means the socket buffer is full: wait for EPOLLOUT rather
         * than spend a syscall to hear EAGAIN. */
        if ((size_t)w < want) {
            c->flags &= ~CONN_WRITABLE;
            break;
        }
    }
}

void conn_flush(struct conn *c)
{
    if (conn_tls(c))
        tls_io_flush(c);
    else
        flush_plain(c);
    if (c->flags & CONN_CLOSED) return;
    if (has_output(c)) {
        if (!(c->flags & CONN_WRITABLE) && c->blocked_since32 == 0) {
            mark_blocked(c);
            if (c->q) c->q->kernel_unsent = kernel_unsent(c);
            if (c->ops->on_blocked) c->ops->on_blocked(c);
        }
        return;
    }
    ring_release(c);
    if (c->flags & CONN_FINISHING) {
        half_close(c);
        return;
    }
    if (c->ops->on_drain) c->ops->on_drain(c);
}

static void conn_read(struct conn *c, bool until_eof)
{
    uint8_t *buf = loop_rbuf(conn_loop(c));
    for (int i = 0; i < CONN_READS_PER_TURN; i++) {
        if (c->flags & CONN_PAUSED) {
            c->flags |= CONN_READ_AGAIN;
            return;
        }
        ssize_t n = conn_tls(c) ? tls_io_read(c, buf, LOOP_RBUF_SIZE)
                                : recv(c->w.fd, buf, LOOP_RBUF_SIZE, 0);
        if (n > 0) {
            if (!(c->flags & CONN_FINISHING)) c->ops->on_data(c, buf, (size_t)n);
            if (c->flags & CONN_CLOSED) return;
            /* A short read drained the socket; a later arrival raises a new edge.
             * With RDHUP seen, read on to collect the EOF, which raises no edge.
             * Under TLS only WANT_READ says the socket is drained. */
            if (!until_eof && (conn_tls(c) ? conn_tls(c)->drained : (size_t)n < LOOP_RBUF_SIZE))
                return;
            continue;
        }
        if (n == 0) {
            if (!(c->flags & CONN_FINISHING) && c->ops->on_eof) c->ops->on_eof(c);
            conn_close(c);
            return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) conn_close(c);
        return;
    }
    c->flags |= CONN_READ_AGAIN;
    loop_defer(conn_loop(c), &c->task);
}

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    struct conn *c = (struct conn *)w;
    if (c->flags & CONN_CLOSED) return;
    if (conn_tls(c)) {
        if (!tls_io_open(c)) {
            int r = tls_io_handshake(c);
            if (r < 0) conn_close(c);
            if (r <= 0) return;
            events |= EPOLLIN; /* the request may have come with the client's Finished */
        }
        if ((events & EPOLLOUT) && conn_tls(c)->read_wants_write) {
            conn_tls(c)->read_wants_write = false;
            events |= EPOLLIN;
        }
    }
    if (events & EPOLLOUT) {
        c->flags |= CONN_WRITABLE;
        if (has_output(c)) conn_flush(c);
        if (c->flags & CONN_CLOSED) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        conn_read(c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        if (conn_tls(c) && conn_tls(c)->write_wants_read && !(c->flags & CONN_CLOSED)) {
            conn_tls(c)->write_wants_read = false;
            conn_flush(c);
        }
    }
}

static void conn_task_cb(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, task));
    if (c->flags & CONN_CLOSED) return;
    if ((c->flags & (CONN_READ_AGAIN | CONN_PAUSED)) == CONN_READ_AGAIN) {
        c->flags &= ~CONN_READ_AGAIN;
        conn_read(c, false);
        if (c->flags & CONN_CLOSED) return;
    }
    if (has_output(c) && (c->flags & CONN_WRITABLE)) conn_flush(c);
}

static void conn_timer_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
    if (c->flags & CONN_CLOSED) return;
    if (c->flags & CONN_FINISHING) {
        conn_close(c);
        return;
    }
    if (conn_tls(c) && !tls_io_open(c)) {
        /* Nothing above TLS has seen a byte yet: there is no one to answer. */
        tls_io_handshake_timeout(c);
        conn_close(c);
        return;
    }
    c->ops->on_timer(c);
}

void conn_finish(struct conn *c, uint32_t linger_ms)
{
    if (c->flags & (CONN_CLOSED | CONN_FINISHING)) return;
    c->flags |= CONN_FINISHING;
    c->flags &= ~CONN_PAUSED;
    loop_timer_arm(conn_loop(c), &c->timer, linger_ms);
    if (!has_output(c))
        half_close(c);
    else
        loop_defer(conn_loop(c), &c->task);
}

void conn_pause(struct conn *c)
{
    c->flags |= CONN_PAUSED;
}

void conn_resume(struct conn *c)
{
    if (!(c->flags & CONN_PAUSED)) return;
    c->flags &= ~CONN_PAUSED;
    c->flags |= CONN_READ_AGAIN;
    loop_defer(conn_loop(c), &c->task);
}

void conn_timer_arm(struct conn *c, uint64_t ms)
{
    if (!(c->flags & CONN_CLOSED)) loop_timer_arm(conn_loop(c), &c->timer, ms);
}

void conn_timer_cancel(struct conn *c)
{
    loop_timer_cancel(conn_loop(c), &c->timer);
}

const char *conn_peer(const struct conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    out[0] = 0;
    if (c->w.fd < 0 || getpeername(c->w.fd, (struct sockaddr *)&ss, &len) < 0) return out;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
    return out;
}
