/* Incremental RFC 6455 frame reader: takes bytes as the socket delivers them, in any
 * split, and reports whole messages and control frames. It never buffers more than it
 * must: a message that arrives whole within one call is handed over in place
 * (unmasked in the caller's buffer, no copy); only a message spread over several
 * frames or reads is gathered in the reader's own buffer, and only after its declared
 * size has been checked against the limit. A declared 2^63-byte frame allocates
 * nothing: it is refused from its header.
 *
 * Protocol errors, each reported as the close code the peer must get:
 *   1002: masked/unmasked contrary to the mode; RSV bits not allowed; reserved
 *         opcode; control frame fragmented or over 125 bytes (a control frame must
 *         use the 7-bit length form, so 126/127 there is refused from byte 2);
 *         continuation with no message started; a new data frame inside a
 *         fragmented message; a 64-bit length with the top bit set; close payload of
 *         1 byte or with an invalid code (ws_close_code_valid). A non-minimal length
 *         encoding of a data frame is accepted (RFC 6455 asks senders for the minimal
 *         form but does not require receivers to refuse it).
 *   1007: text (or a close reason) that is not UTF-8, detected at the first invalid
 *         byte even in the middle of a frame (fail fast), or text ending mid-sequence.
 *   1009: a message (summed over its fragments) over max_message_size, detected from
 *         the frame headers before its payload is buffered. A compressed message
 *         (RSV1) may exceed it on the wire by about 4% + 64 bytes, deflate's
 *         worst-case growth; its inflated size is the inflater's to limit.
 *
 * Ownership: the reader owns its gathering buffers (freed by ws_reader_free, after each
 * gathered message or split control frame is delivered, and on a close frame or an
 * error). Data passed to callbacks is valid only during the call; the callee may
 * modify it in place. Memory when idle: sizeof(struct ws_reader) and nothing on the
 * heap. A callback's negative return also closes the reader (the rest of the input
 * was not consumed, so it could not resume). */
#ifndef WSHUB_WS_READER_H
#define WSHUB_WS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws/frame.h"

enum ws_reader_flags {
    WS_READER_SERVER = 0,          /* frames from a client: must be masked */
    WS_READER_CLIENT = 1 << 0,     /* frames from a server: must not be masked */
    WS_READER_ALLOW_RSV1 = 1 << 1, /* permessage-deflate negotiated: RSV1 allowed on
                                      the first frame of a data message */
};

struct ws_reader_callbacks {
    /* A complete data message. opcode: WS_OP_TEXT or WS_OP_BINARY; rsv1: the RSV1
     * bit of its first frame (compressed); text has been validated as UTF-8 unless
     * rsv1 is set (the inflater validates after inflating). Return 0 to go on, or a
     * negative value to stop: ws_reader_feed then returns that value at once. */
    int (*on_message)(void *ud, enum ws_opcode opcode, bool rsv1, uint8_t *data, size_t len);
    /* A control frame: WS_OP_PING, WS_OP_PONG, or WS_OP_CLOSE. For close, code is the
     * received code (WS_CLOSE_NO_STATUS when the payload is empty) and data/len the
     * reason (validated UTF-8); for ping/pong code is 0 and data/len the payload.
     * Same return convention as on_message. After a close frame the reader ignores
     * everything that follows. */
    int (*on_control)(void *ud, enum ws_opcode opcode, unsigned code, uint8_t *data, size_t len);
};

struct ws_reader {
    /* limits and mode */
    uint64_t max_message_size;
    uint32_t flags;
    /* current frame */
    uint8_t hdr[WS_MAX_HEADER]; /* header bytes gathered so far */
    uint8_t hdr_have;
    uint8_t state; /* internal: header / payload / closed */
    uint8_t frame_op;
    uint8_t frame_fin;
    uint8_t mask[4];
    uint64_t frame_left; /* payload bytes of the current frame still to come */
    uint64_t frame_pos;  /* payload bytes of the current frame seen (mask phase) */
    /* current message */
    uint8_t msg_op; /* 0 when no data message is in progress */
    uint8_t msg_rsv1;
    uint32_t utf8;    /* ws_utf8_feed state for a text message */
    uint64_t msg_len; /* bytes of the message so far */
    uint8_t *buf;     /* gathered message payload (heap), or NULL */
    size_t buf_len, buf_cap;
    uint8_t *ctl; /* gathered control payload when split (heap, 125 B) */
    uint8_t ctl_len;
};

void ws_reader_init(struct ws_reader *r, uint64_t max_message_size, uint32_t flags);
void ws_reader_free(struct ws_reader *r);

/* Consumes data[0..len) entirely (unmasking it in place). Returns 0 when all went
 * well, a close code (> 0, see above; 1011 when a gather buffer cannot be allocated)
 * on a protocol error (the reader is then closed and ignores further input), or the
 * negative value a callback returned to stop. */
int ws_reader_feed(struct ws_reader *r, uint8_t *data, size_t len,
                   const struct ws_reader_callbacks *cb, void *ud);

/* The wire limit of a compressed (RSV1) message: max_message_size plus deflate's
 * worst-case growth (see the 1009 rule above). */
uint64_t ws_reader_compressed_limit(uint64_t max_message_size);

/* 1 when a message is partly received (a fragmented message or a frame in progress). */
int ws_reader_busy(const struct ws_reader *r);

#endif
