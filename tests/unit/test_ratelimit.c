/* Unit tests for the token buckets: a burst and then refusal, refill on a
 * caller-supplied millisecond clock (including rates that give a fraction of a token
 * between calls), the unlimited setting, clocks that jump backwards or far ahead, and
 * parsing of the RATE[/BURST] setting. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/ratelimit.h"

/* How many takes succeed in a row at one instant. */
static unsigned drain(struct rate_bucket *b, const struct rate_limit *l, uint64_t now)
{
    unsigned n = 0;
    while (n < 10000000 && rate_bucket_take(b, l, now))
        n++;
    return n;
}

static void test_burst_then_refuse(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 10, .burst = 20};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 5000);
    assert_int_equal(drain(&b, &l, 5000), 20);
    assert_false(rate_bucket_take(&b, &l, 5000));
    /* 100 ms at 10/s is exactly one token. */
    assert_false(rate_bucket_take(&b, &l, 5099));
    assert_true(rate_bucket_take(&b, &l, 5100));
    assert_false(rate_bucket_take(&b, &l, 5100));
    /* burst 0 means the rate. */
    l = (struct rate_limit){.rate = 5, .burst = 0};
    rate_bucket_init(&b, &l, 0);
    assert_int_equal(drain(&b, &l, 0), 5);
    /* A burst smaller than the rate smooths it. */
    l = (struct rate_limit){.rate = 100, .burst = 2};
    rate_bucket_init(&b, &l, 0);
    assert_int_equal(drain(&b, &l, 0), 2);
    assert_int_equal(drain(&b, &l, 10), 1);
    assert_int_equal(drain(&b, &l, 1000), 2);
}

static void test_fractional_refill(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 1, .burst = 2};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 0);
    assert_int_equal(drain(&b, &l, 0), 2);
    /* 300 ms apart at 1/s: 0.3, 0.6, 0.9 of a token are refused, 1.2 is allowed, and
     * the 0.2 left over is kept for the next one. */
    assert_false(rate_bucket_take(&b, &l, 300));
    assert_false(rate_bucket_take(&b, &l, 600));
    assert_false(rate_bucket_take(&b, &l, 900));
    assert_true(rate_bucket_take(&b, &l, 1200));
    assert_int_equal(b.tokens_milli, 200);
    assert_false(rate_bucket_take(&b, &l, 1500));
    assert_false(rate_bucket_take(&b, &l, 1800));
    assert_true(rate_bucket_take(&b, &l, 2100)); /* 0.2 + 0.9 */
    assert_int_equal(b.tokens_milli, 100);

    /* A bucket of one token cannot hold 1.2: the fourth call fills it and empties it,
     * so the next one is allowed four calls later, not three. */
    l.burst = 1;
    rate_bucket_init(&b, &l, 0);
    assert_true(rate_bucket_take(&b, &l, 0));
    for (uint64_t t = 300; t <= 900; t += 300)
        assert_false(rate_bucket_take(&b, &l, t));
    assert_true(rate_bucket_take(&b, &l, 1200));
    assert_int_equal(b.tokens_milli, 0);
    for (uint64_t t = 1500; t <= 2100; t += 300)
        assert_false(rate_bucket_take(&b, &l, t));
    assert_true(rate_bucket_take(&b, &l, 2400));

    /* Over a long run nothing is lost to rounding: 3/s polled every 7 ms for 100 s
     * gives the 2 of the initial burst plus 299.985 tokens. */
    l = (struct rate_limit){.rate = 3, .burst = 2};
    rate_bucket_init(&b, &l, 0);
    unsigned allowed = 0;
    for (uint64_t t = 0; t <= 100000; t += 7)
        allowed += rate_bucket_take(&b, &l, t);
    assert_int_equal(allowed, 301);
}

static void test_unlimited(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 0, .burst = 0};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 0);
    for (int i = 0; i < 100000; i++)
        assert_true(rate_bucket_take(&b, &l, 0));
    /* A burst alone does not limit anything. */
    l.burst = 3;
    assert_int_equal(drain(&b, &l, 0), 10000000);
}

