/* redis:// URL parsing (cluster/redis_url.h): defaults, credentials with percent
 * escapes, IPv6 literals, database numbers, every refusal, and format() round trips
 * with and without the password redacted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cluster/redis_url.h"

static int parse(const char *s, struct redis_url *u, const char **why)
{
    return redis_url_parse(s, strlen(s), u, why);
}

static void test_defaults(void **state)
{
    (void)state;
    struct redis_url u;
    const char *why;
    assert_int_equal(parse("redis://localhost", &u, &why), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_false(u.has_password);
    assert_false(u.ipv6);
    assert_int_equal(parse("REDIS://10.0.0.7:6380/", &u, &why), 0);
    assert_string_equal(u.host, "10.0.0.7");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 0);
    assert_int_equal(parse("redis://cache-1.internal_x:1/15", &u, &why), 0);
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 15);
}

static void test_credentials(void **state)
{
    (void)state;
    struct redis_url u;
    const char *why;
    assert_int_equal(parse("redis://:s3cret@h:7000/2", &u, &why), 0);
    assert_true(u.has_password);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_int_equal(u.db, 2);
    assert_int_equal(parse("redis://app%40eu:p%3Aa%2Fss%25w%40rd%20@h", &u, &why), 0);
    assert_string_equal(u.user, "app@eu");
    assert_string_equal(u.password, "p:a/ss%w@rd ");
    /* Non-ASCII bytes pass through as they are. */
    assert_int_equal(parse("redis://u:\xc3\xa9t\xc3\xa9@h", &u, &why), 0);
    assert_string_equal(u.password, "\xc3\xa9t\xc3\xa9");
}

static void test_ipv6(void **state)
{
    (void)state;
    struct redis_url u;
    const char *why;
    assert_int_equal(parse("redis://[::1]", &u, &why), 0);
    assert_true(u.ipv6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(parse("redis://:pw@[2001:db8::2]:6390/3", &u, &why), 0);
    assert_string_equal(u.host, "2001:db8::2");
    assert_int_equal(u.port, 6390);
    assert_int_equal(u.db, 3);
    assert_int_equal(parse("redis://[::ffff:127.0.0.1]:1", &u, &why), 0);
}

static void test_refusals(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "redis:/h",
        "http://h:6379",
        "rediss://h:6379",
        "redis://",
        "redis://:6379",
        "redis://h:",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:123456",
        "redis://h:+1",
        "redis://h:6379/16",
        "redis://h/01",
        "redis://h/-1",
        "redis://h/1/2",
        "redis://h/x",
        "redis://h?db=1",
        "redis://h#x",
        "redis://user@h",
        "redis://:@h",
        "redis://a:b@c@h",
        "redis://a:b%4@h",
        "redis://a:b%zz@h",
        "redis://a:b%00c@h",
        "redis://a:b c@h",
        "redis://a:b[@h",
        "redis://h st",
        "redis://h%41",
        "redis://[::1",
        "redis://[::1]x",
        "redis://[zz::1]",
        "redis://[fe80::1%25eth0]",
        "redis://[]",
        "redis://::1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct redis_url u;
        const char *why = NULL;
        if (parse(bad[i], &u, &why) == 0) fail_msg("accepted: %s", bad[i]);
        assert_non_null(why);
    }
    /* A NUL inside the given length is refused, not truncated. */
    struct redis_url u;
    const char *why;
    assert_int_equal(redis_url_parse("redis://h\0x", 11, &u, &why), -1);
    /* The reason names the problem. */
    parse("rediss://h", &u, &why);
    assert_non_null(strstr(why, "not supported"));
    char longhost[300] = "redis://";
    memset(longhost + 8, 'a', 254);
    assert_int_equal(parse(longhost, &u, &why), -1);
    char longpw[600] = "redis://:";
    memset(longpw + 9, 'p', 256);
    strcat(longpw, "@h");
    assert_int_equal(parse(longpw, &u, &why), -1);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    static const char *const urls[] = {"redis://h", "redis://app%40eu:p%3Aa%2Fss%25w@[::1]:7/9",
                                       "redis://:x%20y@127.0.0.1:6380/1"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        struct redis_url u, again;
        const char *why;
        char buf[1024];
        assert_int_equal(parse(urls[i], &u, &why), 0);
        int n = redis_url_format(&u, false, buf, sizeof buf);
        assert_true(n > 0);
        assert_int_equal(redis_url_parse(buf, (size_t)n, &again, &why), 0);
        assert_true(redis_url_equal(&u, &again));
    }
    struct redis_url u;
    const char *why;
    char buf[256];
    assert_int_equal(parse("redis://me:hunter2@h:1/2", &u, &why), 0);
    assert_true(redis_url_format(&u, true, buf, sizeof buf) > 0);
    assert_string_equal(buf, "redis://me:***@h:1/2");
    assert_null(strstr(buf, "hunter2"));
    assert_int_equal(redis_url_format(&u, false, buf, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_format_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
