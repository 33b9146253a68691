/* permessage-deflate (RFC 7692) for the server: negotiation of the extension during
 * the upgrade, inflation of compressed client messages under a size limit, and
 * compression of outgoing frames, once per message and thread.
 *
 * Design (see docs/design.md, "Compression"):
 *   - The server always answers server_no_context_takeover, so a compressed frame
 *     depends on no connection's history: one compressed twin of a fan-out frame
 *     serves every recipient that negotiated the same server window. Offers of
 *     server_max_window_bits=8 are declined (zlib cannot write a raw deflate stream
 *     with a 256-byte window).
 *   - Client to server: with client_no_context_takeover, messages are inflated by one
 *     inflater per thread, so the connection holds no zlib memory at all. Without it,
 *     the connection gets its own inflater, allocated on its first compressed message
 *     and kept in a per-thread table; the connection holds only its 16-bit index, in
 *     bytes struct ws_conn had as padding, so idle connections cost nothing. When the
 *     client allows client_max_window_bits the answer asks for WS_DEFLATE_CLIENT_WBITS
 *     at most, which bounds that inflater. A thread holds at most
 *     WS_DEFLATE_MAX_INFLATERS of them; a compressed message that would need one more
 *     closes its connection with 1013 (try again later).
 *   - Inflation runs in bounded steps into a buffer that grows only as output appears
 *     and stops with 1009 as soon as the output passes the message limit, so a
 *     compression bomb is never inflated whole. Invalid compressed data is 1002.
 *
 * Ownership: struct ws_deflate lives inside the connection; its inflater (if any) is
 * released by ws_deflate_conn_free. Per-thread state (deflaters, the shared inflater,
 * the output buffer and the compress-once cache, which holds one reference to the
 * last source frame and its compressed twin per window size) is released by
 * ws_deflate_thread_cleanup. */
#ifndef WSHUB_WS_DEFLATE_H
#define WSHUB_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"
#include "http/parser.h"

/* Largest client window the server asks for when the client lets it choose (the
 * per-connection inflater then holds a 4 KiB window instead of 32 KiB). */
#define WS_DEFLATE_CLIENT_WBITS 12

/* Longest Sec-WebSocket-Extensions response line ws_deflate_response writes. */
#define WS_DEFLATE_RESPONSE_MAX 160

enum ws_deflate_flags {
    WS_DEFLATE_ON = 1 << 0,          /* permessage-deflate agreed */
    WS_DEFLATE_CLIENT_NCT = 1 << 1,  /* client_no_context_takeover accepted */
    WS_DEFLATE_SERVER_BITS = 1 << 2, /* answer server_max_window_bits=server_wbits */
    WS_DEFLATE_CLIENT_BITS = 1 << 3, /* answer client_max_window_bits=client_wbits */
    WS_DEFLATE_SERVER_NCT = 1 << 4,  /* the offer named server_no_context_takeover (a
                                        client reading an answer needs to know) */
};

/* What was agreed for one connection (all zero: no compression). Two bytes, as
 * every connection carries one (window bits are at most 15: four bits each). */
struct ws_deflate_params {
    uint8_t flags;            /* enum ws_deflate_flags */
    uint8_t server_wbits : 4; /* window of our compressor: 9..15 */
    uint8_t client_wbits : 4; /* the client's window: 8..15 (15 when unstated) */
};

/* Per-connection state: without client_no_context_takeover, the index of the
 * connection's inflater in its thread's table (0 until the first compressed message).
 * The connection must be freed on the thread that inflated its messages. */
struct ws_deflate {
    uint16_t slot;
};

/* Context-keeping inflaters per thread (each 11-40 KiB). */
#define WS_DEFLATE_MAX_INFLATERS 65535u

/* Negotiates from every Sec-WebSocket-Extensions header of req: the first acceptable
 * permessage-deflate offer in order wins. Returns 1 and fills *p when one is
 * acceptable, else 0 (*p zeroed): the connection then goes uncompressed. */
int ws_deflate_negotiate(const struct http_request *req, struct ws_deflate_params *p);

/* The same for one header value (offers separated by commas). Returns 1 when an
 * offer in it is acceptable. Exposed for tests and the fuzzer. */
int ws_deflate_negotiate_value(const char *v, size_t len, struct ws_deflate_params *p);

/* Writes the "Sec-WebSocket-Extensions: ...\r\n" line for p into buf (cap bytes,
 * NUL-terminated). Returns its length, or 0 when p is not enabled or cap is short. */
size_t ws_deflate_response(const struct ws_deflate_params *p, char *buf, size_t cap);

/* Inflates one compressed message data[0..len) (the 00 00 FF FF tail is appended
 * here). On success returns 0 and *out, *out_len give the output, in a per-thread
 * buffer valid until the next call on this thread or ws_deflate_trim. Returns
 * 1009 when the output would exceed max_size (inflation stops there), 1002 for
 * invalid compressed data, 1011 when memory runs out, 1013 when the thread already
 * holds WS_DEFLATE_MAX_INFLATERS inflaters. */
int ws_deflate_inflate(struct ws_deflate *d, const struct ws_deflate_params *p, const uint8_t *data,
                       size_t len, uint64_t max_size, uint8_t **out, size_t *out_len);

/* Releases a large per-thread output buffer once its message has been handled, so a
 * thread does not keep the biggest message it ever inflated. */
void ws_deflate_trim(void);

/* The compressed twin of src, a server frame made by ws_frame_new (FIN, unmasked,
 * text or binary), for a connection that negotiated p: a new frame with RSV1 set,
 * returned with one reference for the caller. NULL means send src as it is: its
 * payload is under `threshold` bytes, it is a control frame, compression would not
 * make it smaller, or memory ran out. The last src per window size and thread is
 * remembered (by reference), so a fan-out loop handing the same frame to many
 * connections compresses it once. */
struct wh_msg *ws_deflate_frame(struct wh_msg *src, const struct ws_deflate_params *p,
                                size_t threshold);

/* Frees the connection's inflater. */
void ws_deflate_conn_free(struct ws_deflate *d);

/* Frees this thread's compressors, inflater, buffers and cache (call when a thread
 * that sent or received messages ends, before msg_thread_cleanup). */
void ws_deflate_thread_cleanup(void);

#endif
