/* libFuzzer target for the HTTP request-head parser and everything that consumes a
 * parsed request: header lookup, token lists, query parameters, Content-Length, and
 * the WebSocket handshake and its response. The input is copied to an exact-size heap
 * block so that ASan sees any read past len. Parsing runs under tight limits (to reach
 * the limit paths) and under the defaults, and checks the invariants that callers
 * rely on: a success length within the input and the head limit, slices inside the
 * buffer, and the same verdict for a head whether or not bytes follow it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"
#include "ws/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static void in_buf(const char *p, size_t n, const char *buf, size_t len)
{
    if (n == 0) return;
    CHECK(p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n));
}

static void exercise(const char *buf, size_t len, const struct http_request *req)
{
    static const char *const supported[] = {"chat", "superchat", "v1", NULL};
    static const char *const names[] = {"host",           "upgrade",           "connection",
                                        "content-length", "sec-websocket-key", "x"};
    static const char *const keys[] = {"a", "token", "", "a b"};
    char out[16];

    in_buf(req->method, req->method_len, buf, len);
    in_buf(req->target, req->target_len, buf, len);
    in_buf(req->path, req->path_len, buf, len);
    if (req->query) in_buf(req->query, req->query_len, buf, len);
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->num_headers <= HTTP_MAX_HEADERS);

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct http_header *h = http_header_find(req, names[i]);
        size_t n = http_header_count(req, names[i]);
        CHECK((h != NULL) == (n > 0));
    }
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        in_buf(h->name, h->name_len, buf, len);
        in_buf(h->value, h->value_len, buf, len);
        (void)http_token_list_has(h->value, h->value_len, "upgrade");
        (void)http_token_list_has(h->value, h->value_len, "websocket");
        (void)http_token_list_has(h->value, h->value_len, "");
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int n = http_query_param(req->query, req->query_len, keys[i], out, sizeof out);
        CHECK(n >= -2 && n < (int)sizeof out);
        if (n >= 0) CHECK(out[n] == '\0' && strlen(out) == (size_t)n);
        n = http_query_param(req->query, req->query_len, keys[i], out, 1);
        CHECK(n >= -2 && n <= 0);
    }
    (void)http_content_length(req);
    (void)http_host_check(req);

    struct ws_handshake hs;
    char resp[512];
    int st = ws_handshake_check(req, supported, &hs);
    CHECK(st == hs.status && hs.reason != NULL);
    if (st == 0) {
        CHECK(hs.key_len == 24 && strlen(hs.accept) == WS_ACCEPT_LEN);
        size_t n = ws_handshake_response(resp, sizeof resp, &hs, "X-Fuzz: 1\r\n");
        CHECK(n > 0 && n <= sizeof resp);
        CHECK(ws_handshake_response(resp, n - 1, &hs, "X-Fuzz: 1\r\n") == 0);
    } else {
        CHECK(st == 400 || st == 405 || st == 426);
    }
}

static int parse(const char *buf, size_t len, const struct http_limits *lim)
{
    struct http_request req;
    int rc = http_parse_request(buf, len, &req, lim);
    if (rc >= 0) {
        CHECK(rc > 0 && (size_t)rc <= len && (size_t)rc <= lim->max_head_bytes);
        exercise(buf, len, &req);
        /* The head alone must parse the same. */
        struct http_request again;
        CHECK(http_parse_request(buf, (size_t)rc, &again, lim) == rc);
        CHECK(again.num_headers == req.num_headers);
    } else {
        CHECK(rc >= HTTP_PARSE_BAD_VERSION && rc <= HTTP_PARSE_INCOMPLETE);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct http_limits small = {40, 120, 4};
    static const struct http_limits dflt = {8192, 8192, HTTP_MAX_HEADERS};
    char *buf = malloc(size ? size : 1);
    if (buf == NULL) return 0;
    if (size) memcpy(buf, data, size);
    (void)parse(buf, size, &small);
    int rc = parse(buf, size, &dflt);
    /* Any prefix of a complete head is incomplete, bar the limit errors. */
    if (rc > 1) {
        struct http_request req;
        int p = http_parse_request(buf, (size_t)rc - 1, &req, &dflt);
        CHECK(p == HTTP_PARSE_INCOMPLETE);
    }
    free(buf);
    return 0;
}
