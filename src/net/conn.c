/* Connection plumbing shared by every protocol. Reads go into the loop's shared
 * buffer; writes are corked: conn_send only queues and marks the connection, and the
 * end-of-turn task writes the whole queue with one writev. The fd is registered once
 * for IN|OUT|RDHUP in edge-triggered mode, so no epoll_ctl is needed when a socket
 * fills up or drains: CONN_WRITABLE tracks the edge instead. */
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

#define CONN_EVENTS         (EPOLLIN | EPOLLOUT | EPOLLRDHUP)
#define CONN_READS_PER_TURN 8 /* fairness: then yield to other connections */
#define CONN_IOV_MAX        64

/* Queue nodes come from a per-thread free list: a connection only ever runs on one
 * thread, and nodes are 16 bytes, so this avoids an allocation per queued message. */
static _Thread_local struct outq_node *node_free;
static _Thread_local unsigned node_free_n;
#define NODE_FREE_MAX 8192u

static struct outq_node *node_get(void)
{
    struct outq_node *n = node_free;
    if (n) {
        node_free = n->next;
        node_free_n--;
        return n;
    }
    return malloc(sizeof *n);
}

static void node_put(struct outq_node *n)
{
    if (node_free_n >= NODE_FREE_MAX) {
        free(n);
        return;
    }
    n->next = node_free;
    node_free = n;
    node_free_n++;
}

void conn_thread_cleanup(void)
{
    while (node_free) {
        struct outq_node *n = node_free;
        node_free = n->next;
        free(n);
    }
    node_free_n = 0;
}

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events);
static void conn_timer_cb(struct loop *loop, struct timer *t);
static void conn_task_cb(struct loop *loop, struct loop_task *t);

static void list_link(struct conn *c, struct conn_list *list)
{
    c->list = list;
    if (!list) return;
    c->list_prev = NULL;
    c->list_next = list->head;
    if (list->head) list->head->list_prev = c;
    list->head = c;
    list->count++;
}

static void list_unlink(struct conn *c)
{
    struct conn_list *list = c->list;
    if (!list) return;
    if (c->list_prev)
        c->list_prev->list_next = c->list_next;
    else
        list->head = c->list_next;
    if (c->list_next) c->list_next->list_prev = c->list_prev;
    list->count--;
    c->list = NULL;
    c->list_next = c->list_prev = NULL;
}

int conn_init(struct conn *c, struct loop *loop, int fd, const struct conn_ops *ops,
              struct conn_list *list)
{
    c->w.fd = fd;
    c->w.cb = conn_io_cb;
    c->loop = loop;
    c->ops = ops;
    c->flags = CONN_WRITABLE;
    loop_timer_init(&c->timer, conn_timer_cb);
    loop_task_init(&c->task, conn_task_cb);
    int rc = loop_watch_add(loop, &c->w, CONN_EVENTS);
    if (rc < 0) return rc;
    list_link(c, list);
    return 0;
}

static void free_task(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, task));
    if (c->ops && c->ops->on_free) c->ops->on_free(c);
    free(c);
}

static void free_raw_task(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    free((char *)t - offsetof(struct conn, task));
}

int conn_migrate(struct conn *from, struct conn *to, const struct conn_ops *ops)
{
    *to = *from;
    to->ops = ops;
    loop_timer_init(&to->timer, conn_timer_cb);
    loop_task_init(&to->task, conn_task_cb);
    if (from->list) {
        if (from->list_prev)
            from->list_prev->list_next = to;
        else
            from->list->head = to;
        if (from->list_next) from->list_next->list_prev = to;
    }
    loop_timer_cancel(from->loop, &from->timer);
    int rc = loop_watch_mod(to->loop, &to->w, CONN_EVENTS);
    /* `from` may still be on the task list: let that entry free it. */
    from->flags = CONN_CLOSED;
    from->out_head = from->out_tail = NULL;
    from->list = NULL;
    from->task.fn = free_raw_task;
    loop_defer(from->loop, &from->task);
    if (to->out_head || (to->flags & CONN_READ_AGAIN)) loop_defer(to->loop, &to->task);
    if (rc < 0) conn_close(to);
    return rc;
}

