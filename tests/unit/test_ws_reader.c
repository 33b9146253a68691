/* Tests for the incremental frame reader. Frames are built here from the RFC, masked
 * with a known key, and fed in every split the socket could produce: every cut point,
 * every pair of cut points on a smaller stream, one byte at a time, random chunks. Each
 * protocol error is checked for its close code and for the byte at which it is
 * reported (fail fast), and for the reader ignoring everything afterwards. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ws/reader.h"
#include "ws/utf8.h"

#define FIN  0x80u
#define RSV1 0x40u
#define RSV2 0x20u
#define RSV3 0x10u

static const uint8_t key[4] = {0xA5, 0x3C, 0x0F, 0x96};

/* Builds one frame: b0 is FIN|RSV|opcode; enc forces the length encoding (0 minimal,
 * 2 or 8 bytes of extended length) so non-minimal forms can be sent too. */
static size_t frame_enc(uint8_t *out, unsigned b0, const void *payload, size_t n, int masked,
                        int enc)
{
    size_t h = 0;
    out[h++] = (uint8_t)b0;
    uint8_t m = masked ? 0x80 : 0;
    if (enc == 0) enc = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
    if (enc == 0) {
        out[h++] = (uint8_t)(m | n);
    } else if (enc == 2) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = m | 127;
        for (int k = 7; k >= 0; k--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    if (masked) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    if (n) memcpy(out + h, payload, n);
    if (masked)
        for (size_t i = 0; i < n; i++)
            out[h + i] ^= key[i % 4];
    return h + n;
}

static size_t frame(uint8_t *out, unsigned b0, const void *payload, size_t n)
{
    return frame_enc(out, b0, payload, n, 1, 0);
}

static size_t frame_s(uint8_t *out, unsigned b0, const char *s)
{
    return frame(out, b0, s, strlen(s));
}

/* A close frame payload: code, then reason. */
static size_t close_frame(uint8_t *out, unsigned code, const char *reason, size_t rlen)
{
    uint8_t p[WS_MAX_CONTROL + 8];
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rlen);
    return frame(out, FIN | WS_OP_CLOSE, p, 2 + rlen);
}

/* ---- recording callbacks ---- */

struct ev {
    char kind; /* 'M' message, 'C' control */
    unsigned op;
    bool rsv1;
    unsigned code;
    size_t len;
    uint8_t *data; /* copy */
    long off;      /* offset in the fed buffer when delivered in place, else -1 */
};

struct rec {
    struct ev ev[64];
    int n;
    int stop_at;            /* callback number (1-based) that returns -5; 0 never */
    const uint8_t *lo, *hi; /* the buffer of the current feed call */
    int in_feed_ptr;        /* the last event's data was inside [lo, hi) */
    const struct ws_reader *r;
};

static void rec_init(struct rec *rc)
{
    memset(rc, 0, sizeof *rc);
}

static void rec_free(struct rec *rc)
{
    for (int i = 0; i < rc->n; i++)
        free(rc->ev[i].data);
    rc->n = 0;
}

static int record(struct rec *rc, char kind, unsigned op, bool rsv1, unsigned code,
                  const uint8_t *d, size_t len)
{
    assert_true(rc->n < 64);
    assert_non_null(d); /* even an empty payload gets a valid pointer */
    struct ev *e = &rc->ev[rc->n++];
    e->kind = kind;
    e->op = op;
    e->rsv1 = rsv1;
    e->code = code;
    e->len = len;
    e->data = malloc(len ? len : 1);
    assert_non_null(e->data);
    memcpy(e->data, d, len);
    uintptr_t a = (uintptr_t)d, lo = (uintptr_t)rc->lo, hi = (uintptr_t)rc->hi;
    rc->in_feed_ptr = a >= lo && a + len <= hi;
    e->off = rc->in_feed_ptr ? (long)(a - lo) : -1;
    return rc->n == rc->stop_at ? -5 : 0;
}

static int on_message(void *ud, enum ws_opcode op, bool rsv1, uint8_t *d, size_t len)
{
    struct rec *rc = ud;
    if (op == WS_OP_TEXT && !rsv1) assert_true(ws_utf8_valid(d, len));
    /* The callee may modify the data in place. */
    if (len) d[0] ^= 0xFF, d[0] ^= 0xFF;
    return record(rc, 'M', op, rsv1, 0, d, len);
}

static int on_control(void *ud, enum ws_opcode op, unsigned code, uint8_t *d, size_t len)
{
    struct rec *rc = ud;
    assert_true(len <= WS_MAX_CONTROL);
    if (op == WS_OP_CLOSE) {
        assert_true(ws_utf8_valid(d, len));
        assert_int_equal(ws_reader_busy(rc->r), 0);
    } else {
        assert_int_equal(code, 0);
    }
    return record(rc, 'C', op, false, code, d, len);
}

static const struct ws_reader_callbacks cbs = {on_message, on_control};

/* Feeds a copy of p[0..n) (the reader writes into its input) in one call. */
static int feed(struct ws_reader *r, struct rec *rc, const void *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    if (n) memcpy(b, p, n);
    rc->lo = b;
    rc->hi = b + n;
    rc->r = r;
    int ret = ws_reader_feed(r, b, n, &cbs, rc);
    free(b);
    return ret;
}

/* Feeds stream[0..n) cut at cuts[0..ncuts) (ascending), in one buffer so pointers of
 * zero-copy deliveries can be checked. Returns the first non-zero result and checks
 * that after it nothing is delivered and every later call returns 0. */
