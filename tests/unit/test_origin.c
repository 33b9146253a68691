/* Unit tests for the Origin check (auth/origin.h): origins parsed per RFC 6454 and
 * compared part by part, the tricks of issue 14 (a suffix behind a path or a query),
 * upper case, trailing dots, default ports, punycode and raw UTF-8, schemes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/origin.h"

static char reqbuf[2048];

/* 1 when a request with these Origin and Host values is allowed. origin NULL: no
 * Origin header; a '\n' in origin separates two Origin header lines. */
static int allowed(const char *origin, const char *host, const char *const *allow, bool tls)
{
    int n = snprintf(reqbuf, sizeof reqbuf, "GET /ws HTTP/1.1\r\nHost: %s\r\n", host);
    if (origin) {
        char one[512];
        const char *p = origin;
        for (;;) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            snprintf(one, sizeof one, "%.*s", (int)len, p);
            n += snprintf(reqbuf + n, sizeof reqbuf - (size_t)n, "Origin: %s\r\n", one);
            if (!nl) break;
            p = nl + 1;
        }
    }
    n += snprintf(reqbuf + n, sizeof reqbuf - (size_t)n, "\r\n");
    struct http_request req;
    assert_true(http_parse_request(reqbuf, (size_t)n, &req, NULL) == n);
    return origin_allowed(&req, allow, tls);
}

static const char *const wild[] = {"https://*.example.com", NULL};

static void test_wildcard_tricks_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "https://evil.com/.example.com",
        "https://evil.com?.example.com",
        "https://evil.com#.example.com",
        "https://evil.com\\.example.com",
        "https://evil.com%2f.example.com",
        "https://user@a.example.com",
        "https://evil.com@a.example.com",
        "https://a.example.com/",
        "https://a.example.com/path",
        "https://a.example.com?q",
        "https://a.example.com#f",
        "https://a.example.com.evil.net",
        "https://evilexample.com",
        "https://example.com", /* the apex: not matched by "*." (list it on its own) */
        "https://.example.com",
        "https://a..example.com",
        "https://a.example.com..",
        "http://a.example.com",       /* scheme */
        "wss://a.example.com",        /* scheme */
        "https://a.example.com:8443", /* port */
        "https://a.example.com:",
        "https://a.example.com:0",
        "https://a.example.com:65536",
        "https://a.example.com:443x",
        "https://a.example.com:+443",
        "https://b\xc3\xbc"
        "cher.example.com",                  /* raw UTF-8: browsers send punycode */
        "https://a.example.com\xe3\x80\x82", /* ideographic full stop */
        "https://a b.example.com",
        "https://a.example.com https://b.example.com",
        "https//a.example.com",
        "https:a.example.com",
        "ftp://a.example.com",
        "null",
        "",
        "https://",
        "https://*.example.com",
        "https://a.example.com\nhttps://a.example.com", /* two Origin headers */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (allowed(bad[i], "wshub.local", wild, true)) fail_msg("allowed: %s", bad[i]);
    }
}

static void test_wildcard_matches_hosts(void **state)
{
    (void)state;
    static const char *const good[] = {
        "https://a.example.com",
        "https://a.b.example.com",
        "https://A.EXAMPLE.COM",
        "HTTPS://a.Example.Com",
        "https://a.example.com.", /* the same host, written with the root */
        "https://a.example.com:443",
        "https://a.example.com:00443",
        "https://xn--bcher-kva.example.com", /* punycode, compared as ASCII */
        "https://my_app.example.com",
        "https://1-2.example.com",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!allowed(good[i], "wshub.local", wild, true)) fail_msg("refused: %s", good[i]);
    }
    static const char *const ported[] = {"https://*.example.com:8443", NULL};
    assert_true(allowed("https://a.example.com:8443", "h", ported, true));
    assert_false(allowed("https://a.example.com", "h", ported, true));
    static const char *const apex[] = {"https://*.example.com", "https://example.com", NULL};
    assert_true(allowed("https://example.com", "h", apex, true));
}

static void test_exact_entries(void **state)
{
    (void)state;
    static const char *const list[] = {"https://app.example.com", "http://localhost:3000",
                                       "https://[::1]:8443", "https://XN--BCHER-KVA.example", NULL};
    assert_true(allowed("https://app.example.com", "h", list, false));
    assert_true(allowed("https://APP.example.com:443", "h", list, false));
    assert_true(allowed("https://app.example.com.", "h", list, false));
    assert_false(allowed("https://app.example.com:444", "h", list, false));
    assert_false(allowed("http://app.example.com", "h", list, false));
    assert_false(allowed("https://x.app.example.com", "h", list, false));
    assert_false(allowed("https://app.example.co", "h", list, false));
    assert_true(allowed("http://localhost:3000", "h", list, false));
    assert_false(allowed("http://localhost", "h", list, false));
    assert_true(allowed("https://[::1]:8443", "h", list, false));
    assert_false(allowed("https://[::1]", "h", list, false));
    assert_true(allowed("https://xn--bcher-kva.example", "h", list, false));
    assert_false(allowed("https://b\xc3\xbc"
                         "cher.example",
                         "h", list, false));
}

