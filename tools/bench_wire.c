/* bench_wire: see bench_wire.h. */
#include "bench_wire.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(char c)
{
    return (unsigned)(c - '0') <= 9;
}

/* An unsigned decimal integer of 1 to 19 digits (so it cannot overflow) at p. */
static bool parse_uint(const char *p, const char *end, uint64_t *out)
{
    const char *stop = end - p > 19 ? p + 19 : end;
    if (p >= stop || !is_digit(*p)) return false;
    uint64_t v = 0;
    while (p < stop && is_digit(*p))
        v = v * 10 + (uint64_t)(*p++ - '0');
    if (p < end && is_digit(*p)) return false; /* 20 digits or more */
    *out = v;
    return true;
}

bool bench_wire_find_uint(const char *s, size_t len, const char *key, uint64_t *out)
{
    char needle[32];
    size_t klen = strlen(key);
    if (klen + 2 > sizeof needle) return false;
    needle[0] = '"';
    memcpy(needle + 1, key, klen);
    needle[klen + 1] = '"';
    size_t nlen = klen + 2;

    const char *end = s + len;
    const char *p = s;
    while ((size_t)(end - p) >= nlen) {
        const char *hit = memmem(p, (size_t)(end - p), needle, nlen);
        if (!hit) return false;
        const char *q = hit + nlen;
        while (q < end && is_ws(*q))
            q++;
        if (q < end && *q == ':') {
            q++;
            while (q < end && is_ws(*q))
                q++;
            if (parse_uint(q, end, out)) return true;
        }
        p = hit + 1;
    }
    return false;
}

/* Parses "NUM:NUM:NUM:" (the content marker after "wsb:"). */
static bool parse_marker(const char *p, const char *end, uint64_t v[3])
{
    for (int k = 0; k < 3; k++) {
        if (!parse_uint(p, end, &v[k])) return false;
        while (p < end && is_digit(*p))
            p++;
        if (p >= end || *p != ':') return false;
        p++;
    }
    return true;
}

/* At p: optional whitespace, ':', optional whitespace, an unsigned integer. */
static const char *member_uint(const char *p, const char *end, uint64_t *out)
{
    while (p < end && is_ws(*p))
        p++;
    if (p >= end || *p != ':') return NULL;
    p++;
    while (p < end && is_ws(*p))
        p++;
    if (!parse_uint(p, end, out)) return NULL;
    while (p < end && is_digit(*p))
        p++;
    return p;
}

static uint32_t load32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static const char k_pub[4] = {'"', 'p', 'u', 'b'}, k_wsb[4] = {'"', 'w', 's', 'b'};

/* Cheap test, inlined in the scan loop: may p (a '"', 6 bytes or more before end) start
 * the "pub" member or the "wsb: marker? */
static inline bool candidate(const char *p)
{
    uint32_t w = load32(p);
    return (w == load32(k_pub) && p[4] == '"') || (w == load32(k_wsb) && p[4] == ':');
}

/* A candidate at p: 1 found (outputs set), 0 not after all (go on), -1 give up. */
static int scan_at(const char *s, size_t len, const char *p, const char *end, uint64_t *pub,
                   uint64_t *n, uint64_t *t)
{
    if (p[1] == 'p') {
        const char *q = member_uint(p + 5, end, pub);
        if (!q) return 0;
        if (end - q > 5 && !memcmp(q, ",\"n\"", 4) && (q = member_uint(q + 4, end, n)) &&
            end - q > 5 && !memcmp(q, ",\"t\"", 4) && member_uint(q + 4, end, t))
            return 1;
        return bench_wire_find_uint(s, len, "n", n) && bench_wire_find_uint(s, len, "t", t) ? 1
                                                                                            : -1;
    }
    uint64_t v[3];
    if (!parse_marker(p + 5, end, v)) return 0;
    *pub = v[0];
    *n = v[1];
    *t = v[2];
    return 1;
}

/* One pass over the quotes of the message (16 bytes at a time with SSE2): the first
 * "pub" member or "wsb: string decides. Right after "pub" the bytes as this tool sends
 * them (,"n":N,"t":T) are tried first, which is what wshub relays; any other layout
 * falls back to searching the whole message for "n" and "t". (glibc memmem sets up a
 * table per call, which costs more than this whole scan on a few hundred bytes.) */
bool bench_wire_scan_bench(const uint8_t *data, size_t len, uint64_t *pub, uint64_t *n, uint64_t *t)
{
    const char *s = (const char *)data, *end = s + len;
    const char *p = s;
    int r;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    for (; end - p >= 16 + 6; p += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned bits = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, quote));
        while (bits) {
            const char *q = p + __builtin_ctz(bits);
            bits &= bits - 1;
            if (candidate(q) && (r = scan_at(s, len, q, end, pub, n, t)) != 0) return r > 0;
        }
    }
#endif
    for (; end - p >= 6; p++)
        if (*p == '"' && candidate(p) && (r = scan_at(s, len, p, end, pub, n, t)) != 0)
            return r > 0;
    return false;
}

size_t bench_wire_utoa(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    return n;
}

void bench_wire_to_hex16(uint8_t out[16], uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int k = 15; k >= 0; k--) {
        out[k] = (uint8_t)hex[v & 15];
        v >>= 4;
    }
}

/* Eight lower-case hex digits (in[0] the most significant) in parallel, one byte per
 * lane of a 64-bit word; false if any is not one of 0-9a-f. Every byte is checked
 * against both ranges by adding a bias that carries it over 0x80 at the range's ends
 * (no lane overflows into the next: bytes with the top bit set are refused first). */
static bool hex8(const uint8_t *in, uint32_t *out)
{
    const uint64_t hi = 0x8080808080808080ull, ones = 0x0101010101010101ull;
    uint64_t x;
    memcpy(&x, in, 8);
    if (x & hi) return false;
    uint64_t ge_0 = x + ones * (0x80 - '0'), gt_9 = x + ones * (0x80 - '9' - 1);
    uint64_t ge_a = x + ones * (0x80 - 'a'), gt_f = x + ones * (0x80 - 'f' - 1);
    uint64_t digit = ge_0 & ~gt_9 & hi, alpha = ge_a & ~gt_f & hi;
    if ((digit | alpha) != hi) return false;
    /* values 0..15 per byte; then pairs, quads and the eight nibbles, first digit on top */
    uint64_t v = (x & ones * 0x0F) + (alpha >> 7) * 9;
    v = ((v << 4) | (v >> 8)) & 0x00FF00FF00FF00FFull;
    v = ((v << 8) | (v >> 16)) & 0x0000FFFF0000FFFFull;
    *out = (uint32_t)((v << 16) | (v >> 32));
    return true;
}

bool bench_wire_from_hex16(const uint8_t in[16], uint64_t *v)
{
    uint32_t a, b;
    if (!hex8(in, &a) || !hex8(in + 8, &b)) return false;
    *v = (uint64_t)a << 32 | b;
    return true;
}