static int feed_cuts(struct ws_reader *r, struct rec *rc, const uint8_t *stream, size_t n,
                     const size_t *cuts, size_t ncuts)
{
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    if (n) memcpy(b, stream, n);
    int first = 0, n_at_err = 0;
    size_t pos = 0;
    rc->r = r;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        rc->lo = b + pos;
        rc->hi = b + end;
        int ret = ws_reader_feed(r, b + pos, end - pos, &cbs, rc);
        if (first) {
            assert_int_equal(ret, 0);
            assert_int_equal(rc->n, n_at_err);
        } else if (ret) {
            first = ret;
            n_at_err = rc->n;
        }
        pos = end;
    }
    free(b);
    return first;
}

static int feed_bytewise(struct ws_reader *r, struct rec *rc, const uint8_t *p, size_t n)
{
    size_t *cuts = malloc(n * sizeof *cuts + 1);
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < n; i++)
        cuts[i] = i + 1;
    int ret = feed_cuts(r, rc, p, n, cuts, n ? n - 1 : 0);
    free(cuts);
    return ret;
}

/* Expected events. */
struct xev {
    char kind;
    unsigned op;
    bool rsv1;
    unsigned code;
    const void *data;
    size_t len;
};

static void check_events(const struct rec *rc, const struct xev *x, int nx)
{
    assert_int_equal(rc->n, nx);
    for (int i = 0; i < nx; i++) {
        const struct ev *e = &rc->ev[i];
        if (e->kind != x[i].kind || e->op != x[i].op || e->rsv1 != x[i].rsv1 ||
            e->code != x[i].code || e->len != x[i].len ||
            (x[i].len && memcmp(e->data, x[i].data, x[i].len) != 0))
            fail_msg("event %d: got %c op %u code %u len %zu", i, e->kind, e->op, e->code, e->len);
    }
}

/* ---- a stream covering every kind of frame ---- */

static uint8_t big[300];
static uint8_t stream[2048];
static size_t stream_len;
static struct xev stream_ev[16];
static int stream_nev;

static void build_stream(void)
{
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 1);
    size_t n = 0;
    int e = 0;
    n += frame_s(stream + n, FIN | WS_OP_TEXT, "Hello");
    stream_ev[e++] = (struct xev){'M', WS_OP_TEXT, false, 0, "Hello", 5};
    n += frame(stream + n, FIN | WS_OP_BINARY, big, sizeof big); /* 16-bit length */
    stream_ev[e++] = (struct xev){'M', WS_OP_BINARY, false, 0, big, sizeof big};
    n += frame_s(stream + n, FIN | WS_OP_PING, "p");
    stream_ev[e++] = (struct xev){'C', WS_OP_PING, false, 0, "p", 1};
    /* Fragmented text with a 2-byte character split between fragments and a ping and
     * an empty pong in the middle, and an empty fragment. */
    n += frame_s(stream + n, WS_OP_TEXT, "k\xCE");
    n += frame_s(stream + n, FIN | WS_OP_PING, "mid");
    stream_ev[e++] = (struct xev){'C', WS_OP_PING, false, 0, "mid", 3};
    n += frame_s(stream + n, WS_OP_CONT, "");
    n += frame_s(stream + n, FIN | WS_OP_PONG, "");
    stream_ev[e++] = (struct xev){'C', WS_OP_PONG, false, 0, "", 0};
    n += frame_s(stream + n, FIN | WS_OP_CONT, "\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5");
    stream_ev[e++] = (struct xev){
        'M', WS_OP_TEXT, false, 0, "k\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 12};
    n += frame_s(stream + n, FIN | WS_OP_TEXT, ""); /* empty message */
    stream_ev[e++] = (struct xev){'M', WS_OP_TEXT, false, 0, "", 0};
    n += frame(stream + n, WS_OP_BINARY, big, 130);
    n += frame(stream + n, FIN | WS_OP_CONT, big + 130, 170);
    stream_ev[e++] = (struct xev){'M', WS_OP_BINARY, false, 0, big, sizeof big};
    n += frame_enc(stream + n, FIN | WS_OP_BINARY, "xy", 2, 1, 8); /* non-minimal length */
    stream_ev[e++] = (struct xev){'M', WS_OP_BINARY, false, 0, "xy", 2};
    n += close_frame(stream + n, 1000, "bye", 3);
    stream_ev[e++] = (struct xev){'C', WS_OP_CLOSE, false, 1000, "bye", 3};
    /* Everything after the close is ignored, even garbage. */
    n += frame_s(stream + n, FIN | WS_OP_TEXT, "ignored");
    stream[n++] = 0xFF;
    stream_len = n;
    stream_nev = e;
}

static int setup(void **st)
{
    (void)st;
    build_stream();
    return 0;
}

static void test_stream_whole(void **st)
{
    (void)st;
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed_cuts(&r, &rc, stream, stream_len, NULL, 0), 0);
    check_events(&rc, stream_ev, stream_nev);
    assert_int_equal(ws_reader_busy(&r), 0);
    assert_null(r.buf);
    assert_null(r.ctl);
    /* Closed: more input is ignored. */
    assert_int_equal(feed(&r, &rc, stream, stream_len), 0);
    assert_int_equal(rc.n, stream_nev);
    rec_free(&rc);
    ws_reader_free(&r);
}

static void test_stream_every_split(void **st)
{
    (void)st;
    for (size_t cut = 0; cut <= stream_len; cut++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed_cuts(&r, &rc, stream, stream_len, &cut, 1), 0);
        check_events(&rc, stream_ev, stream_nev);
        assert_null(r.buf);
        rec_free(&rc);
        ws_reader_free(&r);
    }
}

