/* The incremental RFC 6455 frame reader. Each call walks the caller's bytes frame by
 * frame: header bytes are parsed straight from the input when they are all there and
 * only copied into r->hdr when a read ends inside a header; payload is unmasked in
 * place and, for text, run through the UTF-8 DFA as it arrives so a bad byte closes
 * the connection without waiting for the rest of the frame. A message whose single
 * frame lies entirely inside one call is handed to the callback where it lies; only a
 * message spread over frames or reads is copied, into a buffer sized from the frame
 * headers after they passed the size limit. Every limit is enforced from the header,
 * so nothing is allocated for a frame that is going to be refused. */
#include "ws/reader.h"

#include <stdlib.h>
#include <string.h>

#include "ws/utf8.h"

enum { ST_HDR = 0, ST_PAYLOAD = 1, ST_CLOSED = 2 };

/* First gather allocation when the message's end is not declared yet (a non-final
 * fragment): large enough that a chatty fragmenter does not realloc per frame. */
#define GATHER_MIN 1024

void ws_reader_init(struct ws_reader *r, uint64_t max_message_size, uint32_t flags)
{
    memset(r, 0, sizeof *r);
    r->max_message_size = max_message_size;
    r->flags = flags;
    r->utf8 = WS_UTF8_ACCEPT;
    r->state = ST_HDR;
}

static void drop_buffers(struct ws_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->buf_len = r->buf_cap = 0;
    free(r->ctl);
    r->ctl = NULL;
    r->ctl_len = 0;
}

void ws_reader_free(struct ws_reader *r)
{
    drop_buffers(r);
    r->state = ST_CLOSED;
}

int ws_reader_busy(const struct ws_reader *r)
{
    if (r->state == ST_CLOSED) return 0;
    return r->state == ST_PAYLOAD || r->hdr_have != 0 || r->msg_op != 0;
}

/* Every way out after an error or a callback's stop: nothing more is parsed, and a
 * closed reader holds no heap even if its owner keeps it around until teardown. */
static int fail(struct ws_reader *r, int rc)
{
    drop_buffers(r);
    r->state = ST_CLOSED;
    r->hdr_have = 0;
    r->msg_op = 0;
    return rc;
}

/* The limit on a message's bytes as they arrive. A compressed message is limited by
 * its inflated size (the inflater enforces that), but data that does not compress
 * grows in deflate's stored blocks (5 bytes per block, and a compressor with a small
 * memLevel, as Python's websockets uses, cuts blocks of a few KiB), so its wire size
 * gets the slack of zlib's most conservative deflateBound (about 4%): a message at
 * the limit must still pass. */
uint64_t ws_reader_compressed_limit(uint64_t max_message_size)
{
    uint64_t m = max_message_size;
    return m + (m >> 5) + (m >> 7) + (m >> 11) + 64;
}

static uint64_t wire_limit(const struct ws_reader *r, bool compressed)
{
    return compressed ? ws_reader_compressed_limit(r->max_message_size) : r->max_message_size;
}

static size_t header_size(uint8_t b1)
{
    unsigned len7 = b1 & 0x7Fu;
    size_t n = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    return n + ((b1 & 0x80u) ? 4 : 0);
}

/* Validates as much of a header as h[0..have) holds, so a bad opcode is refused from
 * the first two bytes and an oversized length before its mask key arrives. Pure: it may
 * run again on the same bytes when the header trickles in. On success *need is the
 * header's full size (0 while fewer than 2 bytes are known) and *flen the payload
 * length once the length field is complete. */