static void queue_clear(struct conn *c)
{
    struct outq_node *n = c->out_head;
    while (n) {
        struct outq_node *next = n->next;
        msg_unref(n->msg);
        node_put(n);
        n = next;
    }
    c->out_head = c->out_tail = NULL;
    c->out_count = 0;
    c->out_bytes = 0;
    c->out_off = 0;
}

void conn_close(struct conn *c)
{
    if (c->flags & CONN_CLOSED) return;
    c->flags |= CONN_CLOSED;
    loop_watch_del(c->loop, &c->w);
    close(c->w.fd);
    c->w.fd = -1;
    loop_timer_cancel(c->loop, &c->timer);
    queue_clear(c);
    list_unlink(c);
    c->task.fn = free_task;
    loop_defer(c->loop, &c->task);
}

void conn_send(struct conn *c, struct wh_msg *m)
{
    if (c->flags & (CONN_CLOSED | CONN_HALF_CLOSED)) {
        msg_unref(m);
        return;
    }
    struct outq_node *n = node_get();
    if (!n) {
        msg_unref(m);
        conn_close(c); /* cannot keep the stream consistent without this message */
        return;
    }
    n->next = NULL;
    n->msg = m;
    if (c->out_tail)
        c->out_tail->next = n;
    else
        c->out_head = n;
    c->out_tail = n;
    c->out_count++;
    c->out_bytes += m->len;
    loop_defer(c->loop, &c->task);
}

int conn_send_copy(struct conn *c, const void *data, size_t len)
{
    struct wh_msg *m = msg_new(len);
    if (!m) return -ENOMEM;
    memcpy(m->data, data, len);
    conn_send(c, m);
    return 0;
}

/* The first node that may be dropped: the head unless it is partly written. */
static struct outq_node **droppable(struct conn *c)
{
    if (!c->out_head) return NULL;
    return c->out_off ? &c->out_head->next : &c->out_head;
}

static void unlink_node(struct conn *c, struct outq_node **pp)
{
    struct outq_node *n = *pp;
    *pp = n->next;
    if (c->out_tail == n) {
        /* the new tail is the node whose next pointer pp is, or none */
        c->out_tail = pp == &c->out_head
                          ? NULL
                          : (struct outq_node *)((char *)pp - offsetof(struct outq_node, next));
    }
    c->out_count--;
    c->out_bytes -= n->msg->len;
    msg_unref(n->msg);
    node_put(n);
}

int conn_drop_oldest(struct conn *c)
{
    struct outq_node **pp = droppable(c);
    if (!pp || !*pp) return 0;
    unlink_node(c, pp);
    return 1;
}

size_t conn_discard_queued(struct conn *c)
{
    struct outq_node **pp = droppable(c);
    size_t n = 0;
    while (pp && *pp) {
        unlink_node(c, pp);
        n++;
    }
    return n;
}

static void half_close(struct conn *c)
{
    if (c->flags & CONN_HALF_CLOSED) return;
    c->flags |= CONN_HALF_CLOSED;
    shutdown(c->w.fd, SHUT_WR);
}

static uint32_t kernel_unsent(const struct conn *c)
{
    int n = 0;
    if (ioctl(c->w.fd, SIOCOUTQ, &n) < 0 || n < 0) return UINT32_MAX;
    return (uint32_t)n;
}

bool conn_write_progressed(struct conn *c)
{
    uint32_t now = kernel_unsent(c);
    bool moved = now < c->kernel_unsent;
    c->kernel_unsent = now;
    if (moved) c->blocked_since_ms = loop_now(c->loop);
    return moved;
}