static void test_stream_bytewise_and_random(void **st)
{
    (void)st;
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed_bytewise(&r, &rc, stream, stream_len), 0);
    check_events(&rc, stream_ev, stream_nev);
    rec_free(&rc);
    ws_reader_free(&r);

    uint32_t seed = 12345;
    for (int iter = 0; iter < 300; iter++) {
        size_t cuts[2048], nc = 0, pos = 0;
        for (;;) {
            seed = seed * 1103515245u + 12345u;
            pos += 1 + (seed >> 16) % (iter % 3 == 0 ? 4 : 40);
            if (pos >= stream_len) break;
            cuts[nc++] = pos;
        }
        ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed_cuts(&r, &rc, stream, stream_len, cuts, nc), 0);
        check_events(&rc, stream_ev, stream_nev);
        rec_free(&rc);
        ws_reader_free(&r);
    }
}

/* Every pair of cut points over a stream of small frames of each kind. */
static void test_small_stream_three_way(void **st)
{
    (void)st;
    uint8_t s[256];
    size_t n = 0;
    n += frame_s(s + n, FIN | WS_OP_TEXT, "\xF0\x9F\x98\x80!");
    n += frame_s(s + n, WS_OP_BINARY, "ab");
    n += frame_s(s + n, FIN | WS_OP_PING, "");
    n += frame_s(s + n, FIN | WS_OP_CONT, "cd");
    n += frame_enc(s + n, FIN | WS_OP_TEXT, "\xE2\x82\xAC", 3, 1, 2);
    n += close_frame(s + n, 4000, "\xC3\xA9", 2);
    const struct xev x[] = {
        {'M', WS_OP_TEXT, false, 0, "\xF0\x9F\x98\x80!", 5},
        {'C', WS_OP_PING, false, 0, "", 0},
        {'M', WS_OP_BINARY, false, 0, "abcd", 4},
        {'M', WS_OP_TEXT, false, 0, "\xE2\x82\xAC", 3},
        {'C', WS_OP_CLOSE, false, 4000, "\xC3\xA9", 2},
    };
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            struct ws_reader r;
            struct rec rc;
            size_t cuts[2] = {a, b};
            ws_reader_init(&r, 100, WS_READER_SERVER);
            rec_init(&rc);
            assert_int_equal(feed_cuts(&r, &rc, s, n, cuts, 2), 0);
            check_events(&rc, x, 5);
            assert_null(r.buf);
            assert_null(r.ctl);
            rec_free(&rc);
            ws_reader_free(&r);
        }
    }
}

static void test_large_message_chunks(void **st)
{
    (void)st;
    size_t plen = 70000; /* 64-bit length encoding */
    uint8_t *p = malloc(plen), *f = malloc(plen + 64);
    assert_non_null(p);
    assert_non_null(f);
    for (size_t i = 0; i < plen; i++)
        p[i] = (uint8_t)('a' + i % 26);
    size_t n = frame(f, FIN | WS_OP_TEXT, p, plen);
    const struct xev x[] = {{'M', WS_OP_TEXT, false, 0, p, plen}};
    static const size_t chunk[] = {1, 7, 1000, 4096, 65536, 69999};
    for (size_t c = 0; c < sizeof chunk / sizeof chunk[0]; c++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
        rec_init(&rc);
        for (size_t pos = 0; pos < n; pos += chunk[c]) {
            size_t k = n - pos < chunk[c] ? n - pos : chunk[c];
            assert_int_equal(feed(&r, &rc, f + pos, k), 0);
            /* Never more than the declared size is allocated. */
            assert_true(r.buf_cap <= plen);
            if (pos + k < n) assert_true(ws_reader_busy(&r));
        }
        check_events(&rc, x, 1);
        assert_null(r.buf); /* freed once delivered: idle connections hold no heap */
        assert_int_equal(ws_reader_busy(&r), 0);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    free(p);
    free(f);
}

static void test_zero_copy(void **st)
{
    (void)st;
    uint8_t f[64];
    size_t n = frame_s(f, FIN | WS_OP_TEXT, "in place please");
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed_cuts(&r, &rc, f, n, NULL, 0), 0);
    assert_int_equal(rc.n, 1);
    assert_true(rc.in_feed_ptr);
    assert_null(r.buf);
    /* Header in one call, the whole payload in the next: still in place. */
    size_t cut = 6;
    assert_int_equal(feed_cuts(&r, &rc, f, n, &cut, 1), 0);
    assert_int_equal(rc.n, 2);
    assert_true(rc.in_feed_ptr);
    assert_null(r.buf);
    /* Payload split: gathered, so the pointer is the reader's. */
    cut = 10;
    assert_int_equal(feed_cuts(&r, &rc, f, n, &cut, 1), 0);
    assert_int_equal(rc.n, 3);
    assert_false(rc.in_feed_ptr);
    assert_memory_equal(rc.ev[2].data, "in place please", 15);
    /* Binary, and two messages in one call: both in place. */
    uint8_t g[128];
    size_t m = frame_s(g, FIN | WS_OP_BINARY, "one");
    m += frame_s(g + m, FIN | WS_OP_BINARY, "two");
    assert_int_equal(feed_cuts(&r, &rc, g, m, NULL, 0), 0);
    assert_int_equal(rc.n, 5);
    assert_true(rc.in_feed_ptr);
    assert_int_equal(rc.ev[3].off, 6);
    assert_int_equal(rc.ev[4].off, 6 + 3 + 6);
    rec_free(&rc);
    ws_reader_free(&r);
}

