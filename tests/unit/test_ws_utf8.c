/* Tests for the incremental UTF-8 validator: every RFC 3629 boundary, rejection at the
 * first bad byte, state carried across arbitrary splits, the word-at-a-time ASCII path
 * at every alignment, and agreement with a deliberately naive decoder on random input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ws/utf8.h"

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* Reference: decode code point by code point, the way the RFC reads. Returns 1 for
 * valid complete input, 0 for invalid, 2 when the input is a valid but truncated
 * prefix (its last sequence could still complete). */
static int ref_check(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t k;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            k = 1, cp = b & 0x1Fu, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            k = 2, cp = b & 0x0Fu, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            k = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            return 0;
        }
        size_t have = n - i - 1 < k ? n - i - 1 : k;
        for (size_t j = 1; j <= have; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3Fu);
        }
        if (have < k) {
            /* Truncated: does some tail make it valid? The constraints are intervals on
             * the code point, so the smallest and largest completions decide, except
             * for the surrogate hole, which sits strictly inside the E-lead range. */
            uint32_t lo = cp, hi = cp;
            for (size_t j = have; j < k; j++)
                lo = lo << 6, hi = hi << 6 | 0x3F;
            if (hi < min || lo > 0x10FFFF) return 0;
            if (lo >= 0xD800 && hi <= 0xDFFF) return 0;
            return 2;
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

static uint64_t rng_state;
static uint32_t rnd(void)
{
    /* xorshift64*: deterministic across platforms, so failures reproduce. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static size_t encode(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Feeds p one byte at a time and returns the index of the byte that produced REJECT,
 * or n when none did; also checks REJECT is sticky once reached. */
static size_t reject_pos(const uint8_t *p, size_t n)
{
    uint32_t s = WS_UTF8_ACCEPT;
    size_t at = n;
    for (size_t i = 0; i < n; i++) {
        s = ws_utf8_feed(s, p + i, 1);
        if (s == WS_UTF8_REJECT && at == n) at = i;
        if (at != n) assert_int_equal(s, WS_UTF8_REJECT);
    }
    return at;
}

static void test_valid_boundaries(void **st)
{
    (void)st;
    static const struct {
        const char *s;
        size_t n;
    } ok[] = {
        {"\x00", 1},
        {"\x7F", 1},
        {"\xC2\x80", 2},         /* U+0080 */
        {"\xDF\xBF", 2},         /* U+07FF */
        {"\xE0\xA0\x80", 3},     /* U+0800 */
        {"\xED\x9F\xBF", 3},     /* U+D7FF, just below the surrogates */
        {"\xEE\x80\x80", 3},     /* U+E000, just above */
        {"\xEF\xBF\xBF", 3},     /* U+FFFF */
        {"\xEF\xBF\xBE", 3},     /* U+FFFE: a noncharacter, but valid UTF-8 */
        {"\xF0\x90\x80\x80", 4}, /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 4}, /* U+10FFFF */
        {"\xF1\x80\x80\x80", 4},
        {"\xF3\xBF\xBF\xBF", 4},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const uint8_t *p = (const uint8_t *)ok[i].s;
        assert_int_equal(ws_utf8_valid(p, ok[i].n), 1);
        assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, p, ok[i].n), WS_UTF8_ACCEPT);
        assert_int_equal(ref_check(p, ok[i].n), 1);
    }
    /* Every code point, encoded by the test's own encoder. */
    uint8_t b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        size_t n = encode(b, cp);
        if (ws_utf8_feed(WS_UTF8_ACCEPT, b, n) != WS_UTF8_ACCEPT) fail_msg("U+%04X", cp);
    }
    for (uint32_t cp = 0xD800; cp <= 0xDFFF; cp++) {
        size_t n = encode(b, cp);
        assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, b, n), WS_UTF8_REJECT);
    }
}

