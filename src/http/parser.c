/* HTTP/1.1 request-head parser (see parser.h for the contract). One forward pass over
 * the caller's bytes: a 256-entry class table decides every byte, nothing is copied or
 * allocated, and a head cut off anywhere gives HTTP_PARSE_INCOMPLETE while a bad byte
 * gives HTTP_PARSE_BAD as soon as it is seen. Limits are enforced by never looking
 * past max_head_bytes: a head that has not ended by then can only ever be too large.
 * The helpers after it (header lookup, token lists, query parameters, Content-Length)
 * work on the parsed slices. */
#include "http/parser.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#define DEFAULT_MAX_REQUEST_LINE 8192
#define DEFAULT_MAX_HEAD_BYTES   8192

enum {
    C_TOKEN = 1,  /* tchar (RFC 9110 5.6.2) */
    C_TARGET = 2, /* request-target byte: VCHAR except '#' (fragments are never sent) */
    C_VALUE = 4,  /* field-value byte: HTAB, SP, VCHAR, obs-text */
};

static const unsigned char cclass[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    4, 7, 6, 5, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /* 0x20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, /* 0x30 */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7, /* 0x50 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, /* 0x70 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0x80 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0x90 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xa0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xb0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xc0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xd0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xe0 */
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, /* 0xf0 */
};

static int is_class(char c, unsigned mask)
{
    return (cclass[(unsigned char)c] & mask) != 0;
}

static unsigned char lower(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= 'A' && u <= 'Z') ? (unsigned char)(u | 0x20) : u;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* First byte at or after p not in class `mask`, or end. Unrolled for tokens, which are
 * short. */
static const char *scan(const char *p, const char *end, unsigned mask)
{
    while (end - p >= 4) {
        if (!is_class(p[0], mask)) return p;
        if (!is_class(p[1], mask)) return p + 1;
        if (!is_class(p[2], mask)) return p + 2;
        if (!is_class(p[3], mask)) return p + 3;
        p += 4;
    }
    while (p < end && is_class(*p, mask))
        p++;
    return p;
}

/* Values and targets are where the bytes are, so they are scanned eight at a time
 * (SWAR). `outside` flags, in each byte's top bit, the bytes that may be outside the
 * class: borrows can only add flags above the lowest true one, so the lowest flag is
 * exact, and only HTAB (a legal value byte under the "< 0x20" test) is a false alarm. */
#define REP8(b) (0x0101010101010101ULL * (b))

static uint64_t has_less(uint64_t w, unsigned n) /* bytes < n, for n <= 0x80 */
{
    return (w - REP8(n)) & ~w & REP8(0x80);
}

static uint64_t has_byte(uint64_t w, unsigned b)
{
    return has_less(w ^ REP8(b), 1);
}

static uint64_t outside(const char *p, unsigned mask)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    if (mask == C_VALUE) return has_less(w, 0x20) | has_byte(w, 0x7f);
    return has_less(w, 0x21) | (w & REP8(0x80)) | has_byte(w, 0x7f) | has_byte(w, '#');
}

static const char *scan_long(const char *p, const char *end, unsigned mask)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t m = outside(p, mask);
        if (m == 0) {
            p += 8;
            continue;
        }
        p += __builtin_ctzll(m) / 8; /* the first flagged byte */
        if (!is_class(*p, mask)) return p;
        p++;
    }
#endif
    while (p < end && is_class(*p, mask))
        p++;
    return p;
}

static int eat_eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (*p == '\n') {
        *pp = p + 1;
        return 0;
    }
    if (p + 1 == end) return HTTP_PARSE_INCOMPLETE;
    if (p[1] != '\n') return HTTP_PARSE_BAD; /* bare CR */
    *pp = p + 2;
    return 0;
}

/* origin-form, "*", or absolute-form (scheme ":" ...). authority-form is CONNECT's
 * alone, which we do not serve. */
