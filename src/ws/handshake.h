/* The server side of the RFC 6455 opening handshake (section 4.2): validates a parsed
 * upgrade request, negotiates a subprotocol and writes the 101 response. It knows
 * nothing of sockets: the caller feeds a parsed request and sends what comes back.
 *
 * Checks, in order, each with the HTTP status a failing request gets:
 *   method GET, case-sensitive (405), HTTP/1.1 or later (400), exactly one Host header
 *     (400),
 *   Upgrade holding the token "websocket" (426, with "Upgrade: websocket"),
 *   Connection holding the token "upgrade" (400),
 *   Sec-WebSocket-Version: more than one header (400); none, or a value other than
 *     exactly "13" (426, answered with "Sec-WebSocket-Version: 13"),
 *   Sec-WebSocket-Key exactly one header whose value is base64 of 16 bytes, i.e. 22
 *     base64 symbols then "==" (400).
 * Token comparisons are case-insensitive, over comma-separated lists; repeated
 * Upgrade/Connection/Sec-WebSocket-Protocol fields are read as one list. */
#ifndef WSHUB_WS_HANDSHAKE_H
#define WSHUB_WS_HANDSHAKE_H

#include <stddef.h>

#include "http/parser.h"

#define WS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

struct ws_handshake {
    int status;         /* 0 when the request is a valid upgrade, else HTTP status */
    const char *reason; /* static text saying why it failed (for the body and logs);
                         * never NULL after ws_handshake_check ("ok" on success) */
    const char *key;    /* Sec-WebSocket-Key value, points into the request */
    size_t key_len;
    char accept[WS_ACCEPT_LEN + 1];
    const char *subprotocol; /* chosen one (points into `supported`), or NULL */
};

/* Validates req. `supported` is a NULL-terminated list of subprotocols the server
 * speaks, in its order of preference, or NULL; the first of the client's offers (in
 * the client's order) that the server supports is chosen, and no offer in common
 * is not an error (the response simply names none). Subprotocol names compare
 * case-sensitively (the client checks the echo byte for byte). Returns 0 or the HTTP
 * status (also in hs->status); 500 only if libcrypto cannot compute SHA-1. */
int ws_handshake_check(const struct http_request *req, const char *const *supported,
                       struct ws_handshake *hs);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key ++ GUID)); out gets 28 chars + NUL,
 * or "" if libcrypto fails. */
void ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);

/* Writes the 101 Switching Protocols response for a valid hs into buf, with
 * `extra_headers` (already CRLF-terminated lines, or NULL) appended. Returns its
 * length (buf is not NUL-terminated), or 0 when cap is too small or hs is not a
 * successful check. */
size_t ws_handshake_response(char *buf, size_t cap, const struct ws_handshake *hs,
                             const char *extra_headers);

#endif
