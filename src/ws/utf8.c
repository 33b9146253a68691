/* Incremental UTF-8 validation for text messages and close reasons. Text on a chat-like
 * socket is mostly ASCII, so while the state sits on a code point boundary the input is
 * tested eight bytes at a time and skipped; everything else goes through a small DFA
 * whose state is a plain integer, which is what lets a message be validated in pieces
 * split at arbitrary bytes (frames, socket reads) without buffering.
 *
 * The DFA is derived directly from the RFC 3629 section 4 grammar:
 *
 *   UTF8-1 = 00-7F
 *   UTF8-2 = C2-DF tail
 *   UTF8-3 = E0 A0-BF tail / E1-EC tail tail / ED 80-9F tail / EE-EF tail tail
 *   UTF8-4 = F0 90-BF tail tail / F1-F3 tail tail tail / F4 80-8F tail tail
 *   tail   = 80-BF
 *
 * Bytes fall into twelve classes, one per distinct role in that grammar, and the states
 * are "how much of which production is still owed". Restricting the second byte after
 * E0/ED/F0/F4 is what rejects overlongs, surrogates and code points above U+10FFFF. */
#include "ws/utf8.h"

#include <string.h>

enum {
    C_ASCII = 0, /* 00-7F */
    C_T80 = 1,   /* 80-8F: tail, also the only valid second byte after F4 */
    C_T90 = 2,   /* 90-9F: tail, valid after ED (with 80-8F) and after F0 (with A0-BF) */
    C_TA0 = 3,   /* A0-BF: tail, the only valid second byte after E0 */
    C_BAD = 4,   /* C0, C1 (always overlong), F5-FF (beyond U+10FFFF) */
    C_L2 = 5,    /* C2-DF */
    C_E0 = 6,
    C_L3 = 7, /* E1-EC, EE-EF */
    C_ED = 8,
    C_F0 = 9,
    C_L4 = 10, /* F1-F3 */
    C_F4 = 11,
};

/* Internal states. Each is kept as a bit offset (6 * index) into a per-class 64-bit
 * row holding, in 6-bit fields, the offset of the next state: a step is one load that
 * depends only on the byte, then a shift by the current state, so the loop-carried
 * dependency is a shift and a mask rather than a second table load. REJECT is index 0
 * so that "no transition" is the all-zero default. The public state is index ^ 1,
 * which maps ACCEPT to 0 and REJECT to 1 as utf8.h promises. */
enum {
    I_REJ = 0,
    I_ACC = 1,
    I_T1 = 2, /* one tail owed */
    I_T2 = 3, /* two tails owed */
    I_E0 = 4, /* after E0: A0-BF, then one tail */
    I_ED = 5, /* after ED: 80-9F, then one tail */
    I_T3 = 6, /* three tails owed */
    I_F0 = 7, /* after F0: 90-BF, then two tails */
    I_F4 = 8, /* after F4: 80-8F, then two tails */
    N_STATES = 9,
};

/* Class of every byte value, one row of 16 per high nibble. */
/* clang-format off */
static const uint8_t utf8_class[256] = {
    /* 00-7F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 1x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 2x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 3x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 4x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 5x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 6x */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 7x */
    /* continuation bytes */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 8x */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 9x */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* Ax */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, /* Bx */
    /* two-byte leads; C0 and C1 could only encode U+0000..U+007F */
    4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* Cx */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, /* Dx */
    /* three-byte leads */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 7, /* Ex */
    /* four-byte leads; F5 and up would start above U+10FFFF */
    9, 10, 10, 10, 11, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* Fx */
};
/* clang-format on */

/* E(from, to): the transition from -> to, placed in from's field of a class row. Any
 * transition not listed goes to I_REJ (a zero field). Read a row as "in which states is
 * a byte of this class acceptable, and where does it lead". */
#define E(from, to) ((uint64_t)(6u * (to)) << (6u * (from)))
static const uint64_t utf8_rows[12] = {
    [C_ASCII] = E(I_ACC, I_ACC),
    [C_T80] = E(I_T1, I_ACC) | E(I_T2, I_T1) | E(I_T3, I_T2) | E(I_ED, I_T1) | E(I_F4, I_T2),
    [C_T90] = E(I_T1, I_ACC) | E(I_T2, I_T1) | E(I_T3, I_T2) | E(I_ED, I_T1) | E(I_F0, I_T2),
    [C_TA0] = E(I_T1, I_ACC) | E(I_T2, I_T1) | E(I_T3, I_T2) | E(I_E0, I_T1) | E(I_F0, I_T2),
    [C_BAD] = 0,
    [C_L2] = E(I_ACC, I_T1),
    [C_E0] = E(I_ACC, I_E0),
    [C_L3] = E(I_ACC, I_T2),
    [C_ED] = E(I_ACC, I_ED),
    [C_F0] = E(I_ACC, I_F0),
    [C_L4] = E(I_ACC, I_T3),
    [C_F4] = E(I_ACC, I_F4),
};
#undef E

#define HIGH_BITS 0x8080808080808080ull

uint32_t ws_utf8_feed(uint32_t state, const uint8_t *p, size_t len)
{
    /* Values never produced here are treated as rejected rather than trusted. */
    uint32_t idx = state ^ 1u;
    if (idx == I_REJ || idx >= N_STATES) return WS_UTF8_REJECT;
    uint64_t off = 6u * idx;
    size_t i = 0;
    while (i < len) {
        if (off == 6u * I_ACC) {
            /* Two words per step halves the loop overhead on long ASCII runs. */
            while (len - i >= 16) {
                uint64_t a, b;
                memcpy(&a, p + i, 8);
                memcpy(&b, p + i + 8, 8);
                if ((a | b) & HIGH_BITS) break;
                i += 16;
            }
            while (len - i >= 8) {
                uint64_t a;
                memcpy(&a, p + i, 8);
                if (a & HIGH_BITS) break;
                i += 8;
            }
            if (i == len) break;
        }
        /* A block of up to eight bytes through the DFA; REJECT is absorbing (its field
         * is zero in every row), so one check per block still stops at the block that
         * holds the first bad byte. */
        size_t end = len - i > 8 ? i + 8 : len;
        for (; i < end; i++)
            off = (utf8_rows[utf8_class[p[i]]] >> off) & 63u;
        if (off == 6u * I_REJ) return WS_UTF8_REJECT;
    }
    return (uint32_t)(off / 6u) ^ 1u;
}

int ws_utf8_valid(const uint8_t *p, size_t len)
{
    return ws_utf8_feed(WS_UTF8_ACCEPT, p, len) == WS_UTF8_ACCEPT;
}
