/* permessage-deflate data path (see ws/deflate.h): bounded inflation of client
 * messages and compress-once of server frames, with zlib's raw deflate format.
 *
 * Everything reusable lives per thread: the inflater shared by connections that
 * agreed client_no_context_takeover, one compressor per server window size (almost
 * always just the 15-bit one), the output buffers, and the compress-once cache. A
 * connection keeps its own inflater only when the client carries context between
 * messages. No lock is taken: a worker's connections are only touched by it. */
#include "ws/deflate.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "base/stats.h"
#include "ws/frame.h"

/* Output buffers above this size are released after their message instead of kept
 * for the next one. */
#define KEEP_MAX (64u * 1024u)
/* First output buffer: enough for most chat messages without a regrowth. */
#define OUT_MIN 4096u
/* Compression level: zlib's default trades well for text; the cost is paid once per
 * message and thread, not per recipient. */
#define LEVEL     Z_DEFAULT_COMPRESSION
#define WBITS_MIN 9
#define WBITS_N   (15 - WBITS_MIN + 1)

static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

struct outbuf {
    uint8_t *p;
    size_t cap;
};

struct cache_slot {
    struct wh_msg *src; /* referenced, so the pointer cannot be reused meanwhile */
    struct wh_msg *out; /* referenced; NULL: src goes out uncompressed */
};

static _Thread_local z_stream *shared_inflater; /* raw, 15-bit window */
/* Inflaters of context-keeping connections, by slot (index 0 unused); free slots are
 * chained through slot_next. */
static _Thread_local z_stream **slot_z;
static _Thread_local uint16_t *slot_next;
static _Thread_local uint32_t slot_cap; /* entries, index 0 included */
static _Thread_local uint16_t slot_free;
static _Thread_local z_stream *deflaters[WBITS_N];
static _Thread_local struct outbuf inbuf, defbuf;
static _Thread_local struct cache_slot cache[WBITS_N];
static _Thread_local int per_recipient = -1; /* bench switch, read once */

static z_stream *inflater_new(int wbits)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    /* inflate accepts a window of 8 bits; a client asked for 8 that actually writes
     * with 9 (zlib's own deflate cannot do 8) would then fail, so read with >= 9. */
    if (wbits < WBITS_MIN) wbits = WBITS_MIN;
    if (inflateInit2(z, -wbits) != Z_OK) {
        free(z);
        return NULL;
    }
    return z;
}

static void inflater_free(z_stream *z)
{
    if (!z) return;
    inflateEnd(z);
    free(z);
}

/* A slot for z, growing the table by doubling up to its limit. 0 when full or out of
 * memory. */
static uint16_t slot_take(z_stream *z)
{
    if (!slot_free) {
        uint32_t ncap = slot_cap ? slot_cap * 2 : 64;
        if (ncap > WS_DEFLATE_MAX_INFLATERS + 1) ncap = WS_DEFLATE_MAX_INFLATERS + 1;
        if (ncap <= slot_cap) return 0;
        z_stream **nz = realloc(slot_z, ncap * sizeof *nz);
        if (!nz) return 0;
        slot_z = nz;
        uint16_t *nn = realloc(slot_next, ncap * sizeof *nn);
        if (!nn) return 0;
        slot_next = nn;
        /* Chain the new slots so that the lowest is taken first. */
        for (uint32_t i = ncap - 1; i >= (slot_cap ? slot_cap : 1); i--) {
            slot_z[i] = NULL;
            slot_next[i] = slot_free;
            slot_free = (uint16_t)i;
        }
        slot_cap = ncap;
    }
    uint16_t i = slot_free;
    slot_free = slot_next[i];
    slot_z[i] = z;
    return i;
}

void ws_deflate_conn_free(struct ws_deflate *d)
{
    if (!d->slot) return;
    inflater_free(slot_z[d->slot]);
    slot_z[d->slot] = NULL;
    slot_next[d->slot] = slot_free;
    slot_free = d->slot;
    d->slot = 0;
}

static int outbuf_grow(struct outbuf *b, size_t want)
{
    if (want <= b->cap) return 0;
    uint8_t *np = realloc(b->p, want);
    if (!np) return -1;
    b->p = np;
    b->cap = want;
    return 0;
}

void ws_deflate_trim(void)
{
    if (inbuf.cap > KEEP_MAX) {
        free(inbuf.p);
        inbuf.p = NULL;
        inbuf.cap = 0;
    }
}

