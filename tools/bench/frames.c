/* wshub-bench echo and churn frames: one pre-built plain frame copied per message,
 * masked with its own key when its send time is written (stamp_frames), and the
 * check of every echoed payload against it. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct templates tmpl;

void templates_build(size_t size, bool binary)
{
    static const uint8_t zero_mask[4];
    tmpl.size = size;
    tmpl.op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    tmpl.ts_len = binary ? 8 : 16;
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl = ws_frame_header(hdr, (enum ws_opcode)tmpl.op, true, false, size, zero_mask);
    tmpl.hdr_len = hl;
    tmpl.frame_len = hl + size;
    free(tmpl.plain);
    tmpl.plain = xcalloc(1, tmpl.frame_len);
    memcpy(tmpl.plain, hdr, hl);
    uint8_t *p = tmpl.plain + hl;
    for (size_t i = 0; i < size; i++)
        p[i] = binary ? (uint8_t)(i * 7 + 1) : (uint8_t)'x';
    memset(p, binary ? 0 : '0', tmpl.ts_len);
}

/* Appends one frame, payload still plain: stamp_frames writes the send time and masks
 * it. The masking key is drawn now, a fresh one per frame. */
void frame_append(struct conn *c)
{
    uint8_t *f = c->out + c->out_len;
    memcpy(f, tmpl.plain, tmpl.frame_len);
    next_mask(f + tmpl.hdr_len - 4);
    c->out_len += (uint32_t)tmpl.frame_len;
}

/* XORs p[0..n) with the 4-byte key, 8 bytes at a time: a 32-byte payload is four
 * XORs, less than the call into the general ws_mask (which handles any offset). */
static inline void mask_payload(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* Writes the send time into every frame from c->stamp_from on and masks its payload
 * with the key in its header (frames are contiguous, all tmpl.frame_len long). */
void stamp_frames(struct conn *c)
{
    if (c->stamp_from >= c->out_len) return;
    int64_t t = now_ns();
    uint8_t ts[16];
    if (tmpl.op == WS_OP_TEXT) {
        bench_wire_to_hex16(ts, (uint64_t)t);
    } else {
        for (int k = 0; k < 8; k++)
            ts[k] = (uint8_t)((uint64_t)t >> (8 * k));
    }
    for (uint32_t off = c->stamp_from; off + tmpl.frame_len <= c->out_len;
         off += (uint32_t)tmpl.frame_len) {
        uint8_t *f = c->out + off;
        uint8_t *p = f + tmpl.hdr_len;
        memcpy(p, ts, tmpl.ts_len);
        mask_payload(p, tmpl.size, f + tmpl.hdr_len - 4);
    }
    c->stamp_from = c->out_len;
}

/* The send time carried by an echoed payload; false unless the whole payload is what
 * was sent: the same opcode and length, a well-formed time no later than now, and
 * every byte after it equal to the template's. */
bool echo_time(uint8_t op, const uint8_t *p, size_t len, int64_t *t)
{
    uint64_t v = 0;
    if (op != tmpl.op || len != tmpl.size) return false;
    if (op == WS_OP_TEXT) {
        if (!bench_wire_from_hex16(p, &v)) return false;
    } else {
        for (int k = 7; k >= 0; k--)
            v = (v << 8) | p[k];
    }
    if (memcmp(p + tmpl.ts_len, tmpl.plain + tmpl.hdr_len + tmpl.ts_len, len - tmpl.ts_len) != 0)
        return false;
    *t = (int64_t)v;
    return *t > 0 && *t <= g.now;
}