/* ---- protocol errors ---- */

/* Feeds f[0..n) byte by byte and returns the result, checking that the error (if any)
 * is reported by the call carrying byte `at` and no earlier or later one. */
static void expect_error_at(uint32_t flags, uint64_t max, const uint8_t *f, size_t n, int code,
                            size_t at)
{
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, max, flags);
    rec_init(&rc);
    for (size_t i = 0; i < n; i++) {
        int ret = feed(&r, &rc, f + i, 1);
        if (i == at) {
            if (ret != code) fail_msg("byte %zu: got %d want %d", i, ret, code);
            assert_null(r.buf);
            assert_null(r.ctl);
            assert_int_equal(ws_reader_busy(&r), 0);
        } else {
            if (ret != 0) fail_msg("byte %zu: got %d, want the error at %zu", i, ret, at);
        }
    }
    rec_free(&rc);
    ws_reader_free(&r);
    /* And the same verdict fed whole. */
    ws_reader_init(&r, max, flags);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, n), code);
    if (code) assert_int_equal(feed(&r, &rc, f, n), 0); /* ignores further input */
    rec_free(&rc);
    ws_reader_free(&r);
}

static void test_errors_1002_header(void **st)
{
    (void)st;
    uint8_t f[64];
    size_t n;
    /* Unmasked frame in server mode: known from byte 1. */
    n = frame_enc(f, FIN | WS_OP_TEXT, "hi", 2, 0, 0);
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    /* Masked frame in client mode. */
    n = frame_s(f, FIN | WS_OP_TEXT, "hi");
    expect_error_at(WS_READER_CLIENT, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    /* RSV bits. */
    static const unsigned rsv[] = {RSV1, RSV2, RSV3, RSV1 | RSV2, RSV2 | RSV3};
    for (size_t i = 0; i < sizeof rsv / sizeof rsv[0]; i++) {
        n = frame_s(f, FIN | rsv[i] | WS_OP_TEXT, "hi");
        expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
        if (rsv[i] != RSV1) expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    }
    /* Reserved opcodes. */
    static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        n = frame_s(f, FIN | ops[i], "x");
        expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    }
    /* Fragmented control frames, oversized control frames (even when the declared
     * length uses the 16-bit form). */
    n = frame_s(f, WS_OP_PING, "x");
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    n = frame_s(f, WS_OP_CLOSE, "");
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    uint8_t big_ping[200], pp[126];
    memset(pp, 'p', sizeof pp);
    n = frame(big_ping, FIN | WS_OP_PING, pp, sizeof pp);
    expect_error_at(WS_READER_SERVER, 1000, big_ping, n, WS_CLOSE_PROTOCOL, 1);
    n = frame_enc(big_ping, FIN | WS_OP_PONG, "x", 1, 1, 2);
    expect_error_at(WS_READER_SERVER, 1000, big_ping, n, WS_CLOSE_PROTOCOL, 1);
    /* Continuation with nothing to continue. */
    n = frame_s(f, FIN | WS_OP_CONT, "x");
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    /* A new data frame inside a fragmented message: the error is on its header. */
    n = frame_s(f, WS_OP_TEXT, "a");
    size_t m = frame_s(f + n, FIN | WS_OP_BINARY, "b");
    expect_error_at(WS_READER_SERVER, 100, f, n + m, WS_CLOSE_PROTOCOL, n + 1);
    n = frame_s(f, WS_OP_BINARY, "a");
    m = frame_s(f + n, WS_OP_TEXT, "b");
    expect_error_at(WS_READER_SERVER, 100, f, n + m, WS_CLOSE_PROTOCOL, n + 1);
    /* Continuation after the message was finished. */
    n = frame_s(f, FIN | WS_OP_TEXT, "a");
    m = frame_s(f + n, FIN | WS_OP_CONT, "b");
    expect_error_at(WS_READER_SERVER, 100, f, n + m, WS_CLOSE_PROTOCOL, n + 1);
}

static void test_length_top_bit(void **st)
{
    (void)st;
    /* 2^63: refused from the 10 length bytes, before the mask or any payload. */
    uint8_t f[14] = {FIN | WS_OP_BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    expect_error_at(WS_READER_SERVER, UINT64_MAX, f, sizeof f, WS_CLOSE_PROTOCOL, 9);
    f[2] = 0xFF; /* 2^64 - 1 */
    expect_error_at(WS_READER_SERVER, UINT64_MAX, f, sizeof f, WS_CLOSE_PROTOCOL, 9);
    /* 2^63 - 1 with a small limit: too big, also nothing allocated. */
    memset(f + 2, 0xFF, 8);
    f[2] = 0x7F;
    expect_error_at(WS_READER_SERVER, 1 << 20, f, sizeof f, WS_CLOSE_TOO_BIG, 9);
    /* 2^63 - 1 with no limit: accepted, and a trickle of payload allocates only what
     * has arrived (rounded up), not what was declared. */
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, UINT64_MAX, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, sizeof f), 0);
    assert_null(r.buf);
    assert_true(ws_reader_busy(&r));
    uint8_t chunk[100] = {0};
    assert_int_equal(feed(&r, &rc, chunk, sizeof chunk), 0);
    assert_non_null(r.buf);
    assert_true(r.buf_cap >= 100 && r.buf_cap <= 4096);
    assert_int_equal(rc.n, 0);
    ws_reader_free(&r);
    assert_null(r.buf);
    rec_free(&rc);
}

