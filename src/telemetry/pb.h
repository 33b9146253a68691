/* A minimal protocol buffers writer (encoding only), enough for OTLP: varints,
 * fixed32/fixed64, doubles, length-delimited bytes/strings and nested messages.
 *
 * Nested messages reserve one byte for their length (pb_begin) and, when the
 * finished body needs a longer varint, slide it forward (pb_end): no sizing pass and
 * no allocation per field. The output buffer grows by doubling and is reused from
 * one request to the next (pb_reset), so a steady exporter allocates nothing.
 *
 * Errors are sticky: after an allocation failure every call is a no-op and
 * pb->failed stays set; check it once at the end.
 *
 * Ownership: struct pb owns buf; release it with pb_free. Not thread-safe: one
 * writer per thread (the exporter's). */
#ifndef WSHUB_TELEMETRY_PB_H
#define WSHUB_TELEMETRY_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pb_wire { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

struct pb {
    uint8_t *buf;
    size_t len, cap;
    bool failed;
};

void pb_init(struct pb *pb);
void pb_free(struct pb *pb);
static inline void pb_reset(struct pb *pb)
{
    pb->len = 0;
    pb->failed = false;
}

/* Makes room for `more` bytes after pb->len (for writing into pb->buf directly);
 * false on allocation failure. */
bool pb_reserve(struct pb *pb, size_t more);

/* Appends raw bytes (an already-encoded message or a packed run). */
void pb_raw(struct pb *pb, const void *data, size_t n);

void pb_tag(struct pb *pb, uint32_t field, enum pb_wire wire);
void pb_uvarint(struct pb *pb, uint64_t v); /* bare varint, no tag */

void pb_varint(struct pb *pb, uint32_t field, uint64_t v);
void pb_int64(struct pb *pb, uint32_t field, int64_t v); /* two's complement varint */
void pb_bool(struct pb *pb, uint32_t field, bool v);
void pb_fixed32(struct pb *pb, uint32_t field, uint32_t v);
void pb_fixed64(struct pb *pb, uint32_t field, uint64_t v);
void pb_double(struct pb *pb, uint32_t field, double v);
void pb_bytes(struct pb *pb, uint32_t field, const void *data, size_t n);
void pb_string(struct pb *pb, uint32_t field, const char *s); /* NUL-terminated */

/* Bare little-endian values, for packed repeated fields inside pb_begin/pb_end. */
void pb_put_fixed64(struct pb *pb, uint64_t v);
void pb_put_double(struct pb *pb, double v);

/* Opens a length-delimited field (a nested message or a packed run); returns a mark
 * to hand to pb_end once its body has been written. */
size_t pb_begin(struct pb *pb, uint32_t field);
void pb_end(struct pb *pb, size_t mark);

/* Bytes a varint of v takes (1..10). */
size_t pb_varint_size(uint64_t v);

#endif
