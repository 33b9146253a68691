/* wsclient: a small RFC 6455 WebSocket client for ws:// and wss:// URLs (the only
 * extension is permessage-deflate for receiving, when asked for with
 * wsc_options.deflate).
 *
 * Two layers, usable separately:
 *
 *  - The protocol core does no I/O. wsc_new() builds the opening handshake (random
 *    16-byte key from getrandom) into the output queue; wsc_output()/wsc_output_done()
 *    hand the queued bytes to whoever owns the transport; wsc_feed() takes received
 *    bytes in any split and reports events through one callback; wsc_send(),
 *    wsc_send_frame() and wsc_close() queue frames, each masked with a fresh 4-byte key
 *    (taken from a per-thread pool of getrandom bytes, so one syscall serves many
 *    frames). Pings are answered with pongs and a server's close with a close
 *    automatically, by queueing them.
 *
 *  - The socket layer on top: wsc_connect() resolves the host (getaddrinfo; IPv4 and
 *    IPv6 literals too), connects with a timeout, leaves the socket non-blocking and
 *    does the handshake, blocking up to the same timeout. wsc_attach() instead adopts a
 *    socket the caller connected itself. wsc_read() and wsc_flush() never block: an
 *    event loop calls them when the descriptor (wsc_fd) is readable or writable
 *    (wsc_want_write says whether to watch for writability). wsc_poll() is the
 *    blocking convenience for simple programs.
 *
 *  - wss:// (TLS, client/wsc_tls.h) lives in the socket layer: wsc_connect does the
 *    TLS handshake after the TCP connect, verifying the server's certificate against
 *    the system's trust store (or wsc_options.ca_file) and its name or address against
 *    the URL's host; wsc_read/wsc_flush then go through TLS. wsc_attach is for ws://
 *    only. The protocol core never sees TLS.
 *
 * Memory: a connection allocates its struct, its output queue (grown to the largest
 * burst queued, then reused) and, with the socket layer, one read buffer; the
 * handshake response buffer lives only until the handshake ends. Sending and receiving
 * messages in the steady state allocates nothing, with one exception owned by the frame
 * reader (ws/reader.h): a message that arrives in several frames, or a single frame
 * larger than the read buffer, is gathered in a buffer allocated for that message. The
 * socket layer delivers every frame that fits its read buffer whole, so a
 * single-frame message of up to read_buffer_size bytes is handed over in place.
 *
 * Errors are negative WSC_ERR_* codes; wsc_strerror() names a code and
 * wsc_error_detail() says what exactly went wrong on a connection (for a refused
 * upgrade: "HTTP 401 Unauthorized: " and the body the server sent). Nothing received
 * from the network can make this code abort or read out of bounds.
 *
 * Threads: a struct wsc is used by one thread at a time; different connections may be
 * used from different threads at once. */
#ifndef WSHUB_CLIENT_WSCLIENT_H
#define WSHUB_CLIENT_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ws/frame.h"

#define WSC_MAX_HOST 256  /* host name or address, NUL included */
#define WSC_MAX_PATH 9216 /* path and query, NUL included (room for an 8 KiB token) */