static int check_header(const struct ws_reader *r, const uint8_t *h, size_t have, size_t *need,
                        uint64_t *flen)
{
    *need = 0;
    if (have < 2) return 0;
    unsigned b0 = h[0], b1 = h[1];
    unsigned op = b0 & 0x0Fu;
    bool rsv1 = (b0 & 0x40u) != 0;
    bool masked = (b1 & 0x80u) != 0;
    unsigned len7 = b1 & 0x7Fu;

    if (b0 & 0x30u) return WS_CLOSE_PROTOCOL;
    if (masked == ((r->flags & WS_READER_CLIENT) != 0)) return WS_CLOSE_PROTOCOL;
    if (op & 0x8u) {
        if (op > WS_OP_PONG || !(b0 & 0x80u) || len7 > WS_MAX_CONTROL || rsv1)
            return WS_CLOSE_PROTOCOL;
    } else if (op == WS_OP_CONT) {
        if (!r->msg_op || rsv1) return WS_CLOSE_PROTOCOL;
    } else {
        if (op > WS_OP_BINARY || r->msg_op) return WS_CLOSE_PROTOCOL;
        if (rsv1 && !(r->flags & WS_READER_ALLOW_RSV1)) return WS_CLOSE_PROTOCOL;
    }

    *need = header_size((uint8_t)b1);
    size_t lend = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
    if (have < lend) return 0;
    uint64_t n = len7;
    if (len7 == 126) {
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (len7 == 127) {
        n = 0;
        for (int k = 2; k < 10; k++)
            n = n << 8 | h[k];
        if (n >> 63) return WS_CLOSE_PROTOCOL;
    }
    /* msg_len never exceeds the limit, so the subtraction cannot wrap. */
    bool compressed = op == WS_OP_CONT ? r->msg_rsv1 != 0 : rsv1;
    if (!(op & 0x8u) && n > wire_limit(r, compressed) - r->msg_len) return WS_CLOSE_TOO_BIG;
    *flen = n;
    return 0;
}

static void start_frame(struct ws_reader *r, const uint8_t *h, size_t hlen, uint64_t flen)
{
    unsigned op = h[0] & 0x0Fu;
    r->frame_op = (uint8_t)op;
    r->frame_fin = (uint8_t)(h[0] >> 7);
    r->frame_left = flen;
    r->frame_pos = 0;
    if (h[1] & 0x80u) memcpy(r->mask, h + hlen - 4, 4);
    if (op == WS_OP_TEXT || op == WS_OP_BINARY) {
        r->msg_op = (uint8_t)op;
        r->msg_rsv1 = (uint8_t)((h[0] >> 6) & 1u);
        r->utf8 = WS_UTF8_ACCEPT;
        r->msg_len = 0;
    }
    r->state = ST_PAYLOAD;
}

/* Consumes header bytes from data[*pos..len). Returns 0 or a close code; on return
 * either the frame has started (state ST_PAYLOAD) or all input went into r->hdr. */
static int read_header(struct ws_reader *r, const uint8_t *data, size_t len, size_t *pos)
{
    size_t i = *pos;
    const uint8_t *h;
    size_t have;
    if (r->hdr_have == 0) {
        /* Common case: parse in place, copy only if the read ends inside the header. */
        h = data + i;
        have = len - i;
    } else {
        while (i < len) {
            size_t target = r->hdr_have < 2 ? 2 : header_size(r->hdr[1]);
            if (r->hdr_have >= target) break;
            size_t take = target - r->hdr_have;
            if (take > len - i) take = len - i;
            memcpy(r->hdr + r->hdr_have, data + i, take);
            r->hdr_have = (uint8_t)(r->hdr_have + take);
            i += take;
        }
        h = r->hdr;
        have = r->hdr_have;
    }

    size_t need;
    uint64_t flen = 0;
    int rc = check_header(r, h, have, &need, &flen);
    if (rc) return rc;
    if (need == 0 || have < need) {
        if (h != r->hdr) { /* have < need <= WS_MAX_HEADER here */
            memcpy(r->hdr, h, have);
            r->hdr_have = (uint8_t)have;
            i = len;
        }
        *pos = i;
        return 0;
    }
    if (h != r->hdr)
        i += need;
    else
        r->hdr_have = 0;
    *pos = i;
    start_frame(r, h, need, flen);
    return 0;
}

/* Appends to the gather buffer. Growth doubles to keep a trickled message linear, but
 * is clamped to what the headers have declared: the message's exact size once its
 * final frame is known, else the configured limit. */
static int gather(struct ws_reader *r, const uint8_t *p, size_t n)
{
    if (n > SIZE_MAX - r->buf_len) return WS_CLOSE_TOO_BIG; /* only with a 32-bit size_t */
    size_t need = r->buf_len + n;
    if (need > r->buf_cap) {
        uint64_t lim =
            r->frame_fin ? r->msg_len + n + r->frame_left : wire_limit(r, r->msg_rsv1 != 0);
        if (lim > SIZE_MAX) lim = SIZE_MAX;
        size_t want = r->buf_cap ? r->buf_cap * 2 : GATHER_MIN;
        if (want < r->buf_cap || want < need) want = need;
        if (want > lim) want = (size_t)lim;
        uint8_t *nb = realloc(r->buf, want);
        if (!nb) return WS_CLOSE_INTERNAL;
        r->buf = nb;
        r->buf_cap = want;
    }
    memcpy(r->buf + r->buf_len, p, n);
    r->buf_len = need;
    return 0;
}

static int deliver_control(struct ws_reader *r, uint8_t *d, size_t dlen,
                           const struct ws_reader_callbacks *cb, void *ud)
{
    unsigned op = r->frame_op;
    unsigned code = 0;
    r->state = ST_HDR;
    if (op == WS_OP_CLOSE) {
        code = WS_CLOSE_NO_STATUS;
        if (dlen == 1) return WS_CLOSE_PROTOCOL;
        if (dlen >= 2) {
            code = (unsigned)d[0] << 8 | d[1];
            if (!ws_close_code_valid(code)) return WS_CLOSE_PROTOCOL;
            if (!ws_utf8_valid(d + 2, dlen - 2)) return WS_CLOSE_BAD_DATA;
            d += 2;
            dlen -= 2;
        }
        /* Set before the callback so a reader inspected from it already reads closed. */
        r->state = ST_CLOSED;
    }
    int rc = cb->on_control ? cb->on_control(ud, (enum ws_opcode)op, code, d, dlen) : 0;
    if (rc < 0) return rc;
    if (op == WS_OP_CLOSE) {
        fail(r, 0);
        return 0;
    }
    if (r->ctl) { /* a split control frame is rare; do not keep its buffer */
        free(r->ctl);
        r->ctl = NULL;
        r->ctl_len = 0;
    }
    return 0;
}

static int control_payload(struct ws_reader *r, uint8_t *p, size_t n, bool whole,
                           const struct ws_reader_callbacks *cb, void *ud)
{
    if (whole) return deliver_control(r, p, n, cb, ud);
    if (!r->ctl) {
        r->ctl = malloc(WS_MAX_CONTROL);
        if (!r->ctl) return WS_CLOSE_INTERNAL;
    }
    if (n) memcpy(r->ctl + r->ctl_len, p, n);
    r->ctl_len = (uint8_t)(r->ctl_len + n);
    if (r->frame_left) return 0;
    return deliver_control(r, r->ctl, r->ctl_len, cb, ud);
}

static void end_message(struct ws_reader *r)
{
    r->state = ST_HDR;
    r->msg_op = 0;
    r->msg_rsv1 = 0;
    r->msg_len = 0;
    r->utf8 = WS_UTF8_ACCEPT;
}

/* Handles data[0..n) of the current frame's payload (n may be 0 for an empty frame).
 * Returns 0, a close code, or a callback's negative value; the caller fails on non-0. */
static int frame_payload(struct ws_reader *r, uint8_t *p, size_t n,
                         const struct ws_reader_callbacks *cb, void *ud)
{
    bool whole = r->frame_pos == 0 && n == r->frame_left;
    if (!(r->flags & WS_READER_CLIENT)) ws_mask(p, n, r->mask, r->frame_pos);
    r->frame_pos += n;
    r->frame_left -= n;
    if (r->frame_op & 0x8u) return control_payload(r, p, n, whole, cb, ud);

    bool done = r->frame_left == 0;
    bool last = done && r->frame_fin;
    if (r->msg_op == WS_OP_TEXT && !r->msg_rsv1) {
        r->utf8 = ws_utf8_feed(r->utf8, p, n);
        if (r->utf8 == WS_UTF8_REJECT) return WS_CLOSE_BAD_DATA;
        if (last && r->utf8 != WS_UTF8_ACCEPT) return WS_CLOSE_BAD_DATA;
    }

    enum ws_opcode op = (enum ws_opcode)r->msg_op;
    bool rsv1 = r->msg_rsv1 != 0;
    if (whole && last && r->msg_len == 0) {
        /* The whole message is in the caller's buffer: no copy. */
        end_message(r);
        int rc = cb->on_message ? cb->on_message(ud, op, rsv1, p, n) : 0;
        return rc < 0 ? rc : 0;
    }
    if (n) {
        int rc = gather(r, p, n);
        if (rc) return rc;
        r->msg_len += n;
    }
    if (!done) return 0;
    if (!last) {
        r->state = ST_HDR;
        return 0;
    }
    /* Detach the buffer first so the reader is between messages during the callback. */
    uint8_t *buf = r->buf;
    size_t blen = r->buf_len;
    r->buf = NULL;
    r->buf_len = r->buf_cap = 0;
    end_message(r);
    /* An empty fragmented message has no buffer; still hand over a valid pointer. */
    int rc = cb->on_message ? cb->on_message(ud, op, rsv1, buf ? buf : p, blen) : 0;
    /* Idle connections hold no heap, so the buffer never outlives its message. */
    free(buf);
    return rc < 0 ? rc : 0;
}

/* The common frame from a client, taken in one step: between messages, a final,
 * unfragmented, uncompressed text or binary frame, masked, under 126 bytes, lying whole
 * in data[*pos..len). Everything such a frame can break is checked here too (its size
 * against the limit, its UTF-8); anything else, including every error the header
 * could carry, is left to the general path. Returns 0 when it stopped (at a frame it
 * does not take, or the end), else what frame_payload would have returned. Why: echo
 * and chat traffic is almost all such frames, and the general path's header copy,
 * state stores and per-frame dispatch cost ~20 ns per 32-byte message where this
 * takes ~10 (docs/benchmarks.md). */
static int small_frames(struct ws_reader *r, uint8_t *data, size_t len, size_t *pos,
                        const struct ws_reader_callbacks *cb, void *ud)
{
    size_t i = *pos;
    while (len - i >= 6 && r->state == ST_HDR) {
        unsigned b0 = data[i], b1 = data[i + 1];
        size_t n = b1 & 0x7Fu;
        if ((b0 != 0x81u && b0 != 0x82u) || !(b1 & 0x80u) || n > 125 || n > len - i - 6 ||
            n > r->max_message_size)
            break;
        uint8_t *p = data + i + 6;
        ws_mask(p, n, data + i + 2, 0);
        i += 6 + n;
        *pos = i;
        if (b0 == 0x81u && !ws_utf8_valid(p, n)) return WS_CLOSE_BAD_DATA;
        int rc = cb->on_message ? cb->on_message(ud, (enum ws_opcode)(b0 & 0x0Fu), false, p, n) : 0;
        if (rc < 0) return rc;
    }
    return 0;
}

int ws_reader_feed(struct ws_reader *r, uint8_t *data, size_t len,
                   const struct ws_reader_callbacks *cb, void *ud)
{
    size_t i = 0;
    while (i < len && r->state != ST_CLOSED) {
        int rc;
        if (r->state == ST_HDR) {
            if (!r->hdr_have && !r->msg_op && !(r->flags & WS_READER_CLIENT)) {
                rc = small_frames(r, data, len, &i, cb, ud);
                if (rc) return fail(r, rc);
                if (i == len || r->state != ST_HDR) continue;
            }
            rc = read_header(r, data, len, &i);
            if (rc) return fail(r, rc);
            if (r->state != ST_PAYLOAD) break;
            if (r->frame_left) continue;
            rc = frame_payload(r, data + i, 0, cb, ud); /* empty frame: complete now */
        } else {
            size_t n = len - i;
            if (n > r->frame_left) n = (size_t)r->frame_left;
            rc = frame_payload(r, data + i, n, cb, ud);
            i += n;
        }
        if (rc) return fail(r, rc);
    }
    return 0;
}