int ws_deflate_inflate(struct ws_deflate *d, const struct ws_deflate_params *p, const uint8_t *data,
                       size_t len, uint64_t max_size, uint8_t **out, size_t *out_len)
{
    z_stream *z;
    if (p->flags & WS_DEFLATE_CLIENT_NCT) {
        if (!shared_inflater && !(shared_inflater = inflater_new(15))) return WS_CLOSE_INTERNAL;
        z = shared_inflater;
        inflateReset(z);
    } else {
        if (!d->slot) {
            z = inflater_new(p->client_wbits);
            if (!z) return WS_CLOSE_INTERNAL;
            d->slot = slot_take(z);
            if (!d->slot) {
                inflater_free(z);
                return slot_cap > WS_DEFLATE_MAX_INFLATERS ? WS_CLOSE_TRY_AGAIN : WS_CLOSE_INTERNAL;
            }
        }
        z = slot_z[d->slot];
    }

    /* The buffer may hold one byte more than the limit: reaching it proves the
     * message too big without inflating any further. */
    uint64_t hard = max_size < SIZE_MAX - 1 ? max_size + 1 : SIZE_MAX;
    size_t have = 0;
    bool in_tail = false;
    z->next_in = (Bytef *)(uintptr_t)data;
    z->avail_in = 0;
    size_t left = len;
    for (;;) {
        if (z->avail_in == 0 && left) {
            /* avail_in is 32 bits wide: feed huge inputs in slices. */
            uInt n = left > (1u << 30) ? (1u << 30) : (uInt)left;
            z->avail_in = n;
            left -= n;
        } else if (z->avail_in == 0 && !in_tail) {
            z->next_in = (Bytef *)(uintptr_t)tail;
            z->avail_in = sizeof tail;
            in_tail = true;
        }
        if (have == inbuf.cap) {
            if (have >= hard) return WS_CLOSE_TOO_BIG;
            size_t want = inbuf.cap ? inbuf.cap * 2 : OUT_MIN;
            if (want < inbuf.cap || want > hard) want = (size_t)hard;
            if (outbuf_grow(&inbuf, want) < 0) return WS_CLOSE_INTERNAL;
        }
        size_t room = inbuf.cap - have;
        if (room > (1u << 30)) room = 1u << 30;
        z->next_out = inbuf.p + have;
        z->avail_out = (uInt)room;
        int rc = inflate(z, Z_SYNC_FLUSH);
        have += room - z->avail_out;
        if (have > max_size) return WS_CLOSE_TOO_BIG;
        if (rc == Z_STREAM_END) {
            /* A final block ends the stream: what follows may only be our tail (or
             * its prefix), and the next message starts a new stream. */
            bool rest_ok =
                left == 0 &&
                (in_tail || z->avail_in == 0 ||
                 (z->avail_in <= sizeof tail && memcmp(z->next_in, tail, z->avail_in) == 0));
            inflateReset(z);
            if (!rest_ok) return WS_CLOSE_PROTOCOL;
            break;
        }
        if (rc == Z_MEM_ERROR) return WS_CLOSE_INTERNAL;
        if (rc != Z_OK && rc != Z_BUF_ERROR) return WS_CLOSE_PROTOCOL;
        if (in_tail && z->avail_in == 0 && (z->avail_out > 0 || rc == Z_BUF_ERROR)) break;
        if (rc == Z_BUF_ERROR && z->avail_in > 0 && z->avail_out > 0)
            return WS_CLOSE_PROTOCOL; /* no progress possible */
    }
    *out = inbuf.p ? inbuf.p : (uint8_t *)(uintptr_t)tail; /* a valid pointer if empty */
    *out_len = have;
    return 0;
}