void conn_flush(struct conn *c)
{
    while (c->out_head && (c->flags & (CONN_WRITABLE | CONN_CLOSED)) == CONN_WRITABLE) {
        struct iovec iov[CONN_IOV_MAX];
        int n = 0;
        size_t want = 0;
        for (struct outq_node *q = c->out_head; q && n < CONN_IOV_MAX; q = q->next, n++) {
            size_t off = n == 0 ? c->out_off : 0;
            iov[n].iov_base = q->msg->data + off;
            iov[n].iov_len = q->msg->len - off;
            want += iov[n].iov_len;
        }
        ssize_t w = writev(c->w.fd, iov, n);
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
        c->bytes_out += left;
        c->out_bytes -= left;
        c->blocked_since_ms = 0;
        while (left > 0) {
            struct outq_node *q = c->out_head;
            size_t rest = q->msg->len - c->out_off;
            if (left < rest) {
                c->out_off += (uint32_t)left;
                break;
            }
            left -= rest;
            c->out_off = 0;
            c->out_head = q->next;
            if (!c->out_head) c->out_tail = NULL;
            c->out_count--;
            msg_unref(q->msg);
            node_put(q);
        }
        /* A short write means the socket buffer is full: wait for EPOLLOUT rather
         * than spend a syscall to hear EAGAIN. */
        if ((size_t)w < want) {
            c->flags &= ~CONN_WRITABLE;
            break;
        }
    }
    if (c->flags & CONN_CLOSED) return;
    if (c->out_head) {
        if (!(c->flags & CONN_WRITABLE) && c->blocked_since_ms == 0) {
            c->blocked_since_ms = loop_now(c->loop);
            if (c->blocked_since_ms == 0) c->blocked_since_ms = 1;
            c->kernel_unsent = kernel_unsent(c);
            if (c->ops->on_blocked) c->ops->on_blocked(c);
        }
        return;
    }
    if (c->flags & CONN_FINISHING) {
        half_close(c);
        return;
    }
    if (c->ops->on_drain) c->ops->on_drain(c);
}

static void conn_read(struct conn *c, bool until_eof)
{
    uint8_t *buf = loop_rbuf(c->loop);
    for (int i = 0; i < CONN_READS_PER_TURN; i++) {
        if (c->flags & CONN_PAUSED) {
            c->flags |= CONN_READ_AGAIN;
            return;
        }
        ssize_t n = read(c->w.fd, buf, LOOP_RBUF_SIZE);
        if (n > 0) {
            c->bytes_in += (uint64_t)n;
            if (!(c->flags & CONN_FINISHING)) c->ops->on_data(c, buf, (size_t)n);
            if (c->flags & CONN_CLOSED) return;
            /* A short read drained the socket; a later arrival raises a new edge.
             * With RDHUP seen, read on to collect the EOF, which raises no edge. */
            if ((size_t)n < LOOP_RBUF_SIZE && !until_eof) return;
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
    loop_defer(c->loop, &c->task);
}

static void conn_io_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    struct conn *c = (struct conn *)w;
    if (c->flags & CONN_CLOSED) return;
    if (events & EPOLLOUT) {
        c->flags |= CONN_WRITABLE;
        if (c->out_head) conn_flush(c);
        if (c->flags & CONN_CLOSED) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        conn_read(c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
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
    if (c->out_head && (c->flags & CONN_WRITABLE)) conn_flush(c);
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
    c->ops->on_timer(c);
}

void conn_finish(struct conn *c, uint32_t linger_ms)
{
    if (c->flags & (CONN_CLOSED | CONN_FINISHING)) return;
    c->flags |= CONN_FINISHING;
    c->flags &= ~CONN_PAUSED;
    loop_timer_arm(c->loop, &c->timer, linger_ms);
    if (!c->out_head)
        half_close(c);
    else
        loop_defer(c->loop, &c->task);
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
    loop_defer(c->loop, &c->task);
}

void conn_timer_arm(struct conn *c, uint64_t ms)
{
    if (!(c->flags & CONN_CLOSED)) loop_timer_arm(c->loop, &c->timer, ms);
}

void conn_timer_cancel(struct conn *c)
{
    loop_timer_cancel(c->loop, &c->timer);
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
