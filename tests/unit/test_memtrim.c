/* Unit tests for the memory-return decision (base/memtrim.h): when a trim is due, and
 * that one fall of the load gives one trim. The act itself (malloc_trim) is measured
 * by tests/integration/test_memory_return.py against the real server. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/memtrim.h"

#define MiB (1024u * 1024u)

/* Feeds one check a second from t (ms), returns the time of the first "due", or 0. */
static uint64_t first_due(struct memtrim *m, uint64_t *t, uint64_t load, uint64_t rss, int secs)
{
    for (int i = 0; i < secs; i++) {
        *t += 1000;
        if (memtrim_check(m, *t, load, rss)) return *t;
    }
    return 0;
}

static void test_trim_after_the_load_is_gone_and_quiet(void **state)
{
    (void)state;
    struct memtrim m;
    uint64_t t = 0;
    memtrim_init(&m, t, 0, 10 * MiB);
    /* Rising: never due. */
    for (uint64_t load = 1000; load <= 100000; load += 1000)
        assert_int_equal(first_due(&m, &t, load, 120 * MiB, 1), 0);
    assert_int_equal(m.peak, 100000);
    /* Gone: due once MEMTRIM_QUIET_MS has passed since the load last moved (the fall
     * itself, one check after the last rise), not before. */
    uint64_t rose = t + 1000;
    uint64_t due = first_due(&m, &t, 0, 120 * MiB, 10);
    assert_true(due != 0);
    assert_true(due - rose >= MEMTRIM_QUIET_MS);
    assert_true(due - rose <= MEMTRIM_QUIET_MS);
    memtrim_done(&m, 0, 12 * MiB);
    assert_int_equal(m.trims, 1);
    /* Once per fall: staying empty gives no second trim. */
    assert_int_equal(first_due(&m, &t, 0, 12 * MiB, 30), 0);
}

static void test_not_while_the_load_is_still_there(void **state)
{
    (void)state;
    struct memtrim m;
    uint64_t t = 0;
    memtrim_init(&m, t, 0, 10 * MiB);
    assert_int_equal(first_due(&m, &t, 10000, 200 * MiB, 3), 0);
    /* Down to 60% of the peak: more than half still there. */
    assert_int_equal(first_due(&m, &t, 6000, 200 * MiB, 20), 0);
    /* A small server's churn (a few dozen connections) never triggers by count... */
    memtrim_init(&m, t, 0, 10 * MiB);
    assert_int_equal(first_due(&m, &t, 100, 11 * MiB, 2), 0);
    assert_int_equal(first_due(&m, &t, 10, 11 * MiB, 20), 0);
    /* ...but does when the memory it leaves behind is large (big queues, big messages). */
    assert_int_equal(first_due(&m, &t, 100, 80 * MiB, 2), 0);
    assert_true(first_due(&m, &t, 10, 80 * MiB, 20) != 0);
}

static void test_a_new_wave_restarts_the_quiet_period(void **state)
{
    (void)state;
    struct memtrim m;
    uint64_t t = 0;
    memtrim_init(&m, t, 0, 10 * MiB);
    assert_int_equal(first_due(&m, &t, 50000, 100 * MiB, 1), 0);
    assert_int_equal(first_due(&m, &t, 1000, 100 * MiB, 2), 0);
    uint64_t rose = t + 1000;
    assert_int_equal(first_due(&m, &t, 20000, 100 * MiB, 1), 0); /* a new wave */
    uint64_t due = first_due(&m, &t, 20000, 100 * MiB, 10);
    assert_true(due - rose >= MEMTRIM_QUIET_MS);
}

static void test_not_during_a_teardown(void **state)
{
    (void)state;
    struct memtrim m;
    uint64_t t = 0;
    memtrim_init(&m, t, 0, 10 * MiB);
    assert_int_equal(first_due(&m, &t, 80000, 150 * MiB, 10), 0);
    /* Falling by a tenth of the peak each second: not due until it stops. */
    for (uint64_t load = 72000; load >= 8000; load -= 8000)
        assert_int_equal(first_due(&m, &t, load, 150 * MiB, 1), 0);
    uint64_t settled = t;
    uint64_t due = first_due(&m, &t, 8000, 150 * MiB, 10);
    assert_int_equal(due - settled, MEMTRIM_QUIET_MS);
    /* Steady churn (small moves) does not hold a trim back. */
    memtrim_init(&m, t, 0, 10 * MiB);
    assert_int_equal(first_due(&m, &t, 10000, 150 * MiB, 1), 0);
    assert_int_equal(first_due(&m, &t, 4000, 150 * MiB, 1), 0);
    uint64_t fell = t;
    for (int i = 0; i < 10; i++) {
        due = first_due(&m, &t, i % 2 ? 3900 : 3800, 150 * MiB, 1);
        if (due) break;
    }
    assert_true(due != 0);
    assert_true(due - fell <= MEMTRIM_QUIET_MS + 1000);
}

static void test_checks_are_rate_limited(void **state)
{
    (void)state;
    struct memtrim m;
    memtrim_init(&m, 0, 0, 0);
    assert_false(memtrim_check(&m, 999, 0, 0));
    assert_int_equal(m.last_check_ms, 0);
    assert_false(memtrim_check(&m, 1000, 0, 0));
    assert_int_equal(m.last_check_ms, 1000);
}

static void test_rss_and_run(void **state)
{
    (void)state;
    uint64_t rss = memtrim_rss();
    assert_true(rss > 0);
    uint64_t us = 12345;
    assert_true(memtrim_run(&us) > 0);
    assert_true(us < 10u * 1000 * 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim_after_the_load_is_gone_and_quiet),
        cmocka_unit_test(test_not_while_the_load_is_still_there),
        cmocka_unit_test(test_a_new_wave_restarts_the_quiet_period),
        cmocka_unit_test(test_not_during_a_teardown),
        cmocka_unit_test(test_checks_are_rate_limited),
        cmocka_unit_test(test_rss_and_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
