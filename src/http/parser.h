/* HTTP/1.1 request-head parser, in the manner of picohttpparser: it allocates
 * nothing, every string it returns points into the caller's buffer, and one call
 * answers "done / need more / malformed". It parses the request line and header
 * fields only; bodies are the caller's business (see http_content_length).
 *
 * Ownership: the caller owns the buffer; a parsed http_request is valid only while
 * that buffer is unchanged. Nothing here is NUL-terminated.
 *
 * Strictness (RFC 9112): the method is a token; the request-target is origin-form
 * ("/...") or "*" or absolute-form, made of visible ASCII other than '#' (raw bytes >=
 * 0x80 must be percent-encoded); exactly one SP separates the three parts of the request
 * line; the version is HTTP/1.0 or HTTP/1.1 (any other HTTP/d.d, HTTP/1.2 and
 * HTTP/0.9 included, is HTTP_PARSE_BAD_VERSION, anything else is HTTP_PARSE_BAD); header names are
 * tokens with no whitespace before the colon; values have optional whitespace trimmed at both ends;
 * obsolete line folding is malformed; bare LF line endings are accepted (as most servers do) but
 * bare CR is malformed; control bytes other than HTAB in values are malformed. */
#ifndef WSHUB_HTTP_PARSER_H
#define WSHUB_HTTP_PARSER_H

#include <stddef.h>

#define HTTP_MAX_HEADERS 64 /* hard upper bound on http_limits.max_headers */

enum http_parse_result {
    HTTP_PARSE_INCOMPLETE = -1,        /* need more bytes; call again with the longer buffer */
    HTTP_PARSE_BAD = -2,               /* malformed: answer 400 */
    HTTP_PARSE_URI_TOO_LONG = -3,      /* request line over max_request_line: answer 414 */
    HTTP_PARSE_HEADERS_TOO_LARGE = -4, /* head over max_head_bytes or too many fields: 431 */
    HTTP_PARSE_BAD_VERSION = -5,       /* well-formed but not HTTP/1.x: answer 505 */
};

struct http_limits {
    size_t max_request_line; /* bytes of the request line, CRLF excluded (default 8192) */
    size_t max_head_bytes;   /* bytes of the whole head including the final CRLFCRLF */
    size_t max_headers;      /* number of header fields, <= HTTP_MAX_HEADERS */
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* optional whitespace around it removed */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* the raw request-target */
    size_t target_len;
    const char *path; /* target up to '?' (or all of it); for absolute-form this still
                       * includes the scheme and authority */
    size_t path_len;
    const char *query; /* after '?', without it; NULL/0 when there is no '?' (a target
                        * ending in '?' gives a non-NULL query of length 0) */
    size_t query_len;
    int minor_version; /* 0 or 1 */
    size_t num_headers;
    struct http_header headers[HTTP_MAX_HEADERS];
};

/* Parses the request head at buf[0..len). Returns the head's length in bytes (through
 * the blank line) when complete, or a negative enum http_parse_result. An incomplete
 * head already longer than a limit returns the limit's error, so a caller can never
 * be made to buffer more than the limits. Empty lines before the request line (RFC
 * 9112 section 2.2) are skipped and counted in the returned length (and towards
 * max_head_bytes, but not max_request_line). Malformed bytes give HTTP_PARSE_BAD as soon
 * as they are seen, even in an incomplete head. lim NULL means the defaults: 8192,
 * 8192, HTTP_MAX_HEADERS; max_headers above HTTP_MAX_HEADERS is clamped to it and
 * max_head_bytes to INT_MAX. On any negative result *req is unspecified. */
int http_parse_request(const char *buf, size_t len, struct http_request *req,
                       const struct http_limits *lim);

/* First header named `name` (case-insensitive), or NULL. */
const struct http_header *http_header_find(const struct http_request *req, const char *name);

/* Number of header fields named `name` (case-insensitive). */
size_t http_header_count(const struct http_request *req, const char *name);

/* The Host rule of RFC 9112 section 3.2: 0 when the request has exactly one Host field
 * whose value is a well-formed uri-host [":" port] (an empty value is allowed, as the
 * RFC allows it; a ',' is not, see parser.c), or, for HTTP/1.0 only, none; -1 otherwise (answer
 * 400). Kept out of http_parse_request so that the parser stays a pure syntax check. */
int http_host_check(const struct http_request *req);

/* 1 when the comma-separated list value[0..len) holds `token` (case-insensitive,
 * whitespace around elements ignored, empty elements skipped), else 0. */
int http_token_list_has(const char *value, size_t len, const char *token);

/* Finds parameter `key` in a query string (a=b&c=d), percent- and '+'-decodes its value
 * into out (NUL-terminated). Returns the decoded length, -1 when absent, -2 when the
 * encoding is malformed or the value does not fit in outcap-1 bytes. Names are decoded
 * too and compared case-sensitively; the first match wins; "k" alone has the empty
 * value. "%00" counts as malformed, since out is used as a C string. query may be
 * NULL (absent); out is written only when the key is found. */
int http_query_param(const char *query, size_t query_len, const char *key, char *out,
                     size_t outcap);

/* Content-Length of the request: 0 when absent; -1 when malformed (anything but
 * 1*DIGIT fitting a long long), duplicated with different values, or combined with
 * Transfer-Encoding; otherwise the value (which the caller checks against its own body
 * limit). Transfer-Encoding without Content-Length gives 0: a caller that does not
 * decode chunked bodies must refuse Transfer-Encoding itself. */
long long http_content_length(const struct http_request *req);

/* Case-insensitive comparison of a buffer slice with a NUL-terminated string. */
int http_slice_eq(const char *s, size_t len, const char *lit);

#endif
