/* Event loop: the timing wheel (never early, at most a tick or so late, O(1) cancel
 * and re-arm, timers longer than one revolution, re-arm from inside a callback),
 * end-of-turn tasks, posts from another thread, and the table of live loops by which a
 * watch names its loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop/loop.h"

struct probe {
    struct timer t;
    uint64_t armed_at, fired_at, want_ms;
    int fired;
    struct loop *loop;
};

static int pending;

static void probe_cb(struct loop *loop, struct timer *t)
{
    struct probe *p = (struct probe *)t;
    p->fired++;
    p->fired_at = loop_now(loop);
    if (--pending == 0) loop_stop(loop);
}

static void stop_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    loop_stop(loop);
}

static void test_timers_fire_in_order_never_early(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    assert_non_null(loop);
    static const uint64_t delays[] = {0, 1, 5, 8, 9, 30, 77, 120, 250};
    enum { N = sizeof delays / sizeof delays[0] };
    struct probe p[N];
    pending = N;
    uint64_t start = loop_now_update(loop);
    for (int i = 0; i < N; i++) {
        loop_timer_init(&p[i].t, probe_cb);
        p[i].fired = 0;
        p[i].want_ms = delays[i];
        p[i].armed_at = start;
        loop_timer_arm(loop, &p[i].t, delays[i]);
    }
    assert_int_equal(loop_timer_count(loop), N);
    loop_run(loop);
    for (int i = 0; i < N; i++) {
        assert_int_equal(p[i].fired, 1);
        assert_true(p[i].fired_at >= p[i].armed_at + p[i].want_ms);
        /* generous upper bound: a loaded CI machine may be slow to schedule us */
        assert_true(p[i].fired_at <= p[i].armed_at + p[i].want_ms + 200);
        if (i) assert_true(p[i].fired_at >= p[i - 1].fired_at);
    }
    assert_int_equal(loop_timer_count(loop), 0);
    loop_destroy(loop);
}

static void test_cancel_and_rearm(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct probe a, b;
    struct timer stop;
    loop_timer_init(&a.t, probe_cb);
    loop_timer_init(&b.t, probe_cb);
    loop_timer_init(&stop, stop_cb);
    a.fired = b.fired = 0;
    pending = 100; /* never reaches 0: the stop timer ends the run */
    loop_now_update(loop);
    loop_timer_arm(loop, &a.t, 10);
    loop_timer_arm(loop, &b.t, 10);
    assert_true(loop_timer_armed(&a.t));
    loop_timer_cancel(loop, &a.t);
    assert_false(loop_timer_armed(&a.t));
    loop_timer_cancel(loop, &a.t);  /* idempotent */
    loop_timer_arm(loop, &b.t, 60); /* re-arm moves it */
    loop_timer_arm(loop, &stop, 40);
    assert_int_equal(loop_timer_count(loop), 2);
    loop_run(loop);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 0); /* moved past the stop */
    assert_true(loop_timer_armed(&b.t));
    loop_timer_cancel(loop, &b.t);
    assert_int_equal(loop_timer_count(loop), 0);
    loop_destroy(loop);
}

/* A timer more than one revolution away stays in its slot until due. */
static void test_long_timer(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct probe p;
    loop_timer_init(&p.t, probe_cb);
    p.fired = 0;
    pending = 1;
    uint64_t start = loop_now_update(loop);
    uint64_t ms = LOOP_TICK_MS * LOOP_WHEEL_SLOTS + 300; /* ~8.5 s */
    loop_timer_arm(loop, &p.t, ms);
    loop_run(loop);
    assert_int_equal(p.fired, 1);
    assert_true(p.fired_at >= start + ms);
    assert_true(p.fired_at <= start + ms + 300);
    loop_destroy(loop);
}

struct rearm {
    struct timer t;
    int count;
};

static void rearm_cb(struct loop *loop, struct timer *t)
{
    struct rearm *r = (struct rearm *)t;
    if (++r->count == 5)
        loop_stop(loop);
    else
        loop_timer_arm(loop, t, 0); /* re-arm into the slot being run */
}

static void test_rearm_from_callback(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct rearm r = {.count = 0};
    loop_timer_init(&r.t, rearm_cb);
    loop_timer_arm(loop, &r.t, 0);
    loop_run(loop);
    assert_int_equal(r.count, 5); /* each re-arm ran on a later tick, not in a loop */
    loop_destroy(loop);
}

static int task_runs;
static void task_fn(struct loop *loop, struct loop_task *t)
{
    (void)t;
    if (++task_runs == 2)
        loop_stop(loop);
    else
        loop_defer(loop, t); /* re-queued from inside: runs next turn */
}

static void test_tasks(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct loop_task t;
    loop_task_init(&t, task_fn);
    task_runs = 0;
    loop_defer(loop, &t);
    loop_defer(loop, &t); /* already queued: once */
    loop_run(loop);
    assert_int_equal(task_runs, 2);
    loop_destroy(loop);
}