static void test_clock_backwards(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 10, .burst = 10};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 10000);
    assert_int_equal(drain(&b, &l, 10000), 10);
    /* Back by 5 s: nothing is added (no wrap-around into a huge gap)... */
    assert_false(rate_bucket_take(&b, &l, 5000));
    assert_false(rate_bucket_take(&b, &l, 0));
    /* ...and the bucket follows the new clock from there. */
    assert_true(rate_bucket_take(&b, &l, 100));
    assert_false(rate_bucket_take(&b, &l, 100));
    assert_int_equal(drain(&b, &l, 1100), 10);
    /* Initialised in the future. */
    rate_bucket_init(&b, &l, UINT64_MAX);
    assert_int_equal(drain(&b, &l, 3), 10);
    assert_false(rate_bucket_take(&b, &l, 3));
}

static void test_huge_gap(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 1000000, .burst = 1000000};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 0);
    assert_true(rate_bucket_take(&b, &l, 0));
    /* Any gap at most fills the bucket: elapsed * rate would overflow 64 bits. */
    assert_true(rate_bucket_take(&b, &l, UINT64_MAX));
    assert_int_equal(b.tokens_milli, 1000000u * 1000u - 1000u);
    l = (struct rate_limit){.rate = 7, .burst = 3};
    rate_bucket_init(&b, &l, 0);
    assert_int_equal(drain(&b, &l, 0), 3);
    assert_int_equal(drain(&b, &l, UINT64_MAX / 2), 3);
    assert_int_equal(drain(&b, &l, UINT64_MAX), 3);

    /* Limits beyond what the parser accepts (filled in by hand) are clamped. */
    l = (struct rate_limit){.rate = UINT32_MAX, .burst = UINT32_MAX};
    rate_bucket_init(&b, &l, 0);
    assert_int_equal(b.tokens_milli % 1000, 0);
    assert_true(rate_bucket_take(&b, &l, 0));
    assert_true(rate_bucket_take(&b, &l, UINT64_MAX));
    l = (struct rate_limit){.rate = UINT32_MAX, .burst = 0};
    assert_true(rate_bucket_take(&b, &l, 1));
}

static void test_limits_lowered(void **state)
{
    (void)state;
    struct rate_limit l = {.rate = 100, .burst = 100};
    struct rate_bucket b;
    rate_bucket_init(&b, &l, 0);
    l.burst = 2; /* a reload shrinks the bucket */
    assert_int_equal(drain(&b, &l, 0), 2);
}

static void test_parse(void **state)
{
    (void)state;
    struct rate_limit l;
    assert_int_equal(rate_limit_parse("20", &l), 0);
    assert_int_equal(l.rate, 20);
    assert_int_equal(l.burst, 0);
    assert_int_equal(rate_limit_parse("20/40", &l), 0);
    assert_int_equal(l.rate, 20);
    assert_int_equal(l.burst, 40);
    assert_int_equal(rate_limit_parse("0", &l), 0);
    assert_int_equal(l.rate, 0);
    assert_int_equal(l.burst, 0);
    assert_int_equal(rate_limit_parse("1000000/1000000", &l), 0);
    assert_int_equal(rate_limit_parse("007/1", &l), 0);
    assert_int_equal(l.rate, 7);
    assert_int_equal(l.burst, 1);

    static const char *const bad[] = {
        "",    "/",       "20/",       "/40",         "20/40/60",   "-1",    "+5",   " 20",
        "20 ", "20 / 40", "1.5",       "2e3",         "abc",        "20x",   "0/5",  "20/0",
        "0/0", "1000001", "1/1000001", "99999999999", "4294967296", "20,40", "0x10", "20/-1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = (struct rate_limit){.rate = 123, .burst = 456};
        if (rate_limit_parse(bad[i], &l) != -1) fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(l.rate, 123); /* untouched */
        assert_int_equal(l.burst, 456);
    }
    assert_int_equal(rate_limit_parse(NULL, &l), -1);
    assert_int_equal(rate_limit_parse("5", NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refuse),
        cmocka_unit_test(test_fractional_refill),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_clock_backwards),
        cmocka_unit_test(test_huge_gap),
        cmocka_unit_test(test_limits_lowered),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
