/* Listening sockets and the accept loop (edge-triggered: accept until EAGAIN, at most
 * LISTENER_ACCEPTS_PER_TURN a turn). */
#include "net/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

int listener_socket(const char *host, uint16_t port, int shared)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (!host || !*host || inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        if (!host || !*host) in4->sin_addr.s_addr = htonl(INADDR_ANY);
        len = sizeof *in4;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (shared && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) goto fail;
    if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) goto fail;
    if (listen(fd, 4096) < 0) goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    return -err;
}

int listener_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -errno;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

int listener_defer_accept(int fd, unsigned seconds)
{
    int v = (int)seconds;
    return setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, sizeof v) < 0 ? -errno : 0;
}

static void accept_all(struct listener *l)
{
    for (int taken = 0;;) {
        if (taken == LISTENER_ACCEPTS_PER_TURN) {
            /* Edge-triggered: no new event comes for what is already waiting. */
            loop_defer(l->loop, &l->more);
            return;
        }
        int fd = accept4(l->w.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            l->accepted++;
            taken++;
            l->on_accept(l, fd);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        case EAGAIN:
            return;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            /* Out of descriptors or memory: leave the rest in the backlog and come
             * back later; retrying now would spin. */
            if (l->accept_errors++ % 1000 == 0)
                log_warn("accept: out of resources, backing off",
                         "listener=%s errno=%d "
                         "count=%llu",
                         l->name, errno, (unsigned long long)l->accept_errors);
            loop_timer_arm(l->loop, &l->retry, LISTENER_BACKOFF_MS);
            return;
        default:
            log_warn("accept failed", "listener=%s errno=%d", l->name, errno);
            return;
        }
    }
}

static void listener_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    (void)events;
    struct listener *l = (struct listener *)w;
    if (!loop_timer_armed(&l->retry)) accept_all(l);
}

static void more_cb(struct loop *loop, struct loop_task *t)
{
    (void)loop;
    struct listener *l = (struct listener *)((char *)t - offsetof(struct listener, more));
    if (l->w.fd >= 0 && !loop_timer_armed(&l->retry)) accept_all(l); /* (closed meanwhile) */
}

static void retry_cb(struct loop *loop, struct timer *t)
{
    (void)loop;
    struct listener *l = (struct listener *)((char *)t - offsetof(struct listener, retry));
    accept_all(l);
}

int listener_start(struct listener *l, struct loop *loop, int fd, listener_accept_fn fn, void *ud)
{
    loop_watch_init(&l->w, fd, listener_cb);
    l->loop = loop;
    l->on_accept = fn;
    l->ud = ud;
    loop_timer_init(&l->retry, retry_cb);
    loop_task_init(&l->more, more_cb);
    /* Accepted sockets inherit TCP_NODELAY from the listening socket (Linux copies
     * the listener's options into each child): set once here rather than with one
     * setsockopt per accepted connection. */
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) return -errno;
    return loop_watch_add(loop, &l->w, EPOLLIN);
}

void listener_close(struct listener *l)
{
    if (l->w.fd < 0) return;
    loop_timer_cancel(l->loop, &l->retry);
    loop_watch_del(l->loop, &l->w);
    close(l->w.fd);
    l->w.fd = -1;
}
