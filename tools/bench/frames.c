/* wshub-bench echo and churn frames: MASK_POOL pre-built, pre-masked copies of one
 * frame; only the send time is written (and masked) per message. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct templates tmpl;

void templates_build(size_t size, bool binary)
{
    tmpl.size = size;
    tmpl.op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    for (unsigned m = 0; m < MASK_POOL; m++) {
        uint8_t hdr[WS_MAX_HEADER];
        size_t hl = ws_frame_header(hdr, (enum ws_opcode)tmpl.op, true, false, size, g.masks[m]);
        tmpl.hdr_len = hl;
        tmpl.frame_len = hl + size;
        free(tmpl.tmpl[m]);
        tmpl.tmpl[m] = xcalloc(1, tmpl.frame_len);
        memcpy(tmpl.tmpl[m], hdr, hl);
        uint8_t *p = tmpl.tmpl[m] + hl;
        for (size_t i = 0; i < size; i++)
            p[i] = binary ? (uint8_t)(i * 7 + 1) : (uint8_t)'x';
        if (binary)
            memset(p, 0, 8);
        else
            memset(p, '0', 16);
        ws_mask(p, size, g.masks[m], 0);
    }
}

/* Appends one frame (timestamp written later by stamp_frames). */
void frame_append(struct conn *c)
{
    unsigned m = g.mask_next++ & (MASK_POOL - 1);
    memcpy(c->out + c->out_len, tmpl.tmpl[m], tmpl.frame_len);
    c->out_len += (uint32_t)tmpl.frame_len;
}

/* Writes the send time into every frame from c->stamp_from on (frames are contiguous
 * and all tmpl.frame_len long; each carries its own mask in its header). */
void stamp_frames(struct conn *c)
{
    if (c->stamp_from >= c->out_len) return;
    int64_t t = now_ns();
    uint8_t ts[16];
    size_t tl;
    if (tmpl.op == WS_OP_TEXT) {
        bench_wire_to_hex16(ts, (uint64_t)t);
        tl = 16;
    } else {
        for (int k = 0; k < 8; k++)
            ts[k] = (uint8_t)((uint64_t)t >> (8 * k));
        tl = 8;
    }
    for (uint32_t off = c->stamp_from; off + tmpl.frame_len <= c->out_len;
         off += (uint32_t)tmpl.frame_len) {
        uint8_t *f = c->out + off;
        const uint8_t *mk = f + tmpl.hdr_len - 4;
        uint8_t *p = f + tmpl.hdr_len;
        for (size_t k = 0; k < tl; k++)
            p[k] = ts[k] ^ mk[k & 3];
    }
    c->stamp_from = c->out_len;
}

/* The send time carried by an echoed payload; false if it does not look like ours. */
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
    *t = (int64_t)v;
    return *t > 0 && *t <= g.now;
}
