/* Unit tests for permessage-deflate: the negotiation table (offer -> response line or
 * decline), inflation limits (a compression bomb stops at the limit with bounded
 * memory), corrupt data, context takeover, and round trips through the compress-once
 * cache. Compressed inputs are made with zlib directly, as a client would. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>
#include <zlib.h>

#include "base/stats.h"
#include "http/parser.h"
#include "ws/conn.h"
#include "ws/deflate.h"

#define EXT "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"

static const struct {
    const char *offer;
    const char *response; /* NULL: declined */
} table[] = {
    {"permessage-deflate", EXT "\r\n"},
    {"PerMessage-Deflate", EXT "\r\n"},
    {"permessage-deflate; server_no_context_takeover", EXT "\r\n"},
    {"permessage-deflate; client_max_window_bits", EXT "; client_max_window_bits=12\r\n"},
    {"permessage-deflate; client_max_window_bits=15", EXT "; client_max_window_bits=12\r\n"},
    {"permessage-deflate; client_max_window_bits=10", EXT "; client_max_window_bits=10\r\n"},
    {"permessage-deflate; client_max_window_bits=8", EXT "; client_max_window_bits=8\r\n"},
    {"permessage-deflate; client_max_window_bits=\"10\"", EXT "; client_max_window_bits=10\r\n"},
    {"permessage-deflate; client_max_window_bits=\"1\\5\"", EXT "; client_max_window_bits=12\r\n"},
    {"permessage-deflate; client_no_context_takeover", EXT "; client_no_context_takeover\r\n"},
    {"permessage-deflate; client_no_context_takeover; client_max_window_bits",
     EXT "; client_no_context_takeover\r\n"},
    {"permessage-deflate; server_max_window_bits=10", EXT "; server_max_window_bits=10\r\n"},
    {"permessage-deflate; server_max_window_bits=15", EXT "; server_max_window_bits=15\r\n"},
    {"permessage-deflate;server_max_window_bits=9 ;client_no_context_takeover",
     EXT "; client_no_context_takeover; server_max_window_bits=9\r\n"},
    {"permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
     "server_max_window_bits=11; client_max_window_bits=9",
     EXT "; client_no_context_takeover; server_max_window_bits=11\r\n"},
    /* Declined: values out of range, missing, or not allowed; unknown or repeated
     * parameters; broken syntax. */
    {"permessage-deflate; server_max_window_bits=8", NULL},
    {"permessage-deflate; server_max_window_bits", NULL},
    {"permessage-deflate; server_max_window_bits=16", NULL},
    {"permessage-deflate; client_max_window_bits=7", NULL},
    {"permessage-deflate; client_max_window_bits=010", NULL},
    {"permessage-deflate; client_max_window_bits=1O", NULL},
    {"permessage-deflate; client_max_window_bits=", NULL},
    {"permessage-deflate; client_max_window_bits=\"\"", NULL},
    {"permessage-deflate; client_max_window_bits=\"12", NULL},
    {"permessage-deflate; server_no_context_takeover=1", NULL},
    {"permessage-deflate; client_no_context_takeover=\"x\"", NULL},
    {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL},
    {"permessage-deflate; client_max_window_bits; client_max_window_bits=10", NULL},
    {"permessage-deflate; mux", NULL},
    {"permessage-deflate;", NULL},
    {"permessage-deflate x", NULL},
    {"permessage-deflat", NULL},
    {"x-webkit-deflate-frame", NULL},
    {"", NULL},
    {" , ,", NULL},
    /* The first acceptable offer wins; a broken one does not spoil the rest. */
    {"permessage-deflate; server_max_window_bits=8, permessage-deflate", EXT "\r\n"},
    {"permessage-deflate; foo=\"a,b\", permessage-deflate; client_max_window_bits=9",
     EXT "; client_max_window_bits=9\r\n"},
    {"x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover",
     EXT "; client_no_context_takeover\r\n"},
    {"foo; bar=\"a, permessage-deflate\", permessage-deflate; server_max_window_bits=12",
     EXT "; server_max_window_bits=12\r\n"},
    {" , permessage-deflate ; client_max_window_bits = 11 ,",
     EXT "; client_max_window_bits=11\r\n"},
    {"permessage-deflate; server_max_window_bits=\"9\", permessage-deflate",
     EXT "; server_max_window_bits=9\r\n"},
    {"permessage-deflate; x=\"unterminated, permessage-deflate", NULL},
};

