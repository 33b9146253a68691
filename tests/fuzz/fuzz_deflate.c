/* libFuzzer target for permessage-deflate: the offer parser and the bounded inflater,
 * with the compressor in the loop. Byte 0 picks the mode.
 *
 * Even: the rest is a Sec-WebSocket-Extensions value. An accepted offer must give
 * parameters in range and a response line that fits, and that line, read back as an
 * offer, must be accepted with the same parameters (our answer is always a valid offer).
 *
 * Odd: byte 1 picks the output limit (up to 64 KiB, so no input can make the fuzzer run
 * out of memory) and whether the connection keeps context (its own inflater) or not
 * (the thread's); byte 2 splits the rest into up to four messages inflated in turn on
 * the same connection. Each result must be 0, 1002 or 1009; output never exceeds the
 * limit; and every message that inflated is compressed again through the compress-once
 * path and must inflate back to the same bytes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/msg.h"
#include "ws/conn.h"
#include "ws/deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static void negotiate(const uint8_t *v, size_t n)
{
    /* An exact-size copy so ASan catches any read past the value. */
    char *copy = malloc(n ? n : 1);
    CHECK(copy);
    memcpy(copy, v, n);
    struct ws_deflate_params p;
    int ok = ws_deflate_negotiate_value(copy, n, &p);
    free(copy);
    char line[WS_DEFLATE_RESPONSE_MAX];
    size_t len = ws_deflate_response(&p, line, sizeof line);
    if (!ok) {
        CHECK(p.flags == 0 && len == 0);
        return;
    }
    CHECK(p.flags & WS_DEFLATE_ON);
    CHECK(p.server_wbits >= 9 && p.server_wbits <= 15);
    CHECK(p.client_wbits >= 8 && p.client_wbits <= 15);
    CHECK(len > 0 && len == strlen(line));
    static const char head[] = "Sec-WebSocket-Extensions: ";
    CHECK(len > sizeof head + 1 && memcmp(line, head, sizeof head - 1) == 0);
    struct ws_deflate_params again;
    CHECK(ws_deflate_negotiate_value(line + sizeof head - 1, len - (sizeof head - 1) - 2, &again) ==
          1);
    CHECK(again.server_wbits == p.server_wbits);
    CHECK((again.flags & WS_DEFLATE_CLIENT_NCT) == (p.flags & WS_DEFLATE_CLIENT_NCT));
}

static void round_trip(const uint8_t *out, size_t n, uint64_t max)
{
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON | WS_DEFLATE_CLIENT_NCT,
                                  .server_wbits = (uint8_t)(9 + n % 7),
                                  .client_wbits = 15};
    struct wh_msg *src = ws_frame_new(WS_OP_BINARY, out, n);
    CHECK(src);
    struct wh_msg *z = ws_deflate_frame(src, &p, 0);
    struct wh_msg *z2 = ws_deflate_frame(src, &p, 0);
    CHECK(z == z2); /* the second recipient gets the cached twin (or none) */
    if (z) {
        CHECK((z->data[0] & 0xF0u) == 0xC0u); /* FIN + RSV1 */
        size_t hl = (z->data[1] & 0x7Fu) == 126 ? 4 : (z->data[1] & 0x7Fu) == 127 ? 10 : 2;
        CHECK(hl < z->len && z->len - hl < n);
        /* Copied: the inflater's buffer is the one `out` points into. */
        uint8_t *want = malloc(n);
        CHECK(want);
        memcpy(want, out, n);
        struct ws_deflate d = {0};
        uint8_t *back;
        size_t blen;
        CHECK(ws_deflate_inflate(&d, &p, z->data + hl, z->len - hl, max, &back, &blen) == 0);
        CHECK(blen == n && memcmp(back, want, n) == 0);
        free(want);
        msg_unref(z);
        msg_unref(z2);
    }
    msg_unref(src);
}

static void inflate_messages(const uint8_t *data, size_t size)
{
    if (size < 3) return;
    uint64_t max = ((uint64_t)(data[1] & 0x3Fu) + 1) * 1024;
    struct ws_deflate_params p = {.flags = WS_DEFLATE_ON, .server_wbits = 15, .client_wbits = 15};
    if (data[1] & 0x40u)
        p.flags |= WS_DEFLATE_CLIENT_NCT;
    else
        p.client_wbits = (uint8_t)(8 + (data[2] >> 5));
    unsigned cuts = 1 + (data[2] & 3u);
    const uint8_t *rest = data + 3;
    size_t left = size - 3;
    struct ws_deflate d = {0};
    for (unsigned i = 0; i < cuts; i++) {
        size_t n = i + 1 == cuts ? left : left / (cuts - i);
        uint8_t *msg = malloc(n ? n : 1);
        CHECK(msg);
        memcpy(msg, rest, n);
        uint8_t *out;
        size_t olen;
        int rc = ws_deflate_inflate(&d, &p, msg, n, max, &out, &olen);
        free(msg);
        CHECK(rc == 0 || rc == 1002 || rc == 1009);
        if (rc) break; /* the connection would be failed */
        CHECK(olen <= max);
        if (olen) round_trip(out, olen, max);
        rest += n;
        left -= n;
    }
    ws_deflate_conn_free(&d);
    ws_deflate_trim();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    if (data[0] & 1u)
        inflate_messages(data, size);
    else
        negotiate(data + 1, size - 1);
    return 0;
}