enum wsc_error {
    WSC_OK = 0,
    WSC_ERR_ARG = -1,          /* invalid argument (bad opcode, header, size, close code) */
    WSC_ERR_NOMEM = -2,        /* out of memory */
    WSC_ERR_RANDOM = -3,       /* getrandom failed */
    WSC_ERR_STATE = -4,        /* not allowed in this state (send before open / after close) */
    WSC_ERR_RESOLVE = -5,      /* host name did not resolve */
    WSC_ERR_CONNECT = -6,      /* TCP connect failed */
    WSC_ERR_TIMEOUT = -7,      /* connect or handshake took longer than allowed */
    WSC_ERR_IO = -8,           /* read or write failed on the socket */
    WSC_ERR_CLOSED = -9,       /* connection closed without a close handshake (1006) */
    WSC_ERR_HTTP = -10,        /* the handshake response is not well-formed HTTP/1.1 */
    WSC_ERR_STATUS = -11,      /* the server answered with a status other than 101 */
    WSC_ERR_UPGRADE = -12,     /* 101 without "Upgrade: websocket" */
    WSC_ERR_CONNECTION = -13,  /* 101 without "Connection: Upgrade" */
    WSC_ERR_ACCEPT = -14,      /* Sec-WebSocket-Accept missing or wrong */
    WSC_ERR_SUBPROTOCOL = -15, /* the server chose a subprotocol that was not offered */
    WSC_ERR_EXTENSION = -16,   /* the server chose an extension that was not offered */
    WSC_ERR_PROTOCOL = -17,    /* the server broke the framing protocol; closed with 1002/7/9 */
    WSC_ERR_TLS = -18,         /* TLS handshake or certificate verification failed */
};

/* 1 (not an error): the close handshake is complete. */
#define WSC_DONE 1

/* ---- URLs ---- */

struct wsc_url {
    char host[WSC_MAX_HOST]; /* without brackets for IPv6 */
    uint16_t port;           /* 80 (443 for wss://) when the URL names none */
    bool ipv6;               /* host was a bracketed IPv6 literal */
    char path[WSC_MAX_PATH]; /* origin-form request target: "/" or "/p?q" */
    bool tls;                /* wss:// */
};

/* Parses ws://HOST[:PORT][/PATH][?QUERY] (or wss://). HOST is a name (letters, digits,
 * '-', '.', '_', '~'), a dotted IPv4 address or [IPv6]; PORT is 1..65535; the path and
 * query are kept as written (visible ASCII; percent-encode anything else). Refused:
 * other schemes, user info, fragments, empty ports, over-long parts. Returns 0, or WSC_ERR_ARG with
 * *why (if why is not NULL) set to a static text saying what is wrong. */
int wsc_url_parse(const char *url, struct wsc_url *out, const char **why);

/* ---- connections ---- */

struct wsc_options {
    /* Extra request header lines, "Name: value" (no CR/LF), NULL-terminated, or NULL.
     * A "Host" line replaces the default one; the headers the handshake itself sets
     * (Upgrade, Connection, Sec-WebSocket-*) are refused. */
    const char *const *headers;
    /* Subprotocols offered, in order of preference (tokens), NULL-terminated, or NULL. */
    const char *const *subprotocols;
    uint64_t max_message_size; /* largest message accepted; 0: 64 MiB; bigger: closed 1009 */
    size_t fragment_size;      /* wsc_send splits data messages into frames of at most this
                                  many payload bytes; 0: one frame per message */
    size_t read_buffer_size;   /* socket layer read buffer; 0: 64 KiB; at least 1 KiB */
    const char *ca_file;       /* wss://: PEM file of the CAs to trust; NULL: the system's */
    /* Offer permessage-deflate (RFC 7692) with client_no_context_takeover. When the
     * server accepts, its compressed messages are inflated (under max_message_size)
     * before they are reported; what we send always goes uncompressed, which the RFC
     * allows per message. */
    bool deflate;
};

enum wsc_state {
    WSC_STATE_HANDSHAKE, /* request queued or sent, waiting for the 101 */
    WSC_STATE_OPEN,
    WSC_STATE_CLOSING, /* our close frame is queued or sent, waiting for the server's */
    WSC_STATE_CLOSED,  /* finished: cleanly (close handshake done) or by an error */
};

enum wsc_event_type {
    WSC_EV_OPEN,    /* handshake accepted; subprotocol set (or NULL) */
    WSC_EV_MESSAGE, /* a whole data message: opcode WS_OP_TEXT (valid UTF-8) or BINARY */
    WSC_EV_PING,    /* data/len: the payload (a pong is already queued) */
    WSC_EV_PONG,    /* data/len: the payload */
    WSC_EV_CLOSE,   /* the server's close frame: code (WS_CLOSE_NO_STATUS when empty) and
                       reason in data/len (valid UTF-8, not NUL-terminated) */
};

