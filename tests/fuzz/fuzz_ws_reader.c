/* libFuzzer target for the WebSocket frame reader (with the UTF-8 validator and the
 * mask underneath). The first two input bytes are options: byte 0 seeds the chunk sizes
 * the rest is fed in, byte 1 picks the limit, RSV1 permission and a callback stop. The
 * rest is fed to a server-mode and a client-mode reader, each three ways: whole, in
 * seeded random chunks (each chunk its own exact-size heap block, so ASan sees any read
 * past it), and one byte per call. The split runs must report exactly the events and
 * result of the whole run, the property the server relies on when the kernel splits
 * reads arbitrarily. The callbacks check what callers rely on: text is valid UTF-8
 * unless compressed, sizes are within the limit (plus deflate's worst-case growth for
 * compressed messages), close codes and reasons are valid. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/reader.h"
#include "ws/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

struct run {
    uint64_t max;
    uint32_t flags;
    int stop_after; /* return -1 from this event (1-based); 0 never */
    int events;
    uint64_t digest; /* FNV-1a over everything delivered, in order */
    const struct ws_reader *r;
};

static void mix(struct run *u, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        u->digest = (u->digest ^ b[i]) * 0x100000001B3ull;
}

static int event(struct run *u, unsigned kind, unsigned op, unsigned code, const uint8_t *d,
                 size_t len)
{
    CHECK(d != NULL);
    uint64_t hdr[4] = {kind, op, code, len};
    mix(u, hdr, sizeof hdr);
    mix(u, d, len);
    u->events++;
    return u->events == u->stop_after ? -1 : 0;
}

static int on_message(void *ud, enum ws_opcode op, bool rsv1, uint8_t *d, size_t len)
{
    struct run *u = ud;
    CHECK(op == WS_OP_TEXT || op == WS_OP_BINARY);
    /* A compressed message may exceed the limit on the wire by deflate's growth. */
    CHECK(len <= (rsv1 ? ws_reader_compressed_limit(u->max) : u->max));
    CHECK(!rsv1 || (u->flags & WS_READER_ALLOW_RSV1));
    if (op == WS_OP_TEXT && !rsv1) CHECK(ws_utf8_valid(d, len));
    CHECK(!ws_reader_busy(u->r));
    if (len) d[len - 1] ^= 0x5A; /* the callee may write into the data */
    return event(u, 'M' + rsv1, op, 0, d, len);
}

static int on_control(void *ud, enum ws_opcode op, unsigned code, uint8_t *d, size_t len)
{
    struct run *u = ud;
    CHECK(len <= WS_MAX_CONTROL);
    if (op == WS_OP_CLOSE) {
        CHECK(code == WS_CLOSE_NO_STATUS ? len == 0 : ws_close_code_valid(code));
        CHECK(len <= WS_MAX_CONTROL - 2);
        CHECK(ws_utf8_valid(d, len));
        CHECK(!ws_reader_busy(u->r));
    } else {
        CHECK(op == WS_OP_PING || op == WS_OP_PONG);
        CHECK(code == 0);
    }
    return event(u, 'C', op, code, d, len);
}

static const struct ws_reader_callbacks cbs = {on_message, on_control};

static int check_rc(int rc, int first)
{
    CHECK(rc == 0 || rc == -1 || rc == WS_CLOSE_PROTOCOL || rc == WS_CLOSE_BAD_DATA ||
          rc == WS_CLOSE_TOO_BIG || rc == WS_CLOSE_INTERNAL);
    if (first) CHECK(rc == 0); /* a reader that has failed ignores everything */
    return first ? first : rc;
}

static void check_reader(const struct ws_reader *r, uint64_t max)
{
    if (r->flags & WS_READER_ALLOW_RSV1) max = ws_reader_compressed_limit(max);
    CHECK(r->buf_len <= r->buf_cap);
    CHECK(r->buf_cap <= max);
    CHECK(r->ctl_len <= WS_MAX_CONTROL);
    CHECK(r->msg_len <= max);
}

/* Feeds in[0..n) cut into pieces; piece 0 means whole, 1 means byte by byte, otherwise
 * a seeded pseudo-random length up to `piece`. Returns the first non-zero result. */
static int feed(struct run *u, const uint8_t *in, size_t n, unsigned piece, uint32_t seed)
{
    struct ws_reader r;
    ws_reader_init(&r, u->max, u->flags);
    u->r = &r;
    int first = 0;
    size_t pos = 0;
    do {
        size_t k = n - pos;
        if (piece == 1) {
            k = k ? 1 : 0;
        } else if (piece > 1) {
            seed = seed * 1664525u + 1013904223u;
            size_t want = 1 + (seed >> 8) % piece;
            if (want < k) k = want;
        }
        uint8_t *b = malloc(k ? k : 1);
        CHECK(b != NULL);
        if (k) memcpy(b, in + pos, k);
        first = check_rc(ws_reader_feed(&r, b, k, &cbs, u), first);
        free(b);
        check_reader(&r, u->max);
        pos += k;
    } while (pos < n);
    ws_reader_free(&r);
    CHECK(r.buf == NULL && r.ctl == NULL);
    return first;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[4] = {4096, 125, 1, 0};
    if (size < 2) return 0;
    uint32_t seed = data[0];
    unsigned opt = data[1];
    const uint8_t *in = data + 2;
    size_t n = size - 2;

    /* The validator itself: split anywhere, same verdict. */
    uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, in, n / 2);
    CHECK(ws_utf8_feed(st, in + n / 2, n - n / 2) == ws_utf8_feed(WS_UTF8_ACCEPT, in, n));

    for (int mode = 0; mode < 2; mode++) {
        struct run base = {
            .max = limits[opt & 3],
            .flags = (mode ? WS_READER_CLIENT : WS_READER_SERVER) |
                     ((opt & 4) ? WS_READER_ALLOW_RSV1 : 0),
            .stop_after = (int)(opt >> 5), /* 0 (never) .. 7 */
            .digest = 0xCBF29CE484222325ull,
        };
        struct run whole = base, chunks = base, bytes = base;
        int rc = feed(&whole, in, n, 0, seed);
        int rc2 = feed(&chunks, in, n, 2 + (seed & 63), seed);
        CHECK(rc == rc2 && whole.events == chunks.events && whole.digest == chunks.digest);
        if (n <= 4096) {
            int rc3 = feed(&bytes, in, n, 1, seed);
            CHECK(rc == rc3 && whole.events == bytes.events && whole.digest == bytes.digest);
        }
    }
    return 0;
}