static void test_too_big(void **st)
{
    (void)st;
    uint8_t f[4096];
    uint8_t p[2048];
    memset(p, 'x', sizeof p);
    /* 64-bit length: 1009 as soon as the 10 header bytes (no mask key) are in. */
    size_t n = frame_enc(f, FIN | WS_OP_BINARY, p, 1001, 1, 8);
    expect_error_at(WS_READER_SERVER, 1000, f, n, WS_CLOSE_TOO_BIG, 9);
    {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 1000, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed(&r, &rc, f, 9), 0);
        assert_int_equal(feed(&r, &rc, f + 9, 1), WS_CLOSE_TOO_BIG);
        assert_null(r.buf);
        ws_reader_free(&r);
        ws_reader_init(&r, 1000, WS_READER_SERVER);
        assert_int_equal(feed(&r, &rc, f, 10), WS_CLOSE_TOO_BIG);
        assert_null(r.buf);
        ws_reader_free(&r);
        rec_free(&rc);
    }
    /* 16-bit length: from the 4th byte. */
    n = frame(f, FIN | WS_OP_BINARY, p, 1001);
    expect_error_at(WS_READER_SERVER, 1000, f, n, WS_CLOSE_TOO_BIG, 3);
    /* 7-bit length with a tiny limit. */
    n = frame(f, FIN | WS_OP_TEXT, p, 11);
    expect_error_at(WS_READER_SERVER, 10, f, n, WS_CLOSE_TOO_BIG, 1);
    /* Exactly the limit is fine. */
    n = frame(f, FIN | WS_OP_TEXT, p, 10);
    expect_error_at(WS_READER_SERVER, 10, f, n, 0, SIZE_MAX);
    /* Summed over fragments: refused at the header of the fragment that crosses the
     * limit, before its payload is gathered. */
    n = frame(f, WS_OP_BINARY, p, 600);
    size_t m = frame(f + n, WS_OP_CONT, p, 400);
    size_t k = frame(f + n + m, FIN | WS_OP_CONT, p, 1);
    expect_error_at(WS_READER_SERVER, 1000, f, n + m + k, WS_CLOSE_TOO_BIG, n + m + 1);
    expect_error_at(WS_READER_SERVER, 1001, f, n + m + k, 0, SIZE_MAX);
    /* Control frames do not count toward the message. */
    n = frame(f, WS_OP_BINARY, p, 10);
    n += frame(f + n, FIN | WS_OP_PING, p, 100);
    n += frame(f + n, FIN | WS_OP_CONT, p, 0);
    expect_error_at(WS_READER_SERVER, 10, f, n, 0, SIZE_MAX);
}

static void test_utf8_fail_fast(void **st)
{
    (void)st;
    uint8_t p[100], f[200];
    memset(p, 'a', sizeof p);
    p[10] = 0xFF;
    size_t n = frame(f, FIN | WS_OP_TEXT, p, sizeof p); /* header 2 + 4 */
    /* The call that delivers payload byte 10 reports it, 89 bytes before the frame ends. */
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, 6 + 10), 0);
    assert_int_equal(feed(&r, &rc, f + 16, 1), WS_CLOSE_BAD_DATA);
    assert_null(r.buf);
    assert_int_equal(feed(&r, &rc, f + 17, n - 17), 0);
    assert_int_equal(rc.n, 0);
    ws_reader_free(&r);
    rec_free(&rc);
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n, WS_CLOSE_BAD_DATA, 16);

    /* Invalid across a fragment boundary: the first fragment ends in a lead byte, the
     * next begins with a non-continuation. Reported on that byte. */
    n = frame_s(f, WS_OP_TEXT, "ok\xE2\x82");
    size_t m = frame_s(f + n, FIN | WS_OP_CONT, "xyz");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n + m, WS_CLOSE_BAD_DATA, n + 6);
    /* Overlong and surrogate inside a single frame. */
    n = frame_s(f, FIN | WS_OP_TEXT, "ab\xC0\x80");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n, WS_CLOSE_BAD_DATA, 6 + 2);
    n = frame_s(f, FIN | WS_OP_TEXT, "\xED\xA0\x80");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n, WS_CLOSE_BAD_DATA, 6 + 1);
    /* Binary is not validated. */
    n = frame_s(f, FIN | WS_OP_BINARY, "\xFF\xFE");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n, 0, SIZE_MAX);
}

static void test_utf8_ends_mid_sequence(void **st)
{
    (void)st;
    uint8_t f[200];
    /* Single frame ending inside a character: the frame's last byte reports it. */
    size_t n = frame_s(f, FIN | WS_OP_TEXT, "a\xE2\x82");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n, WS_CLOSE_BAD_DATA, n - 1);
    /* Split character completed by the next fragment: fine. */
    n = frame_s(f, WS_OP_TEXT, "\xE2\x82");
    size_t m = frame_s(f + n, FIN | WS_OP_CONT, "\xAC");
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 1 << 20, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, n + m), 0);
    const struct xev x[] = {{'M', WS_OP_TEXT, false, 0, "\xE2\x82\xAC", 3}};
    check_events(&rc, x, 1);
    rec_free(&rc);
    ws_reader_free(&r);
    /* ... but an empty final fragment leaves it incomplete: reported on its header. */
    m = frame_s(f + n, FIN | WS_OP_CONT, "");
    expect_error_at(WS_READER_SERVER, 1 << 20, f, n + m, WS_CLOSE_BAD_DATA, n + m - 1);
}

