/* The hiredis <-> loop adapter; see redis_loop.h. */
#include "cluster/redis_loop.h"

#include <stddef.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>

static void update(struct redis_loop_io *io)
{
    uint32_t ev = (io->reading ? EPOLLIN | EPOLLRDHUP : 0) | (io->writing ? EPOLLOUT : 0);
    if (!io->added) {
        if (loop_watch_add(io->loop, &io->w, ev) == 0) io->added = true;
    } else {
        /* MOD re-reports current readiness, so newly wanted writability is not lost
         * to the edge-triggered mode. */
        loop_watch_mod(io->loop, &io->w, ev);
    }
}

static void add_read(void *p)
{
    struct redis_loop_io *io = p;
    if (io->reading) return;
    io->reading = true;
    update(io);
}

static void del_read(void *p)
{
    struct redis_loop_io *io = p;
    if (!io->reading) return;
    io->reading = false;
    update(io);
}

static void add_write(void *p)
{
    struct redis_loop_io *io = p;
    if (io->writing) return;
    io->writing = true;
    update(io);
}

static void del_write(void *p)
{
    struct redis_loop_io *io = p;
    if (!io->writing) return;
    io->writing = false;
    update(io);
}

static void cleanup(void *p)
{
    struct redis_loop_io *io = p;
    if (io->added) loop_watch_del(io->loop, &io->w);
    io->added = io->reading = io->writing = false;
    io->ac = NULL;
    if (io->gone) io->gone(io);
}

static void on_events(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    struct redis_loop_io *io =
        (struct redis_loop_io *)((char *)w - offsetof(struct redis_loop_io, w));
    redisAsyncContext *ac = io->ac;
    int fd = w->fd;
    if (!ac) return;
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
        redisAsyncHandleWrite(ac);
        if (io->ac != ac) return; /* freed: connect failed or write error */
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
        for (;;) {
            redisAsyncHandleRead(ac);
            if (io->ac != ac) return;
            int avail = 0;
            if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0) break;
        }
        /* Everything buffered is read; a hang-up leaves an EOF (or an error) that only
         * one more read reports, and no further edge would come. */
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) redisAsyncHandleRead(ac);
    }
}

int redis_loop_attach(struct redis_loop_io *io, struct loop *loop, redisAsyncContext *ac,
                      void (*gone)(struct redis_loop_io *io))
{
    if (ac->ev.data) return -1;
    *io = (struct redis_loop_io){.loop = loop, .ac = ac, .gone = gone};
    loop_watch_init(&io->w, ac->c.fd, on_events);
    ac->ev.data = io;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return 0;
}
