/* Event loop: epoll (edge-triggered), a hashed timing wheel, end-of-turn tasks and an
 * eventfd-backed inbox for work posted from other threads.
 *
 * The wheel has LOOP_WHEEL_SLOTS slots of LOOP_TICK_MS each; a timer sits in the slot
 * of its expiry tick and keeps its absolute expiry, so timers longer than one
 * revolution simply stay in their slot until the pass on which they are due. Per-
 * connection heartbeats (tens of seconds) are thus visited a handful of times over
 * their life, and arm/cancel are list splices. A hierarchical wheel would visit them
 * less but costs more code than it saves at these timeouts. */
#include "loop/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

#define LOOP_MAX_EVENTS 256

struct post_item {
    struct post_item *next;
    void (*fn)(struct loop *, void *);
    void *arg;
};

struct loop {
    int epfd;
    bool stop;
    uint8_t id; /* its slot in loop_table */
    uint64_t now_ms;
    uint64_t tick_done; /* every tick up to and including this one has been processed */
    size_t ntimers;
    struct timer *wheel[LOOP_WHEEL_SLOTS];
    struct loop_task *tasks;
    struct io_watch wake;
    pthread_mutex_t post_mu;
    struct post_item *post_head, *post_tail;
    uint8_t *rbuf;
};

uint64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now(const struct loop *loop)
{
    return loop->now_ms;
}

uint64_t loop_now_update(struct loop *loop)
{
    return loop->now_ms = clock_now_ms();
}

uint8_t *loop_rbuf(struct loop *loop)
{
    return loop->rbuf;
}

size_t loop_timer_count(const struct loop *loop)
{
    return loop->ntimers;
}

static void wake_cb(struct loop *loop, struct io_watch *w, uint32_t events);

/* Slots are taken and given back under table_mu. A loop's thread reads its own slot
 * without it: the slot was written before the loop was handed to that thread and
 * stays until loop_destroy. */
struct loop *loop_table[LOOP_MAX];
_Static_assert(LOOP_MAX <= 256, "a watch names its loop in a byte");
static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;

static int table_take(struct loop *loop)
{
    int id = -1;
    pthread_mutex_lock(&table_mu);
    for (unsigned i = 0; i < LOOP_MAX; i++)
        if (!loop_table[i]) {
            loop_table[i] = loop;
            id = (int)i;
            break;
        }
    pthread_mutex_unlock(&table_mu);
    return id;
}

struct loop *loop_create(void)
{
    struct loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    int id = table_take(loop);
    if (id < 0) {
        free(loop);
        return NULL;
    }
    loop->id = (uint8_t)id;
    loop->rbuf = malloc(LOOP_RBUF_SIZE);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop_watch_init(&loop->wake, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), wake_cb);
    pthread_mutex_init(&loop->post_mu, NULL);
    loop->now_ms = clock_now_ms();
    loop->tick_done = loop->now_ms / LOOP_TICK_MS;
    if (!loop->rbuf || loop->epfd < 0 || loop->wake.fd < 0 ||
        loop_watch_add(loop, &loop->wake, EPOLLIN) < 0) {
        loop_destroy(loop);
        return NULL;
    }
    return loop;
}

void loop_destroy(struct loop *loop)
{
    if (!loop) return;
    if (loop->epfd >= 0) close(loop->epfd);
    if (loop->wake.fd >= 0) close(loop->wake.fd);
    struct post_item *p = loop->post_head;
    while (p) {
        struct post_item *n = p->next;
        free(p);
        p = n;
    }
    pthread_mutex_destroy(&loop->post_mu);
    free(loop->rbuf);
    pthread_mutex_lock(&table_mu);
    loop_table[loop->id] = NULL;
    pthread_mutex_unlock(&table_mu);
    free(loop);
}

void loop_stop(struct loop *loop)
{
    loop->stop = true;
}

void loop_watch_bind(struct loop *loop, struct io_watch *w)
{
    w->loop = loop->id;
}

int loop_watch_add(struct loop *loop, struct io_watch *w, uint32_t events)
{
    loop_watch_bind(loop, w);
    struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = w};
    return epoll_ctl(loop->epfd, EPOLL_CTL_ADD, w->fd, &ev) < 0 ? -errno : 0;
}

