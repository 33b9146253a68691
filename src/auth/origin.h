/* The Origin check of the WebSocket upgrade (RFC 6455 section 10.2), on parsed origins
 * (RFC 6454), never on strings: a scheme, a host and a port, compared part by part.
 *
 * An origin is what a browser sends: scheme "://" host [":" port] and nothing else.
 * Schemes http, https (and ws, wss, which browsers do not send, for completeness);
 * the default port (80 for http and ws, 443 for https and wss) is the same origin as
 * no port. The host is a DNS name (letters, digits, '-', '_', labels of 1-63 bytes,
 * at most 253 bytes) or a bracketed IPv6 literal; it is compared case-insensitively,
 * and one trailing dot is dropped ("example.com." names the same host as
 * "example.com"). A header with a path, a query, a fragment, userinfo, an empty or
 * out-of-range port, a percent escape or any byte outside ASCII is not an origin and is
 * refused: browsers send international names as punycode ("xn--..."), compared as the
 * ASCII they are. "null" (sandboxed and file: pages) is refused too.
 *
 * A request without an Origin header comes from a non-browser client and is allowed (a
 * browser always sends one). Two Origin headers are refused. Otherwise the origin is
 * allowed when it is the server's own (same origin: the scheme of the listener,
 * http:// on a plaintext one and https:// on a TLS one, and the host and port of the
 * request's Host header, the port defaulting to the scheme's) or when it matches an
 * entry of the allow-list:
 *   - an exact origin, "https://app.example.com" (same rules, port included);
 *   - a wildcard, "https://" "*.example.com[:port]": same scheme and port, and a host
 *     of one or more labels followed by ".example.com". The apex example.com itself
 *     is not matched: list it on its own if it is wanted;
 *   - "*": any Origin at all, the check off (the guide's insecure behaviour, only when
 *     asked for explicitly).
 * Everything else is refused (403). */
#ifndef WSHUB_AUTH_ORIGIN_H
#define WSHUB_AUTH_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"

#define ORIGIN_MAX_HOST 253

struct origin {
    char scheme[8];                 /* "http", "https", "ws" or "wss" */
    char host[ORIGIN_MAX_HOST + 1]; /* lower case, no trailing dot, NUL-terminated */
    size_t host_len;
    uint16_t port; /* as given, or the scheme's default */
    bool wildcard; /* allow-list pattern only: host is the suffix after "*." */
};

/* Parses a serialised origin s[0..len). 0, or -1 when it is not a valid origin. */
int origin_parse(const char *s, size_t len, struct origin *o);

/* Parses an allow-list entry (an origin, or one whose host starts with "*."; "*" alone
 * is handled by the caller). 0, or -1 with *why set to a static explanation. */
int origin_pattern_parse(const char *s, struct origin *p, const char **why);

/* 1 when the origin matches the parsed pattern. */
bool origin_pattern_match(const struct origin *p, const struct origin *o);

/* Checks every allow-list entry at start-up: 0, or -1 with *bad set to the first
 * entry that is not "*", an origin or a wildcard, and *why to the reason. */
int origin_list_check(const char *const *allow, const char **bad, const char **why);

/* allow: NULL-terminated list of patterns, or NULL for same-origin only. tls: the
 * request came over TLS. */
bool origin_allowed(const struct http_request *req, const char *const *allow, bool tls);

#endif