static void test_close_frames(void **st)
{
    (void)st;
    uint8_t f[256];
    struct ws_reader r;
    struct rec rc;
    /* Empty: 1005. */
    size_t n = frame_s(f, FIN | WS_OP_CLOSE, "");
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, n), 0);
    const struct xev x1005[] = {{'C', WS_OP_CLOSE, false, WS_CLOSE_NO_STATUS, "", 0}};
    check_events(&rc, x1005, 1);
    assert_int_equal(ws_reader_busy(&r), 0);
    /* Ignored after the close: a ping, and garbage. */
    n = frame_s(f, FIN | WS_OP_PING, "x");
    assert_int_equal(feed(&r, &rc, f, n), 0);
    assert_int_equal(feed(&r, &rc, "\xFF\xFF\xFF", 3), 0);
    assert_int_equal(rc.n, 1);
    rec_free(&rc);
    ws_reader_free(&r);

    /* Code and a maximal reason, split across calls (gathered in r->ctl). */
    char reason[124];
    memset(reason, 'r', 123);
    n = close_frame(f, 4999, reason, 123);
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, 50), 0);
    assert_non_null(r.ctl);
    assert_true(ws_reader_busy(&r));
    assert_int_equal(feed(&r, &rc, f + 50, n - 50), 0);
    const struct xev xr[] = {{'C', WS_OP_CLOSE, false, 4999, reason, 123}};
    check_events(&rc, xr, 1);
    assert_null(r.ctl);
    rec_free(&rc);
    ws_reader_free(&r);

    /* One byte: 1002, on that byte. */
    n = frame_s(f, FIN | WS_OP_CLOSE, "\x03");
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, n - 1);
    /* Codes not allowed on the wire. */
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = close_frame(f, bad[i], "", 0);
        expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, n - 1);
    }
    static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        n = close_frame(f, good[i], "ok", 2);
        ws_reader_init(&r, 100, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed(&r, &rc, f, n), 0);
        const struct xev x[] = {{'C', WS_OP_CLOSE, false, good[i], "ok", 2}};
        check_events(&rc, x, 1);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    /* Reason not UTF-8: 1007. */
    n = close_frame(f, 1000, "\xC0\xAF", 2);
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_BAD_DATA, n - 1);
    n = close_frame(f, 1000, "ab\xE2\x82", 4); /* truncated character */
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_BAD_DATA, n - 1);

    /* A close in the middle of a fragmented message: delivered, partial message
     * dropped with its buffer. */
    n = frame_s(f, WS_OP_TEXT, "partial");
    n += close_frame(f + n, 1001, "", 0);
    n += frame_s(f + n, FIN | WS_OP_CONT, "rest");
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, n), 0);
    const struct xev xc[] = {{'C', WS_OP_CLOSE, false, 1001, "", 0}};
    check_events(&rc, xc, 1);
    assert_null(r.buf);
    assert_int_equal(ws_reader_busy(&r), 0);
    rec_free(&rc);
    ws_reader_free(&r);
}

static void test_fragmented_with_pings(void **st)
{
    (void)st;
    uint8_t f[512];
    size_t n = 0;
    n += frame_s(f + n, WS_OP_BINARY, "frag1-");
    n += frame_s(f + n, FIN | WS_OP_PING, "ping1");
    n += frame_s(f + n, WS_OP_CONT, "frag2-");
    n += frame_s(f + n, FIN | WS_OP_PONG, "pong1");
    n += frame_s(f + n, FIN | WS_OP_PING, "ping2");
    n += frame_s(f + n, FIN | WS_OP_CONT, "frag3");
    const struct xev x[] = {
        {'C', WS_OP_PING, false, 0, "ping1", 5},
        {'C', WS_OP_PONG, false, 0, "pong1", 5},
        {'C', WS_OP_PING, false, 0, "ping2", 5},
        {'M', WS_OP_BINARY, false, 0, "frag1-frag2-frag3", 17},
    };
    for (size_t cut = 0; cut <= n; cut++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 100, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed_cuts(&r, &rc, f, n, &cut, 1), 0);
        check_events(&rc, x, 4);
        /* A non-final fragment allocates no more than the limit allows. */
        assert_null(r.buf);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    /* Busy while the message is open, even between frames. */
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    size_t first = frame_s(f, WS_OP_BINARY, "frag1-");
    assert_int_equal(ws_reader_busy(&r), 0);
    assert_int_equal(feed(&r, &rc, f, first), 0);
    assert_true(ws_reader_busy(&r));
    assert_non_null(r.buf);
    assert_true(r.buf_cap <= 100);
    assert_int_equal(feed(&r, &rc, f + first, n - first), 0);
    assert_int_equal(ws_reader_busy(&r), 0);
    rec_free(&rc);
    ws_reader_free(&r);
}

static void test_split_control_frame(void **st)
{
    (void)st;
    uint8_t f[64];
    size_t n = frame_s(f, FIN | WS_OP_PING, "hello");
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, 8), 0);
    assert_non_null(r.ctl);
    assert_int_equal(feed(&r, &rc, f + 8, n - 8), 0);
    const struct xev x[] = {{'C', WS_OP_PING, false, 0, "hello", 5}};
    check_events(&rc, x, 1);
    assert_null(r.ctl);
    assert_int_equal(ws_reader_busy(&r), 0);
    rec_free(&rc);
    ws_reader_free(&r);
    /* A whole control payload in one call (header split off) needs no buffer. */
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, 3), 0);
    assert_null(r.ctl);
    assert_int_equal(feed(&r, &rc, f + 3, n - 3), 0);
    check_events(&rc, x, 1);
    rec_free(&rc);
    ws_reader_free(&r);
}