static void test_negotiation_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        struct ws_deflate_params p;
        int ok = ws_deflate_negotiate_value(table[i].offer, strlen(table[i].offer), &p);
        char line[WS_DEFLATE_RESPONSE_MAX];
        size_t n = ws_deflate_response(&p, line, sizeof line);
        if (!table[i].response) {
            if (ok) print_error("offer %zu accepted: %s\n", i, table[i].offer);
            assert_int_equal(ok, 0);
            assert_int_equal(p.flags, 0);
            assert_int_equal(n, 0);
            continue;
        }
        if (!ok || strcmp(line, table[i].response) != 0)
            print_error("offer %zu: %s\n  got: %s", i, table[i].offer, ok ? line : "declined\n");
        assert_int_equal(ok, 1);
        assert_string_equal(line, table[i].response);
        assert_int_equal(n, strlen(table[i].response));
    }
}

static void test_negotiation_params(void **state)
{
    (void)state;
    struct ws_deflate_params p;
    const char *o = "permessage-deflate; client_no_context_takeover; server_max_window_bits=10";
    assert_int_equal(ws_deflate_negotiate_value(o, strlen(o), &p), 1);
    assert_true(p.flags & WS_DEFLATE_ON);
    assert_true(p.flags & WS_DEFLATE_CLIENT_NCT);
    assert_int_equal(p.server_wbits, 10);
    assert_int_equal(p.client_wbits, 15);
    o = "permessage-deflate; client_max_window_bits=9";
    assert_int_equal(ws_deflate_negotiate_value(o, strlen(o), &p), 1);
    assert_false(p.flags & WS_DEFLATE_CLIENT_NCT);
    assert_int_equal(p.server_wbits, 15);
    assert_int_equal(p.client_wbits, 9);

    /* A response buffer too small gives nothing rather than half a line. */
    char small[20];
    assert_int_equal(ws_deflate_response(&p, small, sizeof small), 0);
}

/* Several Sec-WebSocket-Extensions headers, through the real HTTP parser. */
static void test_negotiation_headers(void **state)
{
    (void)state;
    static const char req_text[] =
        "GET /echo HTTP/1.1\r\nHost: x\r\n"
        "Sec-WebSocket-Extensions: foo, permessage-deflate; server_max_window_bits=8\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=11\r\n\r\n";
    char *buf = malloc(sizeof req_text);
    assert_non_null(buf);
    memcpy(buf, req_text, sizeof req_text);
    struct http_request req;
    assert_int_equal(http_parse_request(buf, sizeof req_text - 1, &req, NULL),
                     (int)(sizeof req_text - 1));
    struct ws_deflate_params p;
    assert_int_equal(ws_deflate_negotiate(&req, &p), 1);
    assert_int_equal(p.server_wbits, 11);

    static const char none_text[] = "GET /echo HTTP/1.1\r\nHost: x\r\n"
                                    "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n";
    char *b2 = malloc(sizeof none_text);
    assert_non_null(b2);
    memcpy(b2, none_text, sizeof none_text);
    assert_true(http_parse_request(b2, sizeof none_text - 1, &req, NULL) > 0);
    assert_int_equal(ws_deflate_negotiate(&req, &p), 0);
    assert_int_equal(p.flags, 0);
    free(buf);
    free(b2);
}

/* Raw deflate of in[0..n) as a client would send it: sync flush, tail removed. With
 * z non-NULL the stream keeps its context (context takeover). */
static size_t client_deflate(z_stream *z, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                             int flush)
{
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)n;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, flush);
    assert_true(rc == Z_OK || rc == Z_STREAM_END);
    assert_int_equal(z->avail_in, 0);
    size_t len = cap - z->avail_out;
    if (flush == Z_SYNC_FLUSH) {
        assert_true(len >= 4);
        assert_memory_equal(out + len - 4, "\x00\x00\xff\xff", 4);
        len -= 4;
    }
    return len;
}