struct wsc_event {
    enum wsc_event_type type;
    enum ws_opcode opcode;   /* WSC_EV_MESSAGE */
    unsigned code;           /* WSC_EV_CLOSE */
    const char *subprotocol; /* WSC_EV_OPEN */
    uint8_t *data;           /* valid only during the callback; may be modified in place */
    size_t len;
};

/* Called for every event. Return 0 to go on; a negative value stops: the connection is
 * failed (no further input can be parsed) and the feeding call returns that value. */
typedef int (*wsc_event_fn)(void *ud, const struct wsc_event *ev);

struct wsc;

/* Creates a connection for url (copied) and queues the handshake request. opt may be
 * NULL (defaults); its arrays and strings are copied, so they need not outlive the
 * call. Returns NULL with *err (if err is not NULL) set to WSC_ERR_ARG (a bad header
 * line or subprotocol name), WSC_ERR_NOMEM or WSC_ERR_RANDOM. Free with wsc_free. */
struct wsc *wsc_new(const struct wsc_url *url, const struct wsc_options *opt, int *err);

/* Closes the socket (if the socket layer has one) and frees everything. NULL is a
 * no-op. */
void wsc_free(struct wsc *c);

/* Checks an extra header line or a subprotocol name the way wsc_new will. Return 0 or
 * WSC_ERR_ARG with *why set to a static text. */
int wsc_check_header(const char *line, const char **why);
int wsc_check_subprotocol(const char *name, const char **why);

/* ---- protocol core (no I/O) ---- */

/* Bytes queued for the server: *len bytes at the returned pointer (NULL when none).
 * Valid until the next call that queues or consumes output. */
const uint8_t *wsc_output(const struct wsc *c, size_t *len);

/* Marks the first n bytes of wsc_output() as sent. */
void wsc_output_done(struct wsc *c, size_t n);

/* Consumes data[0..len) as received from the server, in any split: first the handshake
 * response (validated: status 101, Upgrade, Connection, Sec-WebSocket-Accept, and a
 * chosen subprotocol one of those offered), then frames. data may be modified in place.
 * Returns 0 to go on, WSC_DONE once the close handshake is complete (send the queued
 * output, then close the TCP connection), or a negative error: a handshake failure
 * (the state is then WSC_STATE_CLOSED; for WSC_ERR_STATUS wsc_http_status/body tell
 * what the server said, once its body has arrived whole or the body limit is reached),
 * WSC_ERR_PROTOCOL (a close frame with the code the server earned is queued), or an
 * event callback's value. After the connection is finished, further calls return the
 * same result and ignore the data. */
int wsc_feed(struct wsc *c, uint8_t *data, size_t len, wsc_event_fn fn, void *ud);

/* Tells the core that the server closed the TCP connection. Returns WSC_DONE if the
 * close handshake was complete; WSC_ERR_STATUS when a refused upgrade's body ended
 * with the connection; otherwise WSC_ERR_CLOSED. */
int wsc_feed_eof(struct wsc *c);

/* Queues one message: op WS_OP_TEXT or WS_OP_BINARY (split into frames of
 * fragment_size when set), or a WS_OP_PING / WS_OP_PONG of at most 125 bytes. Text is
 * not checked for UTF-8. WSC_ERR_STATE before the handshake completed, after
 * wsc_close, or while a wsc_send_frame message is unfinished (data frames only). */
int wsc_send(struct wsc *c, enum ws_opcode op, const void *data, size_t len);

/* Queues one frame, for sending a message in pieces: the first with WS_OP_TEXT or
 * WS_OP_BINARY, the next ones with WS_OP_CONT, the last with fin set. Control frames
 * (fin set, at most 125 bytes) may come between the pieces. */