static z_stream *deflater_for(unsigned wbits)
{
    z_stream **slot = &deflaters[wbits - WBITS_MIN];
    if (*slot) return *slot;
    z_stream *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    /* memLevel 8 is zlib's default; a smaller window uses less of everything. */
    if (deflateInit2(z, LEVEL, Z_DEFLATED, -(int)wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    *slot = z;
    return z;
}

/* Compresses payload into a new frame, or returns NULL (see ws_deflate_frame). */
static struct wh_msg *compress_frame(unsigned op, const uint8_t *payload, size_t len,
                                     unsigned wbits)
{
    z_stream *z = deflater_for(wbits);
    if (!z || len > (1u << 30)) return NULL;
    deflateReset(z); /* server_no_context_takeover: every message stands alone */
    /* Room for the sync flush; a frame that would not shrink is not worth sending. */
    size_t cap = deflateBound(z, (uLong)len) + 16;
    if (outbuf_grow(&defbuf, cap) < 0) return NULL;
    z->next_in = (Bytef *)(uintptr_t)payload;
    z->avail_in = (uInt)len;
    z->next_out = defbuf.p;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    size_t clen = cap - z->avail_out;
    struct wh_msg *m = NULL;
    /* RFC 7692 section 7.2.1: drop the 00 00 FF FF that the sync flush ends with. */
    if ((rc == Z_OK || rc == Z_BUF_ERROR) && z->avail_in == 0 && clen >= 4 &&
        memcmp(defbuf.p + clen - 4, tail, 4) == 0) {
        clen -= 4;
        if (clen < len) {
            uint8_t hdr[WS_MAX_HEADER];
            size_t hl = ws_frame_header(hdr, (enum ws_opcode)op, true, true, clen, NULL);
            m = msg_new(hl + clen);
            if (m) {
                memcpy(m->data, hdr, hl);
                memcpy(m->data + hl, defbuf.p, clen);
                STAT_INC(ws_deflate_msgs_out);
                STAT_ADD(ws_deflate_bytes_out_raw, len);
                STAT_ADD(ws_deflate_bytes_out_compressed, clen);
            }
        } else {
            STAT_INC(ws_deflate_incompressible);
        }
    }
    if (defbuf.cap > KEEP_MAX) {
        free(defbuf.p);
        defbuf.p = NULL;
        defbuf.cap = 0;
    }
    return m;
}

struct wh_msg *ws_deflate_frame(struct wh_msg *src, const struct ws_deflate_params *p,
                                size_t threshold)
{
    if (!(p->flags & WS_DEFLATE_ON) || src->len < 2) return NULL;
    const uint8_t *d = src->data;
    unsigned op = d[0] & 0x0Fu;
    if ((op != WS_OP_TEXT && op != WS_OP_BINARY) || !(d[0] & 0x80u) || (d[0] & 0x70u)) return NULL;
    size_t hl = 2;
    uint64_t plen = d[1] & 0x7Fu;
    if (plen == 126) {
        hl = 4;
        plen = src->len >= 4 ? ((uint64_t)d[2] << 8 | d[3]) : 0;
    } else if (plen == 127) {
        hl = 10;
        plen = 0;
        for (size_t k = 2; k < 10 && k < src->len; k++)
            plen = plen << 8 | d[k];
    }
    if (hl + plen != src->len || plen < threshold || plen == 0) return NULL;

    unsigned wbits = p->server_wbits < WBITS_MIN ? 15 : p->server_wbits; /* 4 bits: at most 15 */
    if (per_recipient < 0) {
        const char *e = getenv("WSHUB_BENCH_COMPRESS_PER_RECIPIENT");
        per_recipient = e && *e == '1';
    }
    if (per_recipient) return compress_frame(op, d + hl, (size_t)plen, wbits);

    struct cache_slot *c = &cache[wbits - WBITS_MIN];
    if (c->src == src) {
        STAT_INC(ws_deflate_cache_hits);
        return c->out ? msg_ref(c->out) : NULL;
    }
    struct wh_msg *out = compress_frame(op, d + hl, (size_t)plen, wbits);
    msg_unref(c->src);
    msg_unref(c->out);
    c->src = msg_ref(src);
    c->out = out ? msg_ref(out) : NULL;
    return out;
}

void ws_deflate_thread_cleanup(void)
{
    for (int i = 0; i < WBITS_N; i++) {
        msg_unref(cache[i].src);
        msg_unref(cache[i].out);
        cache[i].src = cache[i].out = NULL;
        if (deflaters[i]) {
            deflateEnd(deflaters[i]);
            free(deflaters[i]);
            deflaters[i] = NULL;
        }
    }
    inflater_free(shared_inflater);
    shared_inflater = NULL;
    /* Connections free their slots; anything left belonged to ones never freed. */
    for (uint32_t i = 1; i < slot_cap; i++)
        inflater_free(slot_z[i]);
    free(slot_z);
    free(slot_next);
    slot_z = NULL;
    slot_next = NULL;
    slot_cap = 0;
    slot_free = 0;
    free(inbuf.p);
    free(defbuf.p);
    inbuf = (struct outbuf){0};
    defbuf = (struct outbuf){0};
}