static void zinit(z_stream *z, int wbits)
{
    memset(z, 0, sizeof *z);
    assert_int_equal(deflateInit2(z, 6, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
}

static const struct ws_deflate_params nct = {
    .flags = WS_DEFLATE_ON | WS_DEFLATE_CLIENT_NCT, .server_wbits = 15, .client_wbits = 15};

static void test_inflate_round_trip(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *msg = malloc(n), *comp = malloc(n + 1024);
    assert_non_null(msg);
    assert_non_null(comp);
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)("the quick brown fox "[i % 20] + (i / 1000) % 3);
    z_stream z;
    zinit(&z, 15);
    size_t cl = client_deflate(&z, msg, n, comp, n + 1024, Z_SYNC_FLUSH);
    deflateEnd(&z);
    assert_true(cl < n / 10);

    struct ws_deflate d = {0};
    uint8_t *out;
    size_t olen;
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl, n, &out, &olen), 0);
    assert_int_equal(olen, n);
    assert_memory_equal(out, msg, n);
    assert_int_equal(d.slot, 0); /* no context takeover: the thread's inflater was used */
    /* One byte under the size: refused. */
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl, n - 1, &out, &olen), 1009);
    /* The shared inflater recovers after a refusal. */
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl, n, &out, &olen), 0);
    assert_memory_equal(out, msg, n);

    /* An empty message is one empty stored block, 0x00 (RFC 7692 section 7.2.3.6). */
    static const uint8_t empty[] = {0x00};
    assert_int_equal(ws_deflate_inflate(&d, &nct, empty, 1, 10, &out, &olen), 0);
    assert_int_equal(olen, 0);
    assert_non_null(out);

    /* A message ending in a final block (BFINAL) is fine too. */
    zinit(&z, 15);
    cl = client_deflate(&z, msg, 5000, comp, n + 1024, Z_FINISH);
    deflateEnd(&z);
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl, n, &out, &olen), 0);
    assert_int_equal(olen, 5000);
    assert_memory_equal(out, msg, 5000);
    ws_deflate_trim();
    free(msg);
    free(comp);
}

static void test_inflate_corrupt(void **state)
{
    (void)state;
    struct ws_deflate d = {0};
    uint8_t *out;
    size_t olen;
    /* Block type 3 is reserved. */
    static const uint8_t bad_type[] = {0x07, 0x00};
    assert_int_equal(ws_deflate_inflate(&d, &nct, bad_type, sizeof bad_type, 1000, &out, &olen),
                     1002);
    /* A stored block whose length and its complement disagree. */
    static const uint8_t bad_stored[] = {0x00, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(ws_deflate_inflate(&d, &nct, bad_stored, sizeof bad_stored, 1000, &out, &olen),
                     1002);
    /* Data after a final block. */
    static const uint8_t after_final[] = {0x01, 0x01, 0x00, 0xfe, 0xff, 'x', 0x55, 0x66};
    assert_int_equal(
        ws_deflate_inflate(&d, &nct, after_final, sizeof after_final, 1000, &out, &olen), 1002);
    /* A back reference before the start of the stream. */
    z_stream z;
    zinit(&z, 15);
    uint8_t a[64], b[64], comp[256];
    memset(a, 'a', sizeof a);
    memcpy(b, a, sizeof b);
    client_deflate(&z, a, sizeof a, comp, sizeof comp, Z_SYNC_FLUSH);
    size_t cl = client_deflate(&z, b, sizeof b, comp, sizeof comp, Z_SYNC_FLUSH);
    deflateEnd(&z);
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl, 1000, &out, &olen), 1002);
}

/* Without client_no_context_takeover, the connection's own inflater carries the
 * window from one message to the next. */
static void test_inflate_context_takeover(void **state)
{
    (void)state;
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON, .server_wbits = 15, .client_wbits = 12};
    struct ws_deflate d = {0};
    z_stream z;
    zinit(&z, 12);
    uint8_t msg[300], comp[512], *out;
    size_t olen;
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)('A' + i % 26);
    for (int round = 0; round < 5; round++) {
        size_t cl = client_deflate(&z, msg, sizeof msg, comp, sizeof comp, Z_SYNC_FLUSH);
        if (round > 0) assert_true(cl < 20); /* refers back to the previous message */
        assert_int_equal(ws_deflate_inflate(&d, &p, comp, cl, 1000, &out, &olen), 0);
        assert_int_equal(olen, sizeof msg);
        assert_memory_equal(out, msg, sizeof msg);
        assert_int_not_equal(d.slot, 0);
    }
    deflateEnd(&z);
    ws_deflate_conn_free(&d);
    assert_int_equal(d.slot, 0);
}