static void test_invalid_first_bad_byte(void **st)
{
    (void)st;
    /* Each case with the index of the first byte at which no completion is possible. */
    static const struct {
        const char *s;
        size_t n, at;
    } bad[] = {
        {"\xC0\x80", 2, 0},                 /* overlong U+0000 */
        {"\xC1\xBF", 2, 0},                 /* overlong U+007F */
        {"\xE0\x80\x80", 3, 1},             /* overlong U+0000 */
        {"\xE0\x9F\xBF", 3, 1},             /* overlong U+07FF */
        {"\xF0\x80\x80\x80", 4, 1},         /* overlong U+0000 */
        {"\xF0\x8F\xBF\xBF", 4, 1},         /* overlong U+FFFF */
        {"\xED\xA0\x80", 3, 1},             /* U+D800 */
        {"\xED\xBF\xBF", 3, 1},             /* U+DFFF */
        {"\xED\xAF\xBF\xED\xB0\x80", 6, 1}, /* CESU-style surrogate pair */
        {"\xF4\x90\x80\x80", 4, 1},         /* U+110000 */
        {"\xF4\xBF\xBF\xBF", 4, 1},
        {"\xF5\x80\x80\x80", 4, 0},
        {"\xF7\xBF\xBF\xBF", 4, 0},
        {"\xF8\x88\x80\x80\x80", 5, 0},
        {"\xFC\x84\x80\x80\x80\x80", 6, 0},
        {"\xFE", 1, 0},
        {"\xFF", 1, 0},
        {"\x80", 1, 0}, /* stray continuations */
        {"\xBF", 1, 0},
        {"a\x80", 2, 1},
        {"\xC2\x80\x80", 3, 2},
        {"\xC2\x41", 2, 1}, /* lead followed by ASCII */
        {"\xE1\x80\x41", 3, 2},
        {"\xF1\x80\x80\xC2", 4, 3},
        {"\xC2\xC2", 2, 1},
        {"\xEF\xBF\xBF\xBF", 4, 3},
        {"abcdefghijklmnopqrstuvwxyz\xC0", 27, 26},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const uint8_t *p = (const uint8_t *)bad[i].s;
        assert_int_equal(ws_utf8_valid(p, bad[i].n), 0);
        assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, p, bad[i].n), WS_UTF8_REJECT);
        assert_int_equal(ref_check(p, bad[i].n), 0);
        if (reject_pos(p, bad[i].n) != bad[i].at)
            fail_msg("case %zu rejected at %zu, want %zu", i, reject_pos(p, bad[i].n), bad[i].at);
    }
}

static void test_truncated(void **st)
{
    (void)st;
    static const struct {
        const char *s;
        size_t n;
    } cut[] = {
        {"\xC2", 1},         {"\xDF", 1},         {"\xE0", 1},        {"\xE0\xA0", 2},
        {"\xED\x9F", 2},     {"\xEF\xBF", 2},     {"\xF0", 1},        {"\xF0\x90", 2},
        {"\xF0\x90\x80", 3}, {"\xF4\x8F\xBF", 3}, {"abc\xE2\x82", 5},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        const uint8_t *p = (const uint8_t *)cut[i].s;
        uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, p, cut[i].n);
        assert_int_not_equal(s, WS_UTF8_ACCEPT);
        assert_int_not_equal(s, WS_UTF8_REJECT);
        assert_int_equal(ws_utf8_valid(p, cut[i].n), 0);
        assert_int_equal(ref_check(p, cut[i].n), 2);
    }
    /* A truncated state followed by something that is not a continuation. */
    uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, S("\xE2\x82"));
    assert_int_equal(ws_utf8_feed(s, S("a")), WS_UTF8_REJECT);
    s = ws_utf8_feed(WS_UTF8_ACCEPT, S("\xE2\x82"));
    assert_int_equal(ws_utf8_feed(s, S("\xAC")), WS_UTF8_ACCEPT);
}

static void test_sticky_reject_and_empty(void **st)
{
    (void)st;
    assert_int_equal(ws_utf8_feed(WS_UTF8_REJECT, S("hello")), WS_UTF8_REJECT);
    assert_int_equal(ws_utf8_feed(WS_UTF8_REJECT, NULL, 0), WS_UTF8_REJECT);
    assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, NULL, 0), WS_UTF8_ACCEPT);
    assert_int_equal(ws_utf8_valid(NULL, 0), 1);
    uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, S("\xF0\x90"));
    assert_int_equal(ws_utf8_feed(s, NULL, 0), s);
    /* A value the validator never produces must not be trusted as a table index. */
    assert_int_equal(ws_utf8_feed(0xFFFFFFFFu, S("a")), WS_UTF8_REJECT);
    assert_int_equal(ws_utf8_feed(1000u, S("a")), WS_UTF8_REJECT);
}