static void test_same_origin_compares_scheme_host_port(void **state)
{
    (void)state;
    /* Plaintext listener: http:// only. */
    assert_true(allowed("http://127.0.0.1:8080", "127.0.0.1:8080", NULL, false));
    assert_true(allowed("HTTP://127.0.0.1:8080", "127.0.0.1:8080", NULL, false));
    assert_false(allowed("https://127.0.0.1:8080", "127.0.0.1:8080", NULL, false));
    assert_false(allowed("ws://127.0.0.1:8080", "127.0.0.1:8080", NULL, false));
    assert_false(allowed("http://127.0.0.1:8081", "127.0.0.1:8080", NULL, false));
    assert_false(allowed("http://127.0.0.2:8080", "127.0.0.1:8080", NULL, false));
    assert_false(allowed("http://127.0.0.1:8080/", "127.0.0.1:8080", NULL, false));
    assert_true(allowed("http://Chat.Example.com", "chat.example.COM", NULL, false));
    assert_true(allowed("http://chat.example.com:80", "chat.example.com", NULL, false));
    assert_true(allowed("http://chat.example.com", "chat.example.com:80", NULL, false));
    assert_true(allowed("http://chat.example.com.", "chat.example.com", NULL, false));
    assert_true(allowed("http://chat.example.com", "chat.example.com.", NULL, false));
    assert_false(allowed("http://chat.example.com", "chat.example.com:8080", NULL, false));
    assert_true(allowed("http://[::1]:8080", "[::1]:8080", NULL, false));
    assert_false(allowed("http://[::1]:8080", "[::2]:8080", NULL, false));
    assert_false(allowed("http://x", "", NULL, false));
    /* TLS listener: https:// only, default port 443. */
    assert_true(allowed("https://chat.example.com", "chat.example.com", NULL, true));
    assert_true(allowed("https://chat.example.com:443", "chat.example.com", NULL, true));
    assert_true(allowed("https://chat.example.com", "chat.example.com:443", NULL, true));
    assert_false(allowed("http://chat.example.com", "chat.example.com", NULL, true));
    assert_false(allowed("http://chat.example.com:443", "chat.example.com:443", NULL, true));
    assert_false(allowed("https://chat.example.com:8443", "chat.example.com", NULL, true));
    /* Not an origin, whatever the Host says. */
    assert_false(allowed("null", "null", NULL, false));
    assert_false(allowed("http://a/b", "a", NULL, false));
}

static void test_no_origin_and_star(void **state)
{
    (void)state;
    assert_true(allowed(NULL, "h", NULL, false));
    assert_true(allowed(NULL, "h", wild, true));
    static const char *const any[] = {"https://a.example", "*", NULL};
    assert_true(allowed("https://evil.example", "h", any, false));
    assert_true(allowed("null", "h", any, false));
}

static void test_list_check(void **state)
{
    (void)state;
    const char *bad = NULL, *why = NULL;
    static const char *const ok[] = {"*",
                                     "https://app.example.com",
                                     "http://localhost:3000",
                                     "https://*.example.com",
                                     "wss://*.example.com:9000",
                                     "https://[::1]",
                                     "https://example.com.",
                                     NULL};
    assert_int_equal(origin_list_check(ok, &bad, &why), 0);
    assert_int_equal(origin_list_check(NULL, &bad, &why), 0);
    static const char *const bads[] = {
        "app.example.com",
        "https://*example.com",
        "https://a.*.example.com",
        "https://*",
        "https://*.",
        "https://app.example.com/",
        "https://evil.com/.example.com",
        "ftp://example.com",
        "https://b\xc3\xbc"
        "cher.example",
        "https://a.example.com:0",
        "https://a.example.com:99999",
        "https://u@a.example.com",
        "*.example.com",
        "null",
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        const char *one[] = {"https://fine.example", bads[i], NULL};
        bad = why = NULL;
        if (origin_list_check(one, &bad, &why) != -1) fail_msg("accepted entry: %s", bads[i]);
        assert_string_equal(bad, bads[i]);
        assert_non_null(why);
    }
}

static void test_parse_parts(void **state)
{
    (void)state;
    struct origin o;
    const char *s = "HTTPS://Sub.Example.COM.:8443";
    assert_int_equal(origin_parse(s, strlen(s), &o), 0);
    assert_string_equal(o.scheme, "https");
    assert_string_equal(o.host, "sub.example.com");
    assert_int_equal(o.host_len, 15);
    assert_int_equal(o.port, 8443);
    s = "ws://h";
    assert_int_equal(origin_parse(s, strlen(s), &o), 0);
    assert_int_equal(o.port, 80);
    s = "wss://h";
    assert_int_equal(origin_parse(s, strlen(s), &o), 0);
    assert_int_equal(o.port, 443);
    /* Label and name lengths. */
    char big[400];
    memset(big, 'a', sizeof big);
    memcpy(big, "http://", 7);
    assert_int_equal(origin_parse(big, 7 + 63, &o), 0);
    assert_int_equal(origin_parse(big, 7 + 64, &o), -1);
    for (size_t i = 7 + 63; i < sizeof big; i += 64)
        big[i] = '.';
    assert_int_equal(origin_parse(big, 7 + 253, &o), 0);
    assert_int_equal(o.host_len, 253);
    assert_int_equal(origin_parse(big, 7 + 254, &o), -1);
    big[7 + 253] = '.'; /* 253 bytes and the root */
    assert_int_equal(origin_parse(big, 7 + 254, &o), 0);
    assert_int_equal(o.host_len, 253);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcard_tricks_refused),
        cmocka_unit_test(test_wildcard_matches_hosts),
        cmocka_unit_test(test_exact_entries),
        cmocka_unit_test(test_same_origin_compares_scheme_host_port),
        cmocka_unit_test(test_no_origin_and_star),
        cmocka_unit_test(test_list_check),
        cmocka_unit_test(test_parse_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