struct post_arg {
    struct loop *loop;
    int n;
};

static void posted(struct loop *loop, void *arg)
{
    struct post_arg *a = arg;
    if (++a->n == 1000) loop_stop(loop);
}

static void *poster(void *arg)
{
    struct post_arg *a = arg;
    for (int i = 0; i < 1000; i++)
        loop_post(a->loop, posted, a);
    return NULL;
}

/* Expiries are kept as ticks mod 2^32: after ~397 days of uptime the count wraps, and
 * a timer armed just before must still be due only at its time. */
static void test_tick_wrap(void **state)
{
    (void)state;
    uint64_t base = (1ull << 32) - 3; /* three ticks before the wrap */
    uint32_t exp = (uint32_t)(base + 10);
    assert_false(loop_tick_due(exp, base));
    assert_false(loop_tick_due(exp, base + 9));
    assert_true(loop_tick_due(exp, base + 10));
    assert_true(loop_tick_due(exp, base + 11));
    assert_true(loop_tick_due((uint32_t)base, base + 1000)); /* late: still due */
    /* The farthest a timer is armed (clamped): not due a tick before. */
    uint64_t far = LOOP_TIMER_MAX_MS / LOOP_TICK_MS;
    assert_false(loop_tick_due((uint32_t)(base + far), base + far - 1));
    assert_true(loop_tick_due((uint32_t)(base + far), base + far));
}

/* Many distinct callbacks share the table of kinds; each timer still runs its own. */
static int kind_hits[3];
static void kind_cb0(struct loop *l, struct timer *t)
{
    (void)t;
    kind_hits[0]++;
    if (--pending == 0) loop_stop(l);
}
static void kind_cb1(struct loop *l, struct timer *t)
{
    (void)t;
    kind_hits[1]++;
    if (--pending == 0) loop_stop(l);
}
static void kind_cb2(struct loop *l, struct timer *t)
{
    (void)t;
    kind_hits[2]++;
    if (--pending == 0) loop_stop(l);
}

static void test_timer_kinds(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct timer t[6];
    void (*cbs[3])(struct loop *, struct timer *) = {kind_cb0, kind_cb1, kind_cb2};
    pending = 6;
    for (int i = 0; i < 6; i++) {
        loop_timer_init(&t[i], cbs[i % 3]);
        loop_timer_arm(loop, &t[i], (uint64_t)(i + 1) * 10);
    }
    loop_run(loop);
    assert_int_equal(kind_hits[0], 2);
    assert_int_equal(kind_hits[1], 2);
    assert_int_equal(kind_hits[2], 2);
    loop_destroy(loop);
}

static void watch_cb(struct loop *loop, struct io_watch *w, uint32_t events)
{
    (void)loop;
    (void)w;
    (void)events;
}

/* A watch names its loop by index (what a connection uses instead of a pointer):
 * right for every live loop, at most LOOP_MAX of them, and a slot given back is taken
 * again. */
static void test_loop_table(void **state)
{
    (void)state;
    static struct loop *loops[LOOP_MAX + 1];
    static struct io_watch w[LOOP_MAX];
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    unsigned n = 0;
    while (n <= LOOP_MAX && (loops[n] = loop_create()))
        n++;
    assert_int_equal(n, LOOP_MAX); /* no other loop is alive in this test */
    for (unsigned i = 0; i < n; i++) {
        loop_watch_init(&w[i], fds[0], watch_cb);
        assert_int_equal(loop_watch_add(loops[i], &w[i], 1u /* EPOLLIN */), 0);
        assert_ptr_equal(loop_of(&w[i]), loops[i]);
    }
    loop_destroy(loops[7]);
    loops[7] = loop_create();
    assert_non_null(loops[7]);
    assert_null(loop_create()); /* full again */
    loop_watch_init(&w[7], fds[0], watch_cb);
    assert_int_equal(loop_watch_add(loops[7], &w[7], 1u), 0);
    assert_ptr_equal(loop_of(&w[7]), loops[7]);
    assert_ptr_equal(loop_of(&w[8]), loops[8]);
    for (unsigned i = 0; i < n; i++)
        loop_destroy(loops[i]);
    close(fds[0]);
    close(fds[1]);
}

static void test_post_from_thread(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    struct post_arg a = {.loop = loop, .n = 0};
    pthread_t th;
    pthread_create(&th, NULL, poster, &a);
    loop_run(loop);
    pthread_join(th, NULL);
    assert_int_equal(a.n, 1000);
    loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order_never_early),
        cmocka_unit_test(test_cancel_and_rearm),
        cmocka_unit_test(test_long_timer),
        cmocka_unit_test(test_rearm_from_callback),
        cmocka_unit_test(test_tasks),
        cmocka_unit_test(test_post_from_thread),
        cmocka_unit_test(test_tick_wrap),
        cmocka_unit_test(test_timer_kinds),
        cmocka_unit_test(test_loop_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