int loop_watch_mod(struct loop *loop, struct io_watch *w, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLET, .data.ptr = w};
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

void loop_watch_del(struct loop *loop, struct io_watch *w)
{
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

/* ---- timers ---- */

/* The distinct timer and watch callbacks, registered by loop_timer_init and
 * loop_watch_init from any thread: read without the lock (a slot is written once,
 * before the count that covers it is published). */
struct cb_table {
    void (**fn)(void); /* generic function pointers, cast back by the caller */
    unsigned cap;
    _Atomic unsigned n;
};

static pthread_mutex_t cb_tables_mu = PTHREAD_MUTEX_INITIALIZER;

static uint8_t cb_kind(struct cb_table *t, void (*fn)(void), const char *what)
{
    unsigned n = atomic_load_explicit(&t->n, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (t->fn[i] == fn) return (uint8_t)i;
    pthread_mutex_lock(&cb_tables_mu);
    n = atomic_load_explicit(&t->n, memory_order_relaxed);
    unsigned i = 0;
    while (i < n && t->fn[i] != fn)
        i++;
    if (i == n) {
        if (n == t->cap) {
            /* A fixed set of call sites registers here: more is a programming error. */
            log_error("too many distinct loop callbacks", "kind=%s max=%u", what, t->cap);
            abort();
        }
        t->fn[n] = fn;
        atomic_store_explicit(&t->n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&cb_tables_mu);
    return (uint8_t)i;
}

typedef void (*timer_fn)(struct loop *, struct timer *);
typedef void (*watch_fn)(struct loop *, struct io_watch *, uint32_t);
static void (*timer_fns[LOOP_TIMER_KINDS])(void);
static void (*watch_fns[LOOP_WATCH_KINDS])(void);
static struct cb_table timer_kinds = {timer_fns, LOOP_TIMER_KINDS, 0};
static struct cb_table watch_kinds = {watch_fns, LOOP_WATCH_KINDS, 0};

void loop_watch_init(struct io_watch *w, int fd,
                     void (*cb)(struct loop *loop, struct io_watch *w, uint32_t events))
{
    w->fd = fd;
    w->kind = cb_kind(&watch_kinds, (void (*)(void))cb, "watch");
}

void loop_timer_init(struct timer *t, void (*cb)(struct loop *, struct timer *))
{
    t->next = NULL;
    t->pprev = NULL;
    t->expires = 0;
    t->kind = cb_kind(&timer_kinds, (void (*)(void))cb, "timer");
}

static void wheel_insert(struct loop *loop, struct timer *t)
{
    struct timer **slot = &loop->wheel[t->expires % LOOP_WHEEL_SLOTS];
    t->next = *slot;
    if (t->next) t->next->pprev = &t->next;
    *slot = t;
    t->pprev = slot;
}

static void timer_unlink(struct timer *t)
{
    *t->pprev = t->next;
    if (t->next) t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void loop_timer_cancel(struct loop *loop, struct timer *t)
{
    if (!t->pprev) return;
    timer_unlink(t);
    loop->ntimers--;
}

void loop_timer_arm(struct loop *loop, struct timer *t, uint64_t ms)
{
    if (t->pprev) {
        timer_unlink(t);
        loop->ntimers--;
    }
    /* Round up so a timer never fires early; at least one tick past the last one
     * processed so it lands in a slot still to be visited. */
    if (ms > LOOP_TIMER_MAX_MS) ms = LOOP_TIMER_MAX_MS;
    uint64_t exp = (loop->now_ms + ms + LOOP_TICK_MS - 1) / LOOP_TICK_MS;
    if (exp <= loop->tick_done) exp = loop->tick_done + 1;
    t->expires = (uint32_t)exp; /* the slot is the same mod 2^32: 2^32 % SLOTS == 0 */
    wheel_insert(loop, t);
    loop->ntimers++;
}

/* Fires every timer due up to the current tick. A slot is detached before its timers
 * run, so a callback that re-arms (even into the same slot) cannot be run twice in
 * one pass. */
static void timers_run(struct loop *loop)
{
    uint64_t now_tick = loop->now_ms / LOOP_TICK_MS;
    if (now_tick <= loop->tick_done) return;
    uint64_t from = loop->tick_done + 1;
    /* After a long sleep, one sweep over every slot covers all due timers. */
    if (now_tick - from >= LOOP_WHEEL_SLOTS) from = now_tick - LOOP_WHEEL_SLOTS + 1;
    for (uint64_t tick = from; tick <= now_tick; tick++) {
        loop->tick_done = tick;
        struct timer **slot = &loop->wheel[tick % LOOP_WHEEL_SLOTS];
        struct timer *list = *slot;
        *slot = NULL;
        if (list) list->pprev = &list;
        while (list) {
            struct timer *t = list;
            timer_unlink(t); /* from the detached list */
            if (loop_tick_due(t->expires, now_tick)) {
                loop->ntimers--;
                ((timer_fn)timer_fns[t->kind])(loop, t);
            } else {
                wheel_insert(loop, t);
            }
        }
    }
    loop->tick_done = now_tick;
}

/* Milliseconds until the first non-empty slot's tick, or -1 with no timers. May wake
 * early for a timer that is a revolution or more away; that pass just keeps it. */
static int timers_next_ms(const struct loop *loop)
{
    if (loop->ntimers == 0) return -1;
    for (uint64_t tick = loop->tick_done + 1; tick <= loop->tick_done + LOOP_WHEEL_SLOTS; tick++) {
        if (loop->wheel[tick % LOOP_WHEEL_SLOTS]) {
            uint64_t at = tick * LOOP_TICK_MS;
            return at <= loop->now_ms ? 0 : (int)(at - loop->now_ms);
        }
    }
    return -1; /* unreachable while ntimers is right */
}

/* ---- end-of-turn tasks ---- */

/* The `next` of the last queued task: never run, only compared with. */
static struct loop_task tasks_end;

void loop_task_init(struct loop_task *t, void (*fn)(struct loop *, struct loop_task *))
{
    t->next = NULL;
    t->fn = fn;
}

void loop_defer(struct loop *loop, struct loop_task *t)
{
    if (t->next) return; /* queued already */
    t->next = loop->tasks ? loop->tasks : &tasks_end;
    loop->tasks = t;
}

static void tasks_run(struct loop *loop)
{
    struct loop_task *list = loop->tasks;
    loop->tasks = NULL;
    while (list && list != &tasks_end) {
        struct loop_task *t = list;
        list = t->next;
        t->next = NULL;
        t->fn(loop, t);
    }
}

void loop_drain_tasks(struct loop *loop)
{
    while (loop->tasks)
        tasks_run(loop);
}

/* ---- cross-thread posts ---- */

int loop_post(struct loop *loop, void (*fn)(struct loop *, void *), void *arg)
{
    struct post_item *p = malloc(sizeof *p);
    if (!p) return -ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&loop->post_mu);
    if (loop->post_tail)
        loop->post_tail->next = p;
    else
        loop->post_head = p;
    loop->post_tail = p;
    pthread_mutex_unlock(&loop->post_mu);
    uint64_t one = 1;
    ssize_t w = write(loop->wake.fd, &one, sizeof one);
    (void)w; /* EAGAIN means the counter is already non-zero: the loop will wake */
    return 0;
}

static void wake_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)events;
    uint64_t n;
    ssize_t r = read(w->fd, &n, sizeof n);
    (void)r;
    loop_run_posts(loop);
}

void loop_run_posts(struct loop *loop)
{
    pthread_mutex_lock(&loop->post_mu);
    struct post_item *p = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (p) {
        struct post_item *next = p->next;
        p->fn(loop, p->arg);
        free(p);
        p = next;
    }
}

/* ---- the loop ---- */

void loop_run(struct loop *loop)
{
    struct epoll_event events[LOOP_MAX_EVENTS];
    loop->stop = false;
    while (!loop->stop) {
        int timeout = loop->tasks ? 0 : timers_next_ms(loop);
        int n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed", "errno=%d", errno);
            break;
        }
        loop_now_update(loop);
        for (int i = 0; i < n; i++) {
            struct io_watch *w = events[i].data.ptr;
            ((watch_fn)watch_fns[w->kind])(loop, w, events[i].events);
        }
        timers_run(loop);
        tasks_run(loop);
    }
}