static int target_ok(const char *t, size_t n)
{
    if (t[0] == '/') return 1;
    if (n == 1 && t[0] == '*') return 1;
    if (!((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z'))) return 0;
    for (size_t i = 1; i < n; i++) {
        char c = t[i];
        if (c == ':') return 1;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
    }
    return 0;
}

static int parse_request_line(const char **pp, const char *end, struct http_request *req,
                              size_t max_line)
{
    static const char version[] = "HTTP/#.#"; /* '#' = DIGIT */
    const char *start = *pp, *p, *t, *v, *eol;
    int rc;

    p = scan(start, end, C_TOKEN);
    if (p == end) return HTTP_PARSE_INCOMPLETE;
    if (*p != ' ' || p == start) return HTTP_PARSE_BAD;
    req->method = start;
    req->method_len = (size_t)(p - start);

    t = p + 1;
    p = scan_long(t, end, C_TARGET);
    if (p == end) return HTTP_PARSE_INCOMPLETE;
    if (*p != ' ' || p == t || !target_ok(t, (size_t)(p - t))) return HTTP_PARSE_BAD;
    req->target = t;
    req->target_len = (size_t)(p - t);

    /* Checked byte by byte so that garbage is refused before the line is complete. */
    v = p + 1;
    for (size_t i = 0; i < sizeof version - 1; i++) {
        if (v + i == end) return HTTP_PARSE_INCOMPLETE;
        if (version[i] == '#' ? (v[i] < '0' || v[i] > '9') : v[i] != version[i])
            return HTTP_PARSE_BAD;
    }
    eol = v + sizeof version - 1;
    if (eol == end) return HTTP_PARSE_INCOMPLETE;
    if (*eol != '\r' && *eol != '\n') return HTTP_PARSE_BAD;
    if ((size_t)(eol - start) > max_line) return HTTP_PARSE_URI_TOO_LONG;
    if ((rc = eat_eol(&eol, end)) != 0) return rc;
    /* Only the two versions we implement. RFC 9110 section 2.5 would let a server read
     * a later HTTP/1.x as 1.1, but no HTTP/1.2 exists, and answering one as if it were
     * 1.1 is exactly the looseness a smuggling probe looks for: 505, as documented. */
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return HTTP_PARSE_BAD_VERSION;
    req->minor_version = v[7] - '0';

    const char *q = memchr(t, '?', req->target_len);
    req->path = t;
    req->path_len = q ? (size_t)(q - t) : req->target_len;
    if (q) {
        req->query = q + 1;
        req->query_len = req->target_len - req->path_len - 1;
    }
    *pp = eol;
    return 0;
}

static int parse_headers(const char **pp, const char *end, struct http_request *req,
                         size_t max_headers)
{
    const char *p = *pp;
    for (;;) {
        if (p == end) return HTTP_PARSE_INCOMPLETE;
        if (*p == '\r' || *p == '\n') {
            int rc = eat_eol(&p, end);
            if (rc == 0) *pp = p;
            return rc;
        }
        if (req->num_headers == max_headers) return HTTP_PARSE_HEADERS_TOO_LARGE;

        struct http_header *h = &req->headers[req->num_headers];
        const char *name = p;
        p = scan(p, end, C_TOKEN);
        if (p == end) return HTTP_PARSE_INCOMPLETE;
        /* Also refuses whitespace before the colon and a line starting with whitespace
         * (obs-fold, or space after the request line): both smuggling vectors. */
        if (*p != ':' || p == name) return HTTP_PARSE_BAD;
        h->name = name;
        h->name_len = (size_t)(p - name);

        p++;
        while (p < end && is_ows(*p))
            p++;
        const char *value = p;
        p = scan_long(p, end, C_VALUE);
        if (p == end) return HTTP_PARSE_INCOMPLETE;
        if (*p != '\r' && *p != '\n') return HTTP_PARSE_BAD; /* control byte */
        const char *vend = p;
        while (vend > value && is_ows(vend[-1]))
            vend--;
        h->value = value;
        h->value_len = (size_t)(vend - value);

        int rc = eat_eol(&p, end);
        if (rc != 0) return rc;
        req->num_headers++;
    }
}

int http_parse_request(const char *buf, size_t len, struct http_request *req,
                       const struct http_limits *lim)
{
    size_t max_line = lim ? lim->max_request_line : DEFAULT_MAX_REQUEST_LINE;
    size_t max_head = lim ? lim->max_head_bytes : DEFAULT_MAX_HEAD_BYTES;
    size_t max_headers = lim ? lim->max_headers : HTTP_MAX_HEADERS;
    if (max_headers > HTTP_MAX_HEADERS) max_headers = HTTP_MAX_HEADERS;
    if (max_head > INT_MAX) max_head = INT_MAX; /* the length is returned as an int */

    req->num_headers = 0;
    req->query = NULL;
    req->query_len = 0;
    if (len == 0) return HTTP_PARSE_INCOMPLETE;

    const char *p = buf, *end = buf + (len < max_head ? len : max_head);
    int rc = 0;
    while (rc == 0 && p < end && (*p == '\r' || *p == '\n'))
        rc = eat_eol(&p, end);

    if (rc == 0) {
        const char *line = p;
        rc = parse_request_line(&p, end, req, max_line);
        if (rc == HTTP_PARSE_INCOMPLETE) {
            /* The line so far, less a CR that may start its ending. */
            size_t have = (size_t)(end - line);
            if (have > 0 && end[-1] == '\r') have--;
            /* Also when the head limit cut the scan short: a request line that has not
             * ended within the whole head budget is too long, whatever max_line says
             * (the two limits are often equal). */
            if (have > max_line || (len > max_head && have > 0)) return HTTP_PARSE_URI_TOO_LONG;
        }
    }
    if (rc == 0) rc = parse_headers(&p, end, req, max_headers);
    if (rc == 0) return (int)(p - buf);
    if (rc == HTTP_PARSE_INCOMPLETE && len > max_head) return HTTP_PARSE_HEADERS_TOO_LARGE;
    return rc;
}

int http_slice_eq(const char *s, size_t len, const char *lit)
{
    for (size_t i = 0; i < len; i++) {
        if (lit[i] == '\0' || lower(s[i]) != lower(lit[i])) return 0;
    }
    return lit[len] == '\0';
}

/* Lengths first: most names differ in length, which skips the byte compare. */
static int name_is(const struct http_header *h, const char *name, size_t len)
{
    return h->name_len == len && http_slice_eq(h->name, len, name);
}

const struct http_header *http_header_find(const struct http_request *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        if (name_is(&req->headers[i], name, len)) return &req->headers[i];
    }
    return NULL;
}

size_t http_header_count(const struct http_request *req, const char *name)
{
    size_t len = strlen(name), n = 0;
    for (size_t i = 0; i < req->num_headers; i++)
        n += (size_t)name_is(&req->headers[i], name, len);
    return n;
}

/* RFC 3986 reg-name bytes (unreserved, sub-delims, '%' of pct-encoded) and the
 * bytes of an IP-literal between its brackets; but not ',', which the grammar allows
 * and no host name holds: "a,b" is what two Host lines look like once an intermediary
 * has joined them. */
static int host_byte(char c, int in_brackets)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    if (strchr("-._~!$&'()*+;=%", c) != NULL && c != '\0') return 1;
    return in_brackets && c == ':';
}

int http_host_check(const struct http_request *req)
{
    const struct http_header *h = NULL;
    for (size_t i = 0; i < req->num_headers; i++) {
        if (!name_is(&req->headers[i], "host", 4)) continue;
        if (h) return -1; /* a second Host field line */
        h = &req->headers[i];
    }
    if (!h) return req->minor_version >= 1 ? -1 : 0;
    const char *p = h->value, *end = h->value + h->value_len;
    if (p < end && *p == '[') {
        for (p++; p < end && *p != ']'; p++)
            if (!host_byte(*p, 1)) return -1;
        if (p == end) return -1;
        p++;
    } else {
        while (p < end && host_byte(*p, 0))
            p++;
    }
    if (p == end) return 0;
    if (*p++ != ':') return -1;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p == end ? 0 : -1;
}

int http_token_list_has(const char *value, size_t len, const char *token)
{
    if (len == 0) return 0; /* value may be NULL then */
    const char *p = value, *end = value + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && is_ows(*s))
            s++;
        while (e > s && is_ows(e[-1]))
            e--;
        if (e > s && http_slice_eq(s, (size_t)(e - s), token)) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    unsigned char l = lower(c);
    if (l >= 'a' && l <= 'f') return l - 'a' + 10;
    return -1;
}

