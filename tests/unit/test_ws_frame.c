/* Tests for the frame primitives: close code ranges, header encoding at every length
 * encoding boundary, and the word-at-a-time mask against a byte loop at every phase,
 * length and alignment. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "ws/frame.h"

static void test_close_codes(void **st)
{
    (void)st;
    static const struct {
        unsigned code;
        int ok;
    } t[] = {
        {0, 0},    {999, 0},  {1000, 1},  {1001, 1},  {1002, 1},        {1003, 1},
        {1004, 0}, {1005, 0}, {1006, 0},  {1007, 1},  {1008, 1},        {1009, 1},
        {1010, 1}, {1011, 1}, {1012, 1},  {1013, 1},  {1014, 1},        {1015, 0},
        {1016, 0}, {2000, 0}, {2999, 0},  {3000, 1},  {3999, 1},        {4000, 1},
        {4999, 1}, {5000, 0}, {65535, 0}, {65536, 0}, {0xFFFFFFFFu, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (ws_close_code_valid(t[i].code) != t[i].ok) fail_msg("code %u", t[i].code);
}

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void test_header_lengths(void **st)
{
    (void)st;
    static const struct {
        uint64_t len;
        uint8_t len7;
        size_t ext;
    } t[] = {
        {0, 0, 0},
        {1, 1, 0},
        {125, 125, 0},
        {126, 126, 2},
        {127, 126, 2},
        {65535, 126, 2},
        {65536, 127, 8},
        {1ull << 32, 127, 8},
        {(1ull << 63) - 1, 127, 8},
    };
    static const uint8_t key[4] = {0x37, 0xFA, 0x21, 0x3D};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        for (int masked = 0; masked < 2; masked++) {
            uint8_t out[WS_MAX_HEADER + 2];
            memset(out, 0xAA, sizeof out);
            size_t n =
                ws_frame_header(out, WS_OP_BINARY, true, false, t[i].len, masked ? key : NULL);
            assert_int_equal(n, 2 + t[i].ext + (masked ? 4 : 0));
            assert_int_equal(out[0], 0x82);
            assert_int_equal(out[1], (masked ? 0x80 : 0) | t[i].len7);
            if (t[i].ext) assert_true(read_be(out + 2, t[i].ext) == t[i].len);
            if (masked) assert_memory_equal(out + 2 + t[i].ext, key, 4);
            assert_int_equal(out[n], 0xAA); /* nothing written past the header */
        }
    }
}

static void test_header_bits(void **st)
{
    (void)st;
    uint8_t out[WS_MAX_HEADER];
    assert_int_equal(ws_frame_header(out, WS_OP_TEXT, false, false, 5, NULL), 2);
    assert_int_equal(out[0], 0x01);
    assert_int_equal(out[1], 5);
    ws_frame_header(out, WS_OP_TEXT, true, true, 5, NULL);
    assert_int_equal(out[0], 0xC1);
    ws_frame_header(out, WS_OP_CONT, true, false, 0, NULL);
    assert_int_equal(out[0], 0x80);
    ws_frame_header(out, WS_OP_CLOSE, true, false, 2, NULL);
    assert_int_equal(out[0], 0x88);
    ws_frame_header(out, WS_OP_PING, true, false, 0, NULL);
    assert_int_equal(out[0], 0x89);
    ws_frame_header(out, WS_OP_PONG, true, false, 125, NULL);
    assert_int_equal(out[0], 0x8A);
    assert_int_equal(out[1], 125);
}

static void naive_mask(uint8_t *d, size_t n, const uint8_t m[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        d[i] ^= m[(off + i) % 4];
}

static void test_mask_vs_naive(void **st)
{
    (void)st;
    static const uint8_t key[4] = {0x01, 0x80, 0xFE, 0x5A};
    static const uint64_t offsets[] = {0,         1, 2, 3, 4, 5, 6, 7, 1ull << 32, (1ull << 32) + 3,
                                       UINT64_MAX};
    uint8_t a[320 + 16], b[320 + 16], orig[320 + 16];
    for (size_t i = 0; i < sizeof orig; i++)
        orig[i] = (uint8_t)(i * 131 + 7);
    for (size_t len = 0; len <= 300; len++) {
        for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
            for (size_t align = 0; align < 8; align++) {
                memcpy(a, orig, sizeof a);
                memcpy(b, orig, sizeof b);
                ws_mask(a + align, len, key, offsets[o]);
                naive_mask(b + align, len, key, offsets[o]);
                /* Includes the bytes around the range: nothing outside is touched. */
                if (memcmp(a, b, sizeof a) != 0)
                    fail_msg("len %zu offset %zu align %zu", len, o, align);
            }
        }
    }
}

static void test_mask_pieces(void **st)
{
    (void)st;
    static const uint8_t key[4] = {0xDE, 0xAD, 0xBE, 0xEF};
    uint8_t a[1000], b[1000];
    for (size_t i = 0; i < sizeof a; i++)
        a[i] = b[i] = (uint8_t)(i ^ (i >> 3));
    naive_mask(b, sizeof b, key, 0);
    /* Pieces of every length 1..29 in turn: each piece starts at a different phase. */
    size_t pos = 0, k = 1;
    while (pos < sizeof a) {
        size_t n = k < sizeof a - pos ? k : sizeof a - pos;
        ws_mask(a + pos, n, key, pos);
        pos += n;
        k = k % 29 + 1;
    }
    assert_memory_equal(a, b, sizeof a);
    /* Masking is its own inverse. */
    ws_mask(a, sizeof a, key, 0);
    ws_mask(a, sizeof a, key, 0);
    assert_memory_equal(a, b, sizeof a);
    ws_mask(NULL, 0, key, 3); /* allowed: nothing to do */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_codes), cmocka_unit_test(test_header_lengths),
        cmocka_unit_test(test_header_bits), cmocka_unit_test(test_mask_vs_naive),
        cmocka_unit_test(test_mask_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