int wsc_send_frame(struct wsc *c, enum ws_opcode op, const void *data, size_t len, bool fin);

/* Starts the closing handshake: queues a close frame with code (0: no code, an empty
 * payload) and reason (NULL or at most 123 bytes of UTF-8). code must be one a peer
 * may receive (ws_close_code_valid). Data messages can no longer be sent; messages
 * still arriving are delivered until the server's close. Before the handshake is
 * complete, this just ends the connection (state WSC_STATE_CLOSED). */
int wsc_close(struct wsc *c, unsigned code, const char *reason);

enum wsc_state wsc_state(const struct wsc *c);

/* The subprotocol the server chose (NUL-terminated, owned by c), or NULL. */
const char *wsc_subprotocol(const struct wsc *c);

/* The server's close code (0 until a close frame arrived; WS_CLOSE_NO_STATUS for an
 * empty one) and reason (NUL-terminated, owned by c, "" when none). */
unsigned wsc_close_code(const struct wsc *c);
const char *wsc_close_reason(const struct wsc *c);

/* The HTTP status of the handshake response (0 until its status line arrived) and, for
 * a refused upgrade, the start of its body (at most 4 KiB; *len bytes, also
 * NUL-terminated; owned by c; NULL when there is none). */
int wsc_http_status(const struct wsc *c);
const char *wsc_http_body(const struct wsc *c, size_t *len);

/* Why the connection failed, as one line of text naming the cause (owned by c; valid
 * until c is freed), or "" while it has not failed (or closed cleanly). Calls that are
 * refused without ending the connection (wsc_send with a bad argument, ...) only return
 * their code: see wsc_strerror. */
const char *wsc_error_detail(const struct wsc *c);

/* Static text for a WSC_ERR_* code (or WSC_OK / WSC_DONE). */
const char *wsc_strerror(int err);

/* ---- socket layer ---- */

/* Resolves and connects to the URL's host (every address in turn, until one accepts),
 * within timeout_ms (<= 0: 10 s) for connect and handshake together, then does the
 * handshake. The socket is left non-blocking and owned by c. Events that arrive with
 * the 101 (WSC_EV_OPEN, and any frames right behind it) go to fn. Returns 0 once
 * open, or an error (see wsc_error_detail). */
int wsc_connect(struct wsc *c, int timeout_ms, wsc_event_fn fn, void *ud);

/* Adopts a connected (or connecting) socket: c owns it from now on and makes it
 * non-blocking. Then drive the handshake with wsc_flush/wsc_read. WSC_ERR_STATE if c
 * already has a socket; WSC_ERR_ARG for a wss:// connection (use wsc_connect). */
int wsc_attach(struct wsc *c, int fd);

/* The socket descriptor, or -1 (none yet, or closed once the connection finished). */
int wsc_fd(const struct wsc *c);

/* 1 when output is queued or TLS waits to write (watch the descriptor for
 * writability), else 0. */
int wsc_want_write(const struct wsc *c);

/* Writes queued output until done or the socket would block. Returns 0 when all is
 * sent, 1 when some is left, or an error. When the connection has finished, the socket
 * is closed once its last output (a close frame) is written or could not be. */
int wsc_flush(struct wsc *c);

/* Reads what the socket has (until it would block), feeds it, and flushes what that
 * queued (pongs, a close reply). Returns 0 while the connection lasts, WSC_DONE when
 * the close handshake completed, or an error; in both last cases the socket has been
 * closed, and later calls return the same value. */
int wsc_read(struct wsc *c, wsc_event_fn fn, void *ud);

/* Blocking helper: waits up to timeout_ms (< 0: forever) for the socket, then flushes
 * and/or reads. Returns 0 (also on timeout), WSC_DONE or an error, as wsc_read. */
int wsc_poll(struct wsc *c, int timeout_ms, wsc_event_fn fn, void *ud);

#endif