/* "κόσμε", the Autobahn 6.x sample, and a long mix of 1-4 byte code points. */
static const uint8_t kosme[] = {0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5};
static const char mixed[] = "ASCII text, \xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5 and more "
                            "\xE2\x82\xAC\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF\xC2\x80\xDF\xBF"
                            "\xEF\xBF\xBF\xF0\x90\x80\x80 long ASCII run to hit the word path "
                            "0123456789abcdef0123456789abcdef\xE0\xA0\x80!";

static void check_splits(const uint8_t *p, size_t n)
{
    for (size_t a = 0; a <= n; a++) {
        uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, p, a);
        assert_int_not_equal(s, WS_UTF8_REJECT);
        assert_int_equal(ws_utf8_feed(s, p + a, n - a), WS_UTF8_ACCEPT);
        for (size_t b = a; b <= n; b++) {
            uint32_t t = ws_utf8_feed(s, p + a, b - a);
            assert_int_not_equal(t, WS_UTF8_REJECT);
            assert_int_equal(ws_utf8_feed(t, p + b, n - b), WS_UTF8_ACCEPT);
        }
    }
}

static void test_split_everywhere(void **st)
{
    (void)st;
    check_splits(kosme, sizeof kosme);
    check_splits((const uint8_t *)mixed, sizeof mixed - 1);
    static const char *const each[] = {"\xC2\x80",        "\xDF\xBF",     "\xE0\xA0\x80",
                                       "\xEF\xBF\xBF",    "\xED\x9F\xBF", "\xF0\x90\x80\x80",
                                       "\xF4\x8F\xBF\xBF"};
    for (size_t i = 0; i < sizeof each / sizeof each[0]; i++)
        check_splits((const uint8_t *)each[i], strlen(each[i]));
}

static void test_autobahn_6(void **st)
{
    (void)st;
    assert_int_equal(ws_utf8_valid(kosme, sizeof kosme), 1);
    /* 6.3.x: valid text then a surrogate then more text; rejected at the surrogate's
     * second byte whatever follows. */
    uint8_t b[64];
    memcpy(b, kosme, sizeof kosme);
    memcpy(b + sizeof kosme,
           "\xED\xA0\x80"
           "edited",
           9);
    assert_int_equal(ws_utf8_valid(b, sizeof kosme + 9), 0);
    assert_int_equal(reject_pos(b, sizeof kosme + 9), sizeof kosme + 1);
    /* 6.4.x: fail fast in pieces, the invalid byte being the first of a later piece. */
    uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, kosme, sizeof kosme);
    assert_int_equal(s, WS_UTF8_ACCEPT);
    s = ws_utf8_feed(s, S("\xF4\x90"));
    assert_int_equal(s, WS_UTF8_REJECT);
}

/* The word loops at every alignment and length: a bad byte (or a multi-byte sequence)
 * placed at each offset of a long ASCII run. */
static void test_fast_path_positions(void **st)
{
    (void)st;
    uint8_t buf[80];
    for (size_t len = 0; len <= 70; len++) {
        for (size_t base = 0; base < 8; base++) {
            memset(buf, 'x', sizeof buf);
            assert_int_equal(ws_utf8_valid(buf + base, len), 1);
            for (size_t at = 0; at < len; at++) {
                memset(buf, 'x', sizeof buf);
                buf[base + at] = 0xFF;
                assert_int_equal(ws_utf8_valid(buf + base, len), 0);
                buf[base + at] = 0x80;
                assert_int_equal(ws_utf8_valid(buf + base, len), 0);
                if (at + 2 <= len) {
                    memcpy(buf + base + at, "\xC3\xA9", 2);
                    assert_int_equal(ws_utf8_valid(buf + base, len), 1);
                }
                if (at + 4 <= len) {
                    memcpy(buf + base + at, "\xF0\x9F\x98\x80", 4);
                    assert_int_equal(ws_utf8_valid(buf + base, len), 1);
                    /* ... and split inside the sequence. */
                    uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, buf + base, at + 2);
                    assert_int_equal(ws_utf8_feed(s, buf + base + at + 2, len - at - 2),
                                     WS_UTF8_ACCEPT);
                }
            }
        }
    }
}

