/* RFC 6455 frame primitives shared by the server and our clients: opcodes, close
 * codes, the header encoder and the masking transform. */
#ifndef WSHUB_WS_FRAME_H
#define WSHUB_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
    WS_CLOSE_ABNORMAL = 1006,  /* never sent on the wire */
    WS_CLOSE_BAD_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_RESTART = 1012,
    WS_CLOSE_TRY_AGAIN = 1013,
};

#define WS_MAX_HEADER  14  /* 2 + 8 (length) + 4 (mask) */
#define WS_MAX_CONTROL 125 /* control frame payload limit */

/* 1 when a close code may appear in a received close frame: 1000-1003, 1007-1014
 * (IANA-registered, including 1012-1014), 3000-4999. 1004-1006, 1015 and the rest of
 * 0-2999 are not. */
int ws_close_code_valid(unsigned code);

/* Writes a frame header into out and returns its length (2..14). mask is NULL for
 * server frames (never masked); for client frames it is the 4-byte key, which is
 * written after the length. */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], enum ws_opcode op, bool fin, bool rsv1,
                       uint64_t payload_len, const uint8_t *mask);

/* XORs data[0..len) with the 4-byte mask, starting at position `offset` of the
 * masked payload (so a payload processed in pieces keeps its phase). Works a machine
 * word at a time; any alignment. Masking and unmasking are the same operation. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

#endif