static void test_client_mode(void **st)
{
    (void)st;
    uint8_t f[256];
    size_t n = 0;
    n += frame_enc(f + n, FIN | WS_OP_TEXT, "srv", 3, 0, 0);
    n += frame_enc(f + n, WS_OP_BINARY, "a", 1, 0, 0);
    n += frame_enc(f + n, FIN | WS_OP_PING, "p", 1, 0, 0);
    n += frame_enc(f + n, FIN | WS_OP_CONT, "b", 1, 0, 0);
    n += frame_enc(f + n, FIN | WS_OP_CLOSE, "\x03\xE8", 2, 0, 0);
    const struct xev x[] = {
        {'M', WS_OP_TEXT, false, 0, "srv", 3},
        {'C', WS_OP_PING, false, 0, "p", 1},
        {'M', WS_OP_BINARY, false, 0, "ab", 2},
        {'C', WS_OP_CLOSE, false, 1000, "", 0},
    };
    for (size_t cut = 0; cut <= n; cut++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 100, WS_READER_CLIENT);
        rec_init(&rc);
        assert_int_equal(feed_cuts(&r, &rc, f, n, &cut, 1), 0);
        check_events(&rc, x, 4);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    /* The server reader refuses the same stream on its first header. */
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    /* A masked control frame in client mode. */
    n = frame_s(f, FIN | WS_OP_PING, "");
    expect_error_at(WS_READER_CLIENT, 100, f, n, WS_CLOSE_PROTOCOL, 1);
}