static size_t random_input(uint8_t *b, size_t cap)
{
    size_t n = 0, want = rnd() % cap;
    while (n + 4 <= want) {
        uint32_t kind = rnd() % 16;
        if (kind < 6) {
            b[n++] = (uint8_t)(rnd() % 0x80);
        } else if (kind < 12) {
            uint32_t cp;
            switch (rnd() % 4) {
            case 0:
                cp = 0x80 + rnd() % 0x780;
                break;
            case 1:
                cp = 0x800 + rnd() % 0xF800;
                break;
            case 2:
                cp = 0x10000 + rnd() % 0x100000;
                break;
            default: { /* near the edges */
                static const uint32_t e[] = {0x7F,   0x80,   0x7FF,   0x800,   0xD7FF,
                                             0xE000, 0xFFFF, 0x10000, 0x10FFFF};
                cp = e[rnd() % 9];
            }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF && rnd() % 2) cp = 0xE000;
            n += encode(b + n, cp);
        } else if (kind < 14) {
            b[n++] = (uint8_t)rnd(); /* any byte */
        } else if (n > 0) {
            b[rnd() % n] = (uint8_t)(0x80 | rnd()); /* corrupt an earlier byte */
        }
    }
    return n;
}

static void test_random_vs_reference(void **st)
{
    (void)st;
    rng_state = 0x9E3779B97F4A7C15ull;
    uint8_t b[512];
    int valid = 0, invalid = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = random_input(b, iter % 4 ? 48 : sizeof b);
        int want = ref_check(b, n);
        uint32_t whole = ws_utf8_feed(WS_UTF8_ACCEPT, b, n);
        if (want == 1) {
            valid++;
            assert_int_equal(whole, WS_UTF8_ACCEPT);
        } else if (want == 0) {
            invalid++;
            assert_int_equal(whole, WS_UTF8_REJECT);
        } else {
            assert_true(whole != WS_UTF8_ACCEPT && whole != WS_UTF8_REJECT);
        }
        /* Same verdict in random pieces. */
        uint32_t s = WS_UTF8_ACCEPT;
        for (size_t i = 0; i < n;) {
            size_t k = rnd() % 20;
            if (k > n - i) k = n - i;
            s = ws_utf8_feed(s, b + i, k);
            i += k;
        }
        assert_int_equal(s, whole);
        /* Fail fast: every prefix rejected exactly when no completion exists. */
        if (n <= 48) {
            uint32_t t = WS_UTF8_ACCEPT;
            for (size_t i = 0; i < n; i++) {
                t = ws_utf8_feed(t, b + i, 1);
                int r = ref_check(b, i + 1);
                if ((t == WS_UTF8_REJECT) != (r == 0)) fail_msg("iter %d prefix %zu", iter, i);
                assert_int_equal(t == WS_UTF8_ACCEPT, r == 1);
            }
        }
    }
    /* The generator must exercise both sides. */
    assert_true(valid > 1000);
    assert_true(invalid > 1000);
}

/* Every 1-, 2- and 3-byte input against the reference, fed whole and bytewise. */
static void test_exhaustive_short(void **st)
{
    (void)st;
    uint8_t b[3];
    for (uint32_t v = 0; v < (1u << 24); v += (v < (1u << 16) ? 1 : 7)) {
        b[0] = (uint8_t)(v >> 16), b[1] = (uint8_t)(v >> 8), b[2] = (uint8_t)v;
        for (size_t n = 1; n <= 3; n++) {
            int want = ref_check(b, n);
            uint32_t s = ws_utf8_feed(WS_UTF8_ACCEPT, b, n);
            assert_int_equal(s == WS_UTF8_ACCEPT, want == 1);
            assert_int_equal(s == WS_UTF8_REJECT, want == 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_boundaries),    cmocka_unit_test(test_invalid_first_bad_byte),
        cmocka_unit_test(test_truncated),           cmocka_unit_test(test_sticky_reject_and_empty),
        cmocka_unit_test(test_split_everywhere),    cmocka_unit_test(test_autobahn_6),
        cmocka_unit_test(test_fast_path_positions), cmocka_unit_test(test_random_vs_reference),
        cmocka_unit_test(test_exhaustive_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