/* Context-keeping connections get slots in the thread's table, reused once freed. */
static void test_inflater_slots(void **state)
{
    (void)state;
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON, .server_wbits = 15, .client_wbits = 9};
    static const uint8_t empty[] = {0x00};
    enum { N = 200 };
    static struct ws_deflate d[N];
    uint8_t *out;
    size_t olen;
    for (int i = 0; i < N; i++) {
        d[i].slot = 0;
        assert_int_equal(ws_deflate_inflate(&d[i], &p, empty, 1, 10, &out, &olen), 0);
        assert_int_not_equal(d[i].slot, 0);
        for (int k = 0; k < i; k++)
            assert_int_not_equal(d[k].slot, d[i].slot);
    }
    uint16_t freed = d[17].slot;
    ws_deflate_conn_free(&d[17]);
    assert_int_equal(d[17].slot, 0);
    ws_deflate_conn_free(&d[17]); /* harmless twice */
    struct ws_deflate again = {0};
    assert_int_equal(ws_deflate_inflate(&again, &p, empty, 1, 10, &out, &olen), 0);
    assert_int_equal(again.slot, freed);
    ws_deflate_conn_free(&again);
    for (int i = 0; i < N; i++)
        ws_deflate_conn_free(&d[i]);
    ws_deflate_thread_cleanup();
}

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* 256 MiB of zeros compress to about 256 KiB; with a 1 MiB limit the inflater must stop
 * after about 1 MiB of output, and the process never holds the whole bomb. */
static void test_inflate_bomb(void **state)
{
    (void)state;
    const size_t chunk = 1 << 20, total = 256u << 20;
    size_t cap = 1 << 20;
    uint8_t *zeros = calloc(1, chunk), *comp = malloc(cap);
    assert_non_null(zeros);
    assert_non_null(comp);
    z_stream z;
    zinit(&z, 15);
    size_t cl = 0;
    for (size_t done = 0; done < total; done += chunk) {
        z.next_in = zeros;
        z.avail_in = (uInt)chunk;
        z.next_out = comp + cl;
        z.avail_out = (uInt)(cap - cl);
        assert_int_equal(deflate(&z, done + chunk == total ? Z_SYNC_FLUSH : Z_NO_FLUSH), Z_OK);
        cl = cap - z.avail_out;
    }
    deflateEnd(&z);
    assert_true(cl < cap / 2);
    free(zeros);

    long before = maxrss_kib();
    struct ws_deflate d = {0};
    uint8_t *out;
    size_t olen;
    assert_int_equal(ws_deflate_inflate(&d, &nct, comp, cl - 4, 1 << 20, &out, &olen), 1009);
    /* The output buffer stops at the limit plus one byte, rounded to its growth step. */
    long grew = maxrss_kib() - before;
    print_message("bomb: %zu B compressed, peak RSS grew %ld KiB\n", cl, grew);
    assert_true(grew < 8 * 1024);
    free(comp);
    ws_deflate_trim();
}

static struct wh_msg *frame_of(enum ws_opcode op, const uint8_t *p, size_t n)
{
    struct wh_msg *m = ws_frame_new(op, p, n);
    assert_non_null(m);
    return m;
}

/* The payload of a server frame: header parsed as a client would. */
static const uint8_t *frame_payload(const struct wh_msg *m, size_t *n, unsigned *b0)
{
    *b0 = m->data[0];
    size_t hl = 2, len = m->data[1] & 0x7f;
    if (len == 126) {
        len = (size_t)m->data[2] << 8 | m->data[3];
        hl = 4;
    } else if (len == 127) {
        len = 0;
        for (int k = 2; k < 10; k++)
            len = len << 8 | m->data[k];
        hl = 10;
    }
    assert_int_equal(hl + len, m->len);
    *n = len;
    return m->data + hl;
}

