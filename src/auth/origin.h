/* The Origin check of the WebSocket upgrade (RFC 6455 section 10.2). A request without
 * an Origin header comes from a non-browser client and is allowed (a browser always
 * sends one). A browser's Origin is allowed when its host[:port] equals the request's
 * Host header (same origin) or when it matches an entry of the allow-list: an exact
 * origin ("https://app.example.com"), a wildcard host ("https://" "*.example.com", any subdomain),
 * or
 * "*" (any: the guide's insecure behaviour, only when asked for explicitly).
 * Comparisons are case-insensitive. Everything else is refused (403).
 * On a TLS connection same origin also requires https:// (no http:// page can share
 * the origin of a port that only speaks TLS); on a plaintext one the scheme is not
 * compared, because a proxy in front may have terminated TLS for an https:// page. */
#ifndef WSHUB_AUTH_ORIGIN_H
#define WSHUB_AUTH_ORIGIN_H

#include <stdbool.h>

#include "http/parser.h"

/* allow: NULL-terminated list of patterns, or NULL for same-origin only. tls: the
 * request came over TLS. */
bool origin_allowed(const struct http_request *req, const char *const *allow, bool tls);

#endif
