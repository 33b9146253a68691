/* The event loop: one per worker thread, never shared. epoll in edge-triggered mode,
 * a timing wheel for timers, deferred tasks that run once at the end of each turn
 * (where corked writes are flushed), and a thread-safe post() that wakes the loop
 * through an eventfd. Modelled on Redis' ae.c: a tiny API, a before-sleep phase.
 *
 * Ownership: the loop owns nothing it is given. Watches, timers and tasks are
 * intrusive (embedded in the caller's structs) so that arming, re-arming and
 * cancelling never allocate; the caller must cancel/remove them before freeing the
 * struct they live in. Only loop_post() may be called from another thread. */
#ifndef WSHUB_LOOP_LOOP_H
#define WSHUB_LOOP_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* A registered file descriptor. Its callback gets the epoll event bits. Every
 * connection embeds one, so it is 8 bytes: like a timer's, the callback is an index
 * into a process-wide table of the few distinct callbacks (loop_watch_init), and the
 * loop it is registered with is an index into the table of live loops (loop_of), so
 * that what embeds a watch need not also point at its loop. */
struct io_watch {
    int fd;
    uint8_t kind; /* the callback's index (loop.c) */
    uint8_t loop; /* its loop's index, set by loop_watch_add */
};

/* Live loops by index: a slot is taken by loop_create and given back by
 * loop_destroy, so at most LOOP_MAX loops exist at once (workers, the cluster's
 * thread, tests' own). */
#define LOOP_MAX 256u
extern struct loop *loop_table[LOOP_MAX];

/* The loop w was last added or bound to (only valid after loop_watch_add or
 * loop_watch_bind). */
static inline struct loop *loop_of(const struct io_watch *w)
{
    return loop_table[w->loop];
}

#define LOOP_WATCH_KINDS 16u /* distinct watch callbacks in the process */

/* Sets w up for fd and cb (registering cb in the table the first time it is seen):
 * before loop_watch_add. Any thread. */
void loop_watch_init(struct io_watch *w, int fd,
                     void (*cb)(struct loop *loop, struct io_watch *w, uint32_t events));

/* A timer in the wheel. Resolution LOOP_TICK_MS: a timer fires within one tick after
 * its time, never before. Arm, re-arm and cancel are O(1). At most LOOP_TIMER_MAX_MS
 * ahead (longer is clamped).
 *
 * Every connection embeds one, so it is kept to three words: the expiry is a tick
 * count mod 2^32 (compared wrap-aware), and the callback is an index into a process-
 * wide table of the few distinct timer callbacks there are (loop_timer_init registers
 * it), not a pointer. */
struct timer {
    struct timer *next, **pprev; /* pprev == NULL when not armed */
    uint32_t expires;            /* in ticks, mod 2^32 */
    uint8_t kind;                /* the callback's index (loop.c) */
};

#define LOOP_TIMER_MAX_MS (30ull * 24 * 3600 * 1000) /* far below 2^31 ticks */
#define LOOP_TIMER_KINDS  32u                        /* distinct timer callbacks in the process */

/* Whether a timer expiring at tick `expires` (mod 2^32) is due at tick now: right
 * across the wrap, as long as it was armed less than 2^31 ticks ahead. */
static inline bool loop_tick_due(uint32_t expires, uint64_t now)
{
    return (int32_t)(expires - (uint32_t)now) <= 0;
}

/* Work to run once at the end of the current loop turn (before the loop sleeps).
 * Queuing an already-queued task does nothing. A task queued while the end-of-turn
 * tasks run goes to the next turn (which then does not sleep). A task is queued
 * exactly when `next` is set (the last one points at a sentinel): no flag, so the
 * struct is two words, embedded in every connection. */
struct loop_task {
    struct loop_task *next;
    void (*fn)(struct loop *loop, struct loop_task *t);
};

#define LOOP_TICK_MS     8u
#define LOOP_WHEEL_SLOTS 1024u /* one revolution: ~8 s; longer timers go round again */
#define LOOP_RBUF_SIZE   (256u * 1024u)

/* NULL when out of memory or when LOOP_MAX loops exist. */
struct loop *loop_create(void);
void loop_destroy(struct loop *loop);

/* Runs until loop_stop(). */
void loop_run(struct loop *loop);

/* Runs end-of-turn tasks until none is left (used once a loop has stopped, so that
 * connections closed at the very end are freed). */
void loop_drain_tasks(struct loop *loop);
void loop_stop(struct loop *loop);

/* Registers w (set up with loop_watch_init) for `events` (EPOLLIN, EPOLLOUT, ...;
 * EPOLLET is added), and w->loop. Returns 0 or -errno. */
int loop_watch_add(struct loop *loop, struct io_watch *w, uint32_t events);
/* Names loop as w's (loop_of) without registering w: for a descriptor served once
 * before it is added (conn_init_read_first). loop_watch_add binds it too. */
void loop_watch_bind(struct loop *loop, struct io_watch *w);
int loop_watch_mod(struct loop *loop, struct io_watch *w, uint32_t events);
void loop_watch_del(struct loop *loop, struct io_watch *w);

void loop_timer_init(struct timer *t, void (*cb)(struct loop *, struct timer *));
void loop_timer_arm(struct loop *loop, struct timer *t, uint64_t ms);
void loop_timer_cancel(struct loop *loop, struct timer *t);
static inline bool loop_timer_armed(const struct timer *t)
{
    return t->pprev != 0;
}

void loop_task_init(struct loop_task *t, void (*fn)(struct loop *, struct loop_task *));
void loop_defer(struct loop *loop, struct loop_task *t);

/* Thread-safe: runs fn(loop, arg) on the loop's thread at its next turn. Returns 0 or
 * -ENOMEM. */
int loop_post(struct loop *loop, void (*fn)(struct loop *, void *), void *arg);

/* Runs the posts waiting now (what the loop does when woken). For a loop that no longer
 * runs, from the thread that owns it after it stopped: work posted late is not lost. */
void loop_run_posts(struct loop *loop);

/* Monotonic milliseconds, cached at the start of each turn (cheap; good enough for
 * deadlines). loop_now_update refreshes it. */
uint64_t loop_now(const struct loop *loop);
uint64_t loop_now_update(struct loop *loop);

/* The loop's shared receive buffer: every connection of this loop reads into it, so a
 * connection owns no receive buffer of its own. Valid until the caller returns to
 * the loop. */
uint8_t *loop_rbuf(struct loop *loop);

/* Number of timers armed (for tests and stats). */
size_t loop_timer_count(const struct loop *loop);

/* Monotonic clock in milliseconds, uncached. */
uint64_t clock_now_ms(void);

#endif
