/* Protocol buffers writer (see pb.h). Fixed-width values are written byte by byte,
 * least significant first, so the output does not depend on the host's byte order. */
#include "telemetry/pb.h"

#include <stdlib.h>
#include <string.h>

void pb_init(struct pb *pb)
{
    memset(pb, 0, sizeof *pb);
}

void pb_free(struct pb *pb)
{
    free(pb->buf);
    memset(pb, 0, sizeof *pb);
}

/* The slow path of reserve, kept out of line so that the check inlines everywhere. */
__attribute__((noinline)) static bool grow(struct pb *pb, size_t more)
{
    if (pb->failed) return false;
    size_t cap = pb->cap ? pb->cap : 4096;
    while (cap < pb->len + more)
        cap *= 2;
    uint8_t *nb = realloc(pb->buf, cap);
    if (!nb) {
        pb->failed = true;
        return false;
    }
    pb->buf = nb;
    pb->cap = cap;
    return true;
}

static inline bool reserve(struct pb *pb, size_t more)
{
    if (__builtin_expect(pb->len + more <= pb->cap && !pb->failed, 1)) return true;
    return grow(pb, more);
}

bool pb_reserve(struct pb *pb, size_t more)
{
    return reserve(pb, more);
}

void pb_raw(struct pb *pb, const void *data, size_t n)
{
    if (!n || !reserve(pb, n)) return;
    memcpy(pb->buf + pb->len, data, n);
    pb->len += n;
}

size_t pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

void pb_uvarint(struct pb *pb, uint64_t v)
{
    if (!reserve(pb, 10)) return;
    if (v < 0x80) { /* tags and most lengths */
        pb->buf[pb->len++] = (uint8_t)v;
        return;
    }
    pb->len += put_varint(pb->buf + pb->len, v);
}

void pb_tag(struct pb *pb, uint32_t field, enum pb_wire wire)
{
    pb_uvarint(pb, ((uint64_t)field << 3) | (uint64_t)wire);
}

void pb_varint(struct pb *pb, uint32_t field, uint64_t v)
{
    pb_tag(pb, field, PB_VARINT);
    pb_uvarint(pb, v);
}

void pb_int64(struct pb *pb, uint32_t field, int64_t v)
{
    pb_varint(pb, field, (uint64_t)v);
}

void pb_bool(struct pb *pb, uint32_t field, bool v)
{
    pb_varint(pb, field, v ? 1 : 0);
}

static void put_le(struct pb *pb, uint64_t v, size_t n)
{
    if (!reserve(pb, n)) return;
    for (size_t i = 0; i < n; i++)
        pb->buf[pb->len++] = (uint8_t)(v >> (8 * i));
}

void pb_put_fixed64(struct pb *pb, uint64_t v)
{
    put_le(pb, v, 8);
}

void pb_put_double(struct pb *pb, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_le(pb, bits, 8);
}

void pb_fixed32(struct pb *pb, uint32_t field, uint32_t v)
{
    pb_tag(pb, field, PB_I32);
    put_le(pb, v, 4);
}

void pb_fixed64(struct pb *pb, uint32_t field, uint64_t v)
{
    pb_tag(pb, field, PB_I64);
    put_le(pb, v, 8);
}

void pb_double(struct pb *pb, uint32_t field, double v)
{
    pb_tag(pb, field, PB_I64);
    pb_put_double(pb, v);
}

void pb_bytes(struct pb *pb, uint32_t field, const void *data, size_t n)
{
    pb_tag(pb, field, PB_LEN);
    pb_uvarint(pb, n);
    pb_raw(pb, data, n);
}

void pb_string(struct pb *pb, uint32_t field, const char *s)
{
    pb_bytes(pb, field, s, strlen(s));
}

size_t pb_begin(struct pb *pb, uint32_t field)
{
    pb_tag(pb, field, PB_LEN);
    if (!reserve(pb, 1)) return 0;
    pb->buf[pb->len++] = 0; /* the length, patched by pb_end */
    return pb->len;         /* where the body starts */
}

void pb_end(struct pb *pb, size_t mark)
{
    if (pb->failed || mark == 0) return;
    size_t body = pb->len - mark;
    size_t need = pb_varint_size(body);
    if (need > 1) {
        /* The body outgrew the one byte reserved for its length: slide it forward. */
        if (!reserve(pb, need - 1)) return;
        memmove(pb->buf + mark + need - 1, pb->buf + mark, body);
        pb->len += need - 1;
    }
    put_varint(pb->buf + mark - 1, body);
}