static void test_rsv1(void **st)
{
    (void)st;
    uint8_t f[256];
    struct ws_reader r;
    struct rec rc;
    /* Allowed on the first frame of a data message; its payload is not validated as
     * UTF-8 (it is compressed). */
    size_t n = frame(f, FIN | RSV1 | WS_OP_TEXT, "\xFF\x00\xC0", 3);
    ws_reader_init(&r, 100, WS_READER_ALLOW_RSV1);
    rec_init(&rc);
    assert_int_equal(feed(&r, &rc, f, n), 0);
    const struct xev x1[] = {{'M', WS_OP_TEXT, true, 0, "\xFF\x00\xC0", 3}};
    check_events(&rc, x1, 1);
    rec_free(&rc);
    /* Fragmented compressed message: RSV1 on the first frame only; the flag sticks to
     * the message and a plain message afterwards is validated again. */
    n = frame_s(f, RSV1 | WS_OP_BINARY, "\x01");
    n += frame_s(f + n, FIN | WS_OP_PING, "");
    n += frame_s(f + n, FIN | WS_OP_CONT, "\x02");
    n += frame_s(f + n, FIN | WS_OP_TEXT, "plain");
    assert_int_equal(feed(&r, &rc, f, n), 0);
    const struct xev x2[] = {
        {'C', WS_OP_PING, false, 0, "", 0},
        {'M', WS_OP_BINARY, true, 0, "\x01\x02", 2},
        {'M', WS_OP_TEXT, false, 0, "plain", 5},
    };
    check_events(&rc, x2, 3);
    rec_free(&rc);
    ws_reader_free(&r);
    n = frame_s(f, FIN | WS_OP_TEXT, "\xFF");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n, WS_CLOSE_BAD_DATA, n - 1);
    /* Compressed text in fragments with invalid "UTF-8" across them is fine too. */
    n = frame_s(f, RSV1 | WS_OP_TEXT, "\xE2");
    n += frame_s(f + n, FIN | WS_OP_CONT, "z");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n, 0, SIZE_MAX);

    /* On a continuation frame: 1002. */
    n = frame_s(f, WS_OP_TEXT, "a");
    size_t m = frame_s(f + n, FIN | RSV1 | WS_OP_CONT, "b");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n + m, WS_CLOSE_PROTOCOL, n + 1);
    n = frame_s(f, RSV1 | WS_OP_TEXT, "a");
    m = frame_s(f + n, FIN | RSV1 | WS_OP_CONT, "b");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n + m, WS_CLOSE_PROTOCOL, n + 1);
    /* On control frames: 1002. */
    n = frame_s(f, FIN | RSV1 | WS_OP_PING, "");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    n = frame_s(f, FIN | RSV1 | WS_OP_CLOSE, "");
    expect_error_at(WS_READER_ALLOW_RSV1, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    /* Without the flag: 1002, also in client mode. */
    n = frame_s(f, FIN | RSV1 | WS_OP_BINARY, "a");
    expect_error_at(WS_READER_SERVER, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    n = frame_enc(f, FIN | RSV1 | WS_OP_BINARY, "a", 1, 0, 0);
    expect_error_at(WS_READER_CLIENT, 100, f, n, WS_CLOSE_PROTOCOL, 1);
    expect_error_at(WS_READER_CLIENT | WS_READER_ALLOW_RSV1, 100, f, n, 0, SIZE_MAX);
}

/* A compressed message may be longer on the wire than the limit by deflate's worst-case
 * growth (limit 1000: 1000 + 31 + 7 + 0 + 64 = 1102 bytes); a plain one may not. */
static void test_rsv1_wire_limit(void **st)
{
    (void)st;
    static uint8_t payload[1200], f[2600];
    memset(payload, 'z', sizeof payload);
    size_t n = frame(f, FIN | RSV1 | WS_OP_BINARY, payload, 1102);
    expect_error_at(WS_READER_ALLOW_RSV1, 1000, f, n, 0, SIZE_MAX);
    n = frame(f, FIN | RSV1 | WS_OP_BINARY, payload, 1103);
    expect_error_at(WS_READER_ALLOW_RSV1, 1000, f, n, WS_CLOSE_TOO_BIG, 3);
    n = frame(f, FIN | WS_OP_BINARY, payload, 1001);
    expect_error_at(WS_READER_ALLOW_RSV1, 1000, f, n, WS_CLOSE_TOO_BIG, 3);
    /* Summed over fragments, the continuation inherits the slack of its message. */
    n = frame(f, RSV1 | WS_OP_BINARY, payload, 600);
    size_t m = frame(f + n, FIN | WS_OP_CONT, payload, 502);
    expect_error_at(WS_READER_ALLOW_RSV1, 1000, f, n + m, 0, SIZE_MAX);
    m = frame(f + n, FIN | WS_OP_CONT, payload, 503);
    expect_error_at(WS_READER_ALLOW_RSV1, 1000, f, n + m, WS_CLOSE_TOO_BIG, n + 3);
}

static void test_zero_length_frames(void **st)
{
    (void)st;
    uint8_t f[128];
    size_t n;
    const struct xev x[] = {
        {'M', WS_OP_BINARY, false, 0, "", 0},
        {'M', WS_OP_TEXT, false, 0, "", 0},
        {'M', WS_OP_TEXT, false, 0, "x", 1},
        {'C', WS_OP_PING, false, 0, "", 0},
    };
    struct ws_reader r;
    struct rec rc;
    ws_reader_init(&r, 0, WS_READER_SERVER); /* limit 0 still takes empty messages */
    rec_init(&rc);
    n = frame_s(f, FIN | WS_OP_BINARY, "");
    assert_int_equal(feed(&r, &rc, f, n), 0);
    check_events(&rc, x, 1);
    rec_free(&rc);
    ws_reader_free(&r);
    n = 0;
    n += frame_s(f + n, FIN | WS_OP_BINARY, "");
    n += frame_s(f + n, WS_OP_TEXT, "");
    n += frame_s(f + n, WS_OP_CONT, "");
    n += frame_s(f + n, FIN | WS_OP_CONT, "");
    n += frame_s(f + n, WS_OP_TEXT, "x");
    n += frame_enc(f + n, FIN | WS_OP_CONT, "", 0, 1, 8); /* non-minimal empty */
    n += frame_s(f + n, FIN | WS_OP_PING, "");
    for (size_t cut = 0; cut <= n; cut++) {
        ws_reader_init(&r, 100, WS_READER_SERVER);
        rec_init(&rc);
        assert_int_equal(feed_cuts(&r, &rc, f, n, &cut, 1), 0);
        check_events(&rc, x, 4);
        assert_null(r.buf);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    ws_reader_init(&r, 100, WS_READER_SERVER);
    rec_init(&rc);
    assert_int_equal(feed_bytewise(&r, &rc, f, n), 0);
    check_events(&rc, x, 4);
    rec_free(&rc);
    ws_reader_free(&r);
    /* Feeding nothing is a no-op. */
    ws_reader_init(&r, 100, WS_READER_SERVER);
    assert_int_equal(ws_reader_feed(&r, NULL, 0, &cbs, &rc), 0);
    assert_int_equal(ws_reader_busy(&r), 0);
    ws_reader_free(&r);
}

static void test_callback_stop(void **st)
{
    (void)st;
    uint8_t f[128];
    size_t n = 0;
    n += frame_s(f + n, FIN | WS_OP_TEXT, "one");
    n += frame_s(f + n, FIN | WS_OP_PING, "p");
    n += frame_s(f + n, FIN | WS_OP_TEXT, "two");
    for (int stop = 1; stop <= 3; stop++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 100, WS_READER_SERVER);
        rec_init(&rc);
        rc.stop_at = stop;
        assert_int_equal(feed(&r, &rc, f, n), -5);
        assert_int_equal(rc.n, stop); /* nothing delivered after the stop */
        /* The reader stopped mid-input, so it cannot resume: it is closed. */
        assert_int_equal(feed(&r, &rc, f, n), 0);
        assert_int_equal(rc.n, stop);
        rec_free(&rc);
        ws_reader_free(&r);
    }
    /* Stop from a gathered message and a gathered control frame: buffers released. */
    for (int stop = 1; stop <= 3; stop++) {
        struct ws_reader r;
        struct rec rc;
        ws_reader_init(&r, 100, WS_READER_SERVER);
        rec_init(&rc);
        rc.stop_at = stop;
        int got = 0;
        for (size_t i = 0; i < n; i++) {
            int ret = feed(&r, &rc, f + i, 1);
            if (ret) {
                assert_int_equal(ret, -5);
                got++;
            }
        }
        assert_int_equal(got, 1);
        assert_int_equal(rc.n, stop);
        assert_null(r.buf);
        assert_null(r.ctl);
        rec_free(&rc);
        ws_reader_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_whole),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_bytewise_and_random),
        cmocka_unit_test(test_small_stream_three_way),
        cmocka_unit_test(test_large_message_chunks),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_errors_1002_header),
        cmocka_unit_test(test_length_top_bit),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_utf8_fail_fast),
        cmocka_unit_test(test_utf8_ends_mid_sequence),
        cmocka_unit_test(test_close_frames),
        cmocka_unit_test(test_fragmented_with_pings),
        cmocka_unit_test(test_split_control_frame),
        cmocka_unit_test(test_client_mode),
        cmocka_unit_test(test_rsv1),
        cmocka_unit_test(test_rsv1_wire_limit),
        cmocka_unit_test(test_zero_length_frames),
        cmocka_unit_test(test_callback_stop),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