/* Next form-decoded byte at *pp (before end), or -1 for a bad or NUL escape: the value
 * is handed out as a C string, so an embedded NUL would silently truncate it. */
static int form_byte(const char **pp, const char *end)
{
    const char *p = *pp;
    int c = (unsigned char)*p++;
    if (c == '+') {
        c = ' ';
    } else if (c == '%') {
        if (end - p < 2) return -1;
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0 || (hi | lo) == 0) return -1;
        c = hi << 4 | lo;
        p += 2;
    }
    *pp = p;
    return c;
}

static int form_name_eq(const char *p, const char *end, const char *key)
{
    size_t i = 0;
    while (p < end) {
        int c = form_byte(&p, end);
        if (c < 0 || key[i] == '\0' || (unsigned char)key[i] != c) return 0;
        i++;
    }
    return key[i] == '\0';
}

int http_query_param(const char *query, size_t query_len, const char *key, char *out, size_t outcap)
{
    if (query == NULL) return -1;
    const char *p = query, *end = query + query_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pend = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        if (pend > p && form_name_eq(p, eq ? eq : pend, key)) {
            size_t cap = outcap < (size_t)INT_MAX ? outcap : (size_t)INT_MAX;
            size_t n = 0;
            const char *v = eq ? eq + 1 : pend;
            if (cap == 0) return -2;
            while (v < pend) {
                int c = form_byte(&v, pend);
                if (c < 0 || n + 1 >= cap) return -2;
                out[n++] = (char)c;
            }
            out[n] = '\0';
            return (int)n;
        }
        if (!amp) break;
        p = amp + 1;
    }
    return -1;
}

/* 1*DIGIT that fits a long long, else -1. */
static long long parse_length(const char *s, size_t n)
{
    long long v = 0;
    if (n == 0) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        int d = s[i] - '0';
        if (v > (LLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    return v;
}

long long http_content_length(const struct http_request *req)
{
    long long len = -1;
    int chunked = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (http_slice_eq(h->name, h->name_len, "transfer-encoding")) {
            chunked = 1;
        } else if (http_slice_eq(h->name, h->name_len, "content-length")) {
            long long v = parse_length(h->value, h->value_len);
            if (v < 0 || (len >= 0 && v != len)) return -1;
            len = v;
        }
    }
    if (len < 0) return 0;
    return chunked ? -1 : len;
}
