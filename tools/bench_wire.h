/* bench_wire: the hot-path pieces of wshub-bench that touch bytes: a minimal parser
 * for server frame headers, the scanner that finds the bench fields in a received JSON
 * message, and fast number formatting.
 *
 * Why not wsc_feed (src/client/wsclient.h) for received frames: it is the complete,
 * defensive reader (ws/reader.h): it validates UTF-8 for every text frame, keeps a
 * per-connection state machine and reports through a callback. Measured on the test
 * machine (gcc -O2, one core, frames already in memory, a callback that does nothing):
 * wsc_feed took 19-34 ns a frame for 32-byte text frames and 33-43 ns for 260-byte
 * fan-out messages; bench_wire_header with the dispatch loop took 3.5 ns and 12 ns.
 * That is 2-4 % of a core at 1.5 million frames a second: not the main cost (a read()
 * or send() on loopback costs microseconds here), but free to avoid. The larger saving
 * is in what is done with a message: bench_wire_scan_bench finds the fields in one
 * SSE2 pass (60-90 ns for a 260-byte wshub message) where three memmem calls took
 * 170-200 ns. The load generator trusts the server under test for what it does not
 * look at (it is not a conformance checker: text is not validated); the handshake
 * still goes through wsclient's protocol core, which validates it fully. */
#ifndef WSHUB_TOOLS_BENCH_WIRE_H
#define WSHUB_TOOLS_BENCH_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_frame {
    uint8_t op;    /* opcode */
    bool fin;      /* FIN bit */
    uint8_t hlen;  /* header length: 2, 4 or 10 */
    uint64_t plen; /* payload length */
};

/* Parses a server (unmasked) frame header from p[0..avail). Returns 1 with *f filled,
 * 0 when more bytes are needed for the header, or -1 when it is not a frame a server
 * may send: masked, RSV bits set, a reserved opcode, a control frame that is
 * fragmented or longer than 125 bytes, or a 64-bit length with the top bit set. */
static inline int bench_wire_header(const uint8_t *p, size_t avail, struct bench_frame *f)
{
    if (avail < 2) return 0;
    uint8_t b0 = p[0], b1 = p[1];
    if ((b0 & 0x70) || (b1 & 0x80)) return -1;
    uint8_t op = b0 & 0x0F;
    f->op = op;
    f->fin = (b0 & 0x80) != 0;
    uint64_t len = b1 & 0x7F;
    if (op >= 8) {
        if (op > 10 || !f->fin || len > 125) return -1;
    } else if (op > 2) {
        return -1;
    }
    if (len < 126) {
        f->hlen = 2;
    } else if (len == 126) {
        if (avail < 4) return 0;
        len = ((uint64_t)p[2] << 8) | p[3];
        f->hlen = 4;
    } else {
        if (avail < 10) return 0;
        len = 0;
        for (int k = 0; k < 8; k++)
            len = (len << 8) | p[2 + k];
        if (len >> 63) return -1;
        f->hlen = 10;
    }
    f->plen = len;
    return 1;
}

/* Finds the JSON member `"key"` (key given without quotes) followed by optional
 * whitespace, ':', optional whitespace and an unsigned decimal integer, anywhere in
 * s[0..len). Member order, other members and nesting do not matter; a matching string
 * value (not followed by ':') is skipped. Returns true with *out set. */
bool bench_wire_find_uint(const char *s, size_t len, const char *key, uint64_t *out);

/* The bench fields of a fan-out message: "pub", "n" and "t" as JSON members (wshub
 * relays the payload as sent), or else the content marker "wsb:PUB:N:T:" (the
 * reference peers relay only payload.content). Returns true when all three were found.
 * Anything else (room_joined, presence, acks, ...) returns false. */
bool bench_wire_scan_bench(const uint8_t *data, size_t len, uint64_t *pub, uint64_t *n,
                           uint64_t *t);

/* Writes v in decimal to out (at least 20 bytes); returns the number of digits. */
size_t bench_wire_utoa(char *out, uint64_t v);

/* 16 lower-case hex digits of v (most significant first), and back. from_hex16
 * returns false if any of the 16 bytes is not a lower-case hex digit (0-9a-f: what
 * to_hex16 writes; an echo must come back byte for byte). */
void bench_wire_to_hex16(uint8_t out[16], uint64_t v);
bool bench_wire_from_hex16(const uint8_t in[16], uint64_t *v);

#endif