static void test_frame_compress_once(void **state)
{
    (void)state;
    uint8_t msg[2048];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (uint8_t)("{\"type\":\"message\",\"room\":\"lobby\"} "[i % 35]);
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON, .server_wbits = 15, .client_wbits = 15};
    struct wh_msg *src = frame_of(WS_OP_TEXT, msg, sizeof msg);
    uint64_t hits = STAT_GET(stats_cur, ws_deflate_cache_hits);
    uint64_t made = STAT_GET(stats_cur, ws_deflate_msgs_out);

    struct wh_msg *z1 = ws_deflate_frame(src, &p, 1024);
    assert_non_null(z1);
    struct wh_msg *z2 = ws_deflate_frame(src, &p, 1024);
    assert_ptr_equal(z1, z2); /* the same twin for the second recipient */
    assert_int_equal(STAT_GET(stats_cur, ws_deflate_msgs_out), made + 1);
    assert_int_equal(STAT_GET(stats_cur, ws_deflate_cache_hits), hits + 1);

    size_t n;
    unsigned b0;
    const uint8_t *pl = frame_payload(z1, &n, &b0);
    assert_int_equal(b0, 0x80 | 0x40 | WS_OP_TEXT); /* FIN, RSV1, text */
    assert_true(n < sizeof msg / 4);
    struct ws_deflate d = {0};
    uint8_t *out;
    size_t olen;
    assert_int_equal(ws_deflate_inflate(&d, &nct, pl, n, sizeof msg, &out, &olen), 0);
    assert_int_equal(olen, sizeof msg);
    assert_memory_equal(out, msg, sizeof msg);

    /* A smaller server window is a different twin, readable with that window. */
    struct ws_deflate_params p9 = p;
    p9.server_wbits = 9;
    struct wh_msg *z9 = ws_deflate_frame(src, &p9, 1024);
    assert_non_null(z9);
    assert_ptr_not_equal(z9, z1);
    pl = frame_payload(z9, &n, &b0);
    z_stream inf;
    memset(&inf, 0, sizeof inf);
    assert_int_equal(inflateInit2(&inf, -9), Z_OK);
    uint8_t buf[4096];
    uint8_t in[4096];
    memcpy(in, pl, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    inf.next_in = in;
    inf.avail_in = (uInt)(n + 4);
    inf.next_out = buf;
    inf.avail_out = sizeof buf;
    assert_int_equal(inflate(&inf, Z_SYNC_FLUSH), Z_OK);
    assert_int_equal(sizeof buf - inf.avail_out, sizeof msg);
    assert_memory_equal(buf, msg, sizeof msg);
    inflateEnd(&inf);

    msg_unref(z1);
    msg_unref(z2);
    msg_unref(z9);
    /* The cache keeps its own reference: dropping ours leaves the frames valid. */
    msg_unref(src);

    /* Below the threshold, control frames, and incompressible data go as they are. */
    struct wh_msg *small = frame_of(WS_OP_TEXT, msg, 100);
    assert_null(ws_deflate_frame(small, &p, 1024));
    struct wh_msg *zs = ws_deflate_frame(small, &p, 0); /* threshold 0: compressed */
    assert_non_null(zs);
    msg_unref(zs);
    msg_unref(small);
    struct wh_msg *ping = frame_of(WS_OP_PING, msg, 100);
    assert_null(ws_deflate_frame(ping, &p, 0));
    msg_unref(ping);
    uint8_t rnd[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        x = x * 1103515245u + 12345u;
        rnd[i] = (uint8_t)(x >> 16);
    }
    struct wh_msg *noise = frame_of(WS_OP_BINARY, rnd, sizeof rnd);
    uint64_t inc = STAT_GET(stats_cur, ws_deflate_incompressible);
    assert_null(ws_deflate_frame(noise, &p, 0));
    assert_null(ws_deflate_frame(noise, &p, 0)); /* the decision is cached too */
    assert_int_equal(STAT_GET(stats_cur, ws_deflate_incompressible), inc + 1);
    msg_unref(noise);
    /* Not negotiated: never compressed. */
    struct ws_deflate_params off = {0};
    struct wh_msg *big = frame_of(WS_OP_TEXT, msg, sizeof msg);
    assert_null(ws_deflate_frame(big, &off, 0));
    msg_unref(big);
    ws_deflate_thread_cleanup();
}

/* Large frames (64-bit length form) round trip as well. */
static void test_frame_large(void **state)
{
    (void)state;
    size_t n = 200000;
    uint8_t *msg = malloc(n);
    assert_non_null(msg);
    for (size_t i = 0; i < n; i++)
        msg[i] = (uint8_t)(i * 7 % 13 + 'a');
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON, .server_wbits = 15, .client_wbits = 15};
    struct wh_msg *src = frame_of(WS_OP_BINARY, msg, n);
    struct wh_msg *z = ws_deflate_frame(src, &p, 1024);
    assert_non_null(z);
    size_t cl;
    unsigned b0;
    const uint8_t *pl = frame_payload(z, &cl, &b0);
    assert_int_equal(b0, 0xC0 | WS_OP_BINARY);
    struct ws_deflate d = {0};
    uint8_t *out;
    size_t olen;
    assert_int_equal(ws_deflate_inflate(&d, &nct, pl, cl, n, &out, &olen), 0);
    assert_int_equal(olen, n);
    assert_memory_equal(out, msg, n);
    msg_unref(z);
    msg_unref(src);
    free(msg);
    ws_deflate_thread_cleanup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation_table),   cmocka_unit_test(test_negotiation_params),
        cmocka_unit_test(test_negotiation_headers), cmocka_unit_test(test_inflate_round_trip),
        cmocka_unit_test(test_inflate_corrupt),     cmocka_unit_test(test_inflate_context_takeover),
        cmocka_unit_test(test_inflate_bomb),        cmocka_unit_test(test_frame_compress_once),
        cmocka_unit_test(test_frame_large),         cmocka_unit_test(test_inflater_slots),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ws_deflate_thread_cleanup();
    msg_thread_cleanup();
    return rc;
}
