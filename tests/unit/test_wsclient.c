/* Tests for the WebSocket client library (src/client/wsclient.h). The protocol core is
 * driven without sockets: the handshake request is read from the output queue (and
 * checked by the server's own handshake validator), responses and server frames are
 * fed in every split, and frames the client queues are decoded by a ws_reader in
 * server mode, which insists on masking. The socket layer is tested over a
 * socketpair with a small read buffer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/wsclient.h"
#include "http/parser.h"
#include "ws/handshake.h"
#include "ws/reader.h"

/* ---- recording events ---- */

#define MAX_EVENTS 64

struct rec_ev {
    enum wsc_event_type type;
    enum ws_opcode opcode;
    unsigned code;
    char sub[64];
    uint8_t data[128];
    size_t len;
};

struct rec {
    struct rec_ev ev[MAX_EVENTS];
    size_t n;
    int stop_at; /* 1-based index of the event whose callback returns -77, 0: never */
};

static int record(void *ud, const struct wsc_event *ev)
{
    struct rec *r = ud;
    assert_true(r->n < MAX_EVENTS);
    struct rec_ev *e = &r->ev[r->n++];
    memset(e, 0, sizeof *e);
    e->type = ev->type;
    e->opcode = ev->opcode;
    e->code = ev->code;
    if (ev->subprotocol) snprintf(e->sub, sizeof e->sub, "%s", ev->subprotocol);
    e->len = ev->len;
    if (ev->len) memcpy(e->data, ev->data, ev->len < sizeof e->data ? ev->len : sizeof e->data);
    if (r->stop_at && (int)r->n == r->stop_at) return -77;
    return 0;
}

static void assert_event(const struct rec *r, size_t i, enum wsc_event_type type, const char *data)
{
    assert_true(i < r->n);
    assert_int_equal(r->ev[i].type, type);
    if (data) {
        assert_int_equal(r->ev[i].len, strlen(data));
        assert_memory_equal(r->ev[i].data, data, strlen(data));
    }
}

/* ---- helpers ---- */

static struct wsc *client(const char *url, const char *const *headers, const char *const *subs)
{
    struct wsc_url u;
    const char *why = NULL;
    assert_int_equal(wsc_url_parse(url, &u, &why), 0);
    struct wsc_options opt = {.headers = headers, .subprotocols = subs};
    int err = 1;
    struct wsc *c = wsc_new(&u, &opt, &err);
    assert_non_null(c);
    assert_int_equal(err, 0);
    return c;
}

/* The queued request as a C string (static buffer). */
static const char *request_text(struct wsc *c)
{
    static char buf[16384];
    size_t len;
    const uint8_t *p = wsc_output(c, &len);
    assert_non_null(p);
    assert_true(len < sizeof buf);
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static void key_of(struct wsc *c, char key[25])
{
    const char *req = request_text(c);
    const char *k = strstr(req, "\r\nSec-WebSocket-Key: ");
    assert_non_null(k);
    k += strlen("\r\nSec-WebSocket-Key: ");
    memcpy(key, k, 24);
    key[24] = '\0';
    assert_int_equal(k[24], '\r');
}

/* A 101 answer to c's request with `extra` header lines (CRLF-ended) and the accept
 * value replaced when accept is not NULL. */
static size_t response_101(struct wsc *c, char *out, size_t cap, const char *accept,
                           const char *extra)
{
    char key[25], acc[WS_ACCEPT_LEN + 1];
    key_of(c, key);
    ws_accept_key(key, 24, acc);
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s\r\n",
                     accept ? accept : acc, extra ? extra : "");
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static int feed_str(struct wsc *c, const char *s, struct rec *r)
{
    size_t n = strlen(s);
    uint8_t *copy = malloc(n + 1);
    assert_non_null(copy);
    memcpy(copy, s, n + 1);
    int rc = wsc_feed(c, copy, n, record, r);
    free(copy);
    return rc;
}

/* An open client: request consumed, 101 fed. */
static struct wsc *open_client(struct rec *r, const struct wsc_options *opt)
{
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://example.com/ws", &u, NULL), 0);
    int err;
    struct wsc *c = wsc_new(&u, opt, &err);
    assert_non_null(c);
    char resp[1024];
    response_101(c, resp, sizeof resp, NULL, NULL);
    size_t len;
    wsc_output(c, &len);
    wsc_output_done(c, len);
    assert_int_equal(feed_str(c, resp, r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_OPEN);
    wsc_output(c, &len);
    assert_int_equal(len, 0);
    return c;
}

/* Unmasked server frame. */
static size_t sframe(uint8_t *out, unsigned b0, const void *payload, size_t n)
{
    size_t h = 0;
    out[h++] = (uint8_t)b0;
    if (n < 126) {
        out[h++] = (uint8_t)n;
    } else if (n <= 0xFFFF) {
        out[h++] = 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = 127;
        for (int k = 7; k >= 0; k--)
            out[h++] = (uint8_t)((uint64_t)n >> (8 * k));
    }
    if (n) memcpy(out + h, payload, n);
    return h + n;
}

static size_t sclose(uint8_t *out, unsigned code, const char *reason)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t n = 0;
    p[n++] = (uint8_t)(code >> 8);
    p[n++] = (uint8_t)code;
    memcpy(p + n, reason, strlen(reason));
    n += strlen(reason);
    return sframe(out, 0x80 | WS_OP_CLOSE, p, n);
}

/* ---- decoding what the client sends, as a server would ---- */

#define MAX_DECODED 16

struct decoded {
    struct {
        unsigned op;
        unsigned code;
        uint8_t *data;
        size_t len;
    } m[MAX_DECODED];
    size_t n;
};

static int dec_msg(void *ud, enum ws_opcode op, bool rsv1, uint8_t *data, size_t len)
{
    struct decoded *d = ud;
    assert_false(rsv1);
    assert_true(d->n < MAX_DECODED);
    d->m[d->n].op = op;
    d->m[d->n].code = 0;
    d->m[d->n].data = malloc(len + 1);
    assert_non_null(d->m[d->n].data);
    if (len) memcpy(d->m[d->n].data, data, len);
    d->m[d->n].len = len;
    d->n++;
    return 0;
}

static int dec_ctl(void *ud, enum ws_opcode op, unsigned code, uint8_t *data, size_t len)
{
    int rc = dec_msg(ud, op, false, data, len);
    struct decoded *d = ud;
    d->m[d->n - 1].code = code;
    return rc;
}

static void decoded_free(struct decoded *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->m[i].data);
    d->n = 0;
}

/* Decodes (and consumes) everything c has queued; every frame must be masked. */
static void decode_output(struct wsc *c, struct decoded *d)
{
    static const struct ws_reader_callbacks cb = {dec_msg, dec_ctl};
    struct ws_reader r;
    size_t len;
    const uint8_t *p = wsc_output(c, &len);
    memset(d, 0, sizeof *d);
    if (!len) return;
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, p, len);
    ws_reader_init(&r, 1u << 24, WS_READER_SERVER);
    assert_int_equal(ws_reader_feed(&r, copy, len, &cb, d), 0);
    assert_int_equal(ws_reader_busy(&r), 0);
    ws_reader_free(&r);
    free(copy);
    wsc_output_done(c, len);
}

/* ---- URLs ---- */

static void test_url_good(void **state)
{
    (void)state;
    struct wsc_url u;
    const char *why = NULL;

    assert_int_equal(wsc_url_parse("ws://example.com", &u, &why), 0);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.path, "/");
    assert_false(u.ipv6);

    assert_int_equal(wsc_url_parse("ws://127.0.0.1:8080/ws?token=alice&x=%20", &u, &why), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8080);
    assert_string_equal(u.path, "/ws?token=alice&x=%20");

    assert_int_equal(wsc_url_parse("ws://[::1]:9000/echo", &u, &why), 0);
    assert_string_equal(u.host, "::1");
    assert_true(u.ipv6);
    assert_int_equal(u.port, 9000);
    assert_string_equal(u.path, "/echo");

    assert_int_equal(wsc_url_parse("WS://Host-1.example_x~:65535?q=1", &u, &why), 0);
    assert_string_equal(u.host, "Host-1.example_x~");
    assert_int_equal(u.port, 65535);
    assert_string_equal(u.path, "/?q=1");

    assert_int_equal(wsc_url_parse("ws://[2001:db8::1]", &u, &why), 0);
    assert_string_equal(u.host, "2001:db8::1");
    assert_int_equal(u.port, 80);
    assert_false(u.tls);

    assert_int_equal(wsc_url_parse("wss://example.com/ws", &u, &why), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/ws");
    assert_int_equal(wsc_url_parse("WSS://[::1]:8443", &u, &why), 0);
    assert_true(u.tls && u.ipv6);
    assert_int_equal(u.port, 8443);
}

/* The Host header names the port only when it is not the scheme's default; a wss://
 * connection cannot adopt a socket (its TLS handshake is wsc_connect's). */
static void test_wss_host_header_and_attach(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host;
    } cases[] = {
        {"wss://example.com/", "Host: example.com\r\n"},
        {"wss://example.com:8443/", "Host: example.com:8443\r\n"},
        {"wss://example.com:80/", "Host: example.com:80\r\n"},
        {"ws://example.com:443/", "Host: example.com:443\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wsc_url u;
        assert_int_equal(wsc_url_parse(cases[i].url, &u, NULL), 0);
        int err;
        struct wsc *c = wsc_new(&u, NULL, &err);
        assert_non_null(c);
        size_t len;
        const uint8_t *out = wsc_output(c, &len);
        char *req = strndup((const char *)out, len);
        if (!strstr(req, cases[i].host))
            fail_msg("%s: no \"%s\" in\n%s", cases[i].url, cases[i].host, req);
        free(req);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        int rc = wsc_attach(c, sv[0]);
        if (u.tls) {
            assert_int_equal(rc, WSC_ERR_ARG);
            close(sv[0]);
        } else {
            assert_int_equal(rc, 0);
        }
        close(sv[1]);
        wsc_free(c);
    }
}

static void test_url_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "example.com",
        "http://example.com/",
        "ws://",
        "ws:///path",
        "ws://:80/",
        "ws://host:/",
        "ws://host:0/",
        "ws://host:65536/",
        "ws://host:123456/",
        "ws://host:8a/",
        "ws://user@host/",
        "ws://host/#frag",
        "ws://host/a b",
        "ws://host/\x7f",
        "ws://host/\xc3\xa9",
        "ws://ho st/",
        "ws://ho%st/",
        "ws://[::1/",
        "ws://[zz::1]/",
        "ws://[]/",
        "ws://[::1]x/",
        "ws://host:80:81/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wsc_url u;
        const char *why = NULL;
        int rc = wsc_url_parse(bad[i], &u, &why);
        if (rc != WSC_ERR_ARG) fail_msg("accepted bad URL \"%s\"", bad[i]);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
    }
    struct wsc_url u;
    const char *why = NULL;
    assert_int_equal(wsc_url_parse("wss:/x/", &u, &why), WSC_ERR_ARG);
    assert_non_null(strstr(why, "wss://"));

    /* over-long host and path */
    char *big = malloc(WSC_MAX_PATH + 64);
    assert_non_null(big);
    strcpy(big, "ws://");
    memset(big + 5, 'h', WSC_MAX_HOST);
    big[5 + WSC_MAX_HOST] = '\0';
    assert_int_equal(wsc_url_parse(big, &u, NULL), WSC_ERR_ARG);
    strcpy(big, "ws://h/");
    memset(big + 7, 'p', WSC_MAX_PATH);
    big[7 + WSC_MAX_PATH] = '\0';
    assert_int_equal(wsc_url_parse(big, &u, NULL), WSC_ERR_ARG);
    free(big);
}

/* ---- the request ---- */

static void test_request_bytes(void **state)
{
    (void)state;
    static const char *const headers[] = {"Authorization: Bearer abc.def", "X-Test:  v ", NULL};
    static const char *const subs[] = {"wshub", "chat.v2", NULL};
    struct wsc *c = client("ws://example.com:8080/chat?room=1", headers, subs);
    const char *req = request_text(c);

    assert_true(strncmp(req, "GET /chat?room=1 HTTP/1.1\r\n", 27) == 0);
    assert_non_null(strstr(req, "\r\nHost: example.com:8080\r\n"));
    assert_non_null(strstr(req, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(req, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Protocol: wshub, chat.v2\r\n"));
    assert_non_null(strstr(req, "\r\nAuthorization: Bearer abc.def\r\n"));
    assert_non_null(strstr(req, "\r\nX-Test:  v \r\n"));
    size_t len = strlen(req);
    assert_string_equal(req + len - 4, "\r\n\r\n");
    assert_ptr_equal(strstr(req, "\r\n\r\n"), req + len - 4);

    /* The server's own parser and validator accept it. */
    struct http_request hr;
    assert_int_equal(http_parse_request(req, len, &hr, NULL), (int)len);
    struct ws_handshake hs;
    static const char *const supported[] = {"chat.v2", NULL};
    assert_int_equal(ws_handshake_check(&hr, supported, &hs), 0);
    assert_string_equal(hs.subprotocol, "chat.v2");

    /* The key is base64 of 16 bytes and differs between connections. */
    char k1[25], k2[25];
    key_of(c, k1);
    assert_string_equal(k1 + 22, "==");
    struct wsc *c2 = client("ws://[::1]/", NULL, NULL);
    key_of(c2, k2);
    assert_string_not_equal(k1, k2);
    const char *req2 = request_text(c2);
    assert_non_null(strstr(req2, "\r\nHost: [::1]\r\n")); /* default port not written */
    assert_null(strstr(req2, "Sec-WebSocket-Protocol"));
    wsc_free(c2);

    /* wsc_output_done consumes in pieces. */
    req = request_text(c);
    size_t total, rest;
    wsc_output(c, &total);
    wsc_output_done(c, 10);
    const uint8_t *p = wsc_output(c, &rest);
    assert_int_equal(rest, total - 10);
    assert_memory_equal(p, req + 10, 5);
    wsc_output_done(c, rest + 100);
    assert_null(wsc_output(c, &rest));
    assert_int_equal(rest, 0);
    assert_int_equal(wsc_want_write(c), 0);
    wsc_free(c);
}

static void test_request_own_host_and_bad_options(void **state)
{
    (void)state;
    static const char *const headers[] = {"host: proxy.example", NULL};
    struct wsc *c = client("ws://10.0.0.1:81/", headers, NULL);
    const char *req = request_text(c);
    assert_non_null(strstr(req, "\r\nhost: proxy.example\r\n"));
    assert_null(strstr(req, "Host: 10.0.0.1"));
    wsc_free(c);

    static const char *const bad_headers[] = {
        "NoColon",           ": empty",
        "Bad Name: x",       "X: a\r\nInjected: 1",
        "Upgrade: h2c",      "sec-websocket-key: abc",
        "Connection: close",
    };
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://h/", &u, NULL), 0);
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        const char *why = NULL;
        assert_int_equal(wsc_check_header(bad_headers[i], &why), WSC_ERR_ARG);
        assert_non_null(why);
        const char *list[] = {bad_headers[i], NULL};
        struct wsc_options opt = {.headers = list};
        int err = 0;
        assert_null(wsc_new(&u, &opt, &err));
        assert_int_equal(err, WSC_ERR_ARG);
    }
    static const char *const bad_subs[] = {"", "two words", "a,b", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad_subs / sizeof bad_subs[0]; i++) {
        assert_int_equal(wsc_check_subprotocol(bad_subs[i], NULL), WSC_ERR_ARG);
        const char *list[] = {bad_subs[i], NULL};
        struct wsc_options opt = {.subprotocols = list};
        int err = 0;
        assert_null(wsc_new(&u, &opt, &err));
        assert_int_equal(err, WSC_ERR_ARG);
    }
}

/* ---- the response ---- */

static void test_response_101(void **state)
{
    (void)state;
    static const char *const subs[] = {"wshub", "chat", NULL};
    struct wsc *c = client("ws://example.com/ws", NULL, subs);
    char resp[1024];
    size_t n = response_101(c, resp, sizeof resp, NULL, "Sec-WebSocket-Protocol: chat\r\n");
    struct rec r = {0};
    /* In two pieces, split inside the blank line. */
    uint8_t buf[1024];
    memcpy(buf, resp, n);
    assert_int_equal(wsc_feed(c, buf, n - 1, record, &r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_HANDSHAKE);
    assert_int_equal(wsc_feed(c, buf + n - 1, 1, record, &r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_OPEN);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, WSC_EV_OPEN);
    assert_string_equal(r.ev[0].sub, "chat");
    assert_string_equal(wsc_subprotocol(c), "chat");
    assert_int_equal(wsc_http_status(c), 101);
    assert_null(wsc_http_body(c, NULL));
    assert_string_equal(wsc_error_detail(c), "");
    wsc_free(c);

    /* No subprotocol chosen from those offered is fine; header case and bare LF too. */
    c = client("ws://example.com/ws", NULL, subs);
    char key[25], acc[WS_ACCEPT_LEN + 1], text[512];
    key_of(c, key);
    ws_accept_key(key, 24, acc);
    snprintf(text, sizeof text,
             "HTTP/1.1 101 Switching Protocols\nupgrade: WebSocket\nconnection: keep-alive, "
             "UPGRADE\nsec-websocket-accept:%s \n\n",
             acc);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_str(c, text, &r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_OPEN);
    assert_null(wsc_subprotocol(c));
    assert_int_equal(r.ev[0].type, WSC_EV_OPEN);
    assert_string_equal(r.ev[0].sub, "");
    wsc_free(c);
}

/* Feeds a response and expects the handshake to fail with rc. */
static struct wsc *expect_refusal(const char *const *subs, const char *response, int rc)
{
    struct wsc *c = client("ws://example.com/ws", NULL, subs);
    struct rec r = {0};
    assert_int_equal(feed_str(c, response, &r), rc);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    assert_int_equal(r.n, 0);
    assert_true(strlen(wsc_error_detail(c)) > 0);
    /* finished: further input is ignored, the result stays */
    assert_int_equal(feed_str(c, "HTTP/1.1 101 OK\r\n\r\n", &r), rc);
    return c;
}

static void test_response_wrong_accept(void **state)
{
    (void)state;
    struct wsc *c = client("ws://example.com/ws", NULL, NULL);
    char resp[1024];
    response_101(c, resp, sizeof resp, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", NULL);
    wsc_free(c);
    c = expect_refusal(NULL, resp, WSC_ERR_ACCEPT);
    assert_non_null(strstr(wsc_error_detail(c), "Sec-WebSocket-Accept"));
    wsc_free(c);
    c = expect_refusal(NULL,
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\n\r\n",
                       WSC_ERR_ACCEPT);
    wsc_free(c);
}

static void test_response_401_body(void **state)
{
    (void)state;
    static const char body[] =
        "{\"error\":{\"code\":\"missing_token\",\"message\":\"no token\"}}\n";
    char resp[512];
    snprintf(resp, sizeof resp,
             "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
             "WWW-Authenticate: Bearer\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(body), body);
    size_t n = strlen(resp);

    /* One byte at a time: nothing is decided before the body's last byte. */
    struct wsc *c = client("ws://example.com/ws", NULL, NULL);
    struct rec r = {0};
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)resp[i];
        int rc = wsc_feed(c, &b, 1, record, &r);
        assert_int_equal(rc, i + 1 == n ? WSC_ERR_STATUS : 0);
    }
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    assert_int_equal(wsc_http_status(c), 401);
    size_t blen = 0;
    const char *b = wsc_http_body(c, &blen);
    assert_non_null(b);
    assert_int_equal(blen, strlen(body));
    assert_string_equal(b, body);
    const char *detail = wsc_error_detail(c);
    assert_non_null(strstr(detail, "HTTP 401 Unauthorized: "));
    assert_non_null(strstr(detail, "missing_token"));
    assert_null(strchr(detail, '\n'));
    assert_int_equal(r.n, 0);
    wsc_free(c);

    /* No Content-Length: the body runs to EOF. */
    c = client("ws://example.com/ws", NULL, NULL);
    assert_int_equal(feed_str(c, "HTTP/1.1 403 Forbidden\r\n\r\nnot here", &r), 0);
    assert_int_equal(feed_str(c, " either", &r), 0);
    assert_int_equal(wsc_feed_eof(c), WSC_ERR_STATUS);
    assert_string_equal(wsc_http_body(c, NULL), "not here either");
    assert_string_equal(wsc_error_detail(c), "HTTP 403 Forbidden: not here either");
    wsc_free(c);

    /* Content-Length: 0 ends at the head; a huge body is cut at 4 KiB. */
    c = expect_refusal(NULL, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", WSC_ERR_STATUS);
    assert_int_equal(wsc_http_status(c), 503);
    assert_null(wsc_http_body(c, NULL));
    wsc_free(c);
    c = client("ws://example.com/ws", NULL, NULL);
    assert_int_equal(feed_str(c, "HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n", &r), 0);
    char chunk[1000];
    memset(chunk, 'z', sizeof chunk - 1);
    chunk[sizeof chunk - 1] = '\0';
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++)
        rc = feed_str(c, chunk, &r);
    assert_int_equal(rc, WSC_ERR_STATUS);
    wsc_http_body(c, &blen);
    assert_int_equal(blen, 4096);
    wsc_free(c);

    /* EOF in the middle of the head, or before any byte. */
    c = client("ws://example.com/ws", NULL, NULL);
    assert_int_equal(feed_str(c, "HTTP/1.1 101 Swi", &r), 0);
    assert_int_equal(wsc_feed_eof(c), WSC_ERR_CLOSED);
    wsc_free(c);
    c = client("ws://example.com/ws", NULL, NULL);
    assert_int_equal(wsc_feed_eof(c), WSC_ERR_CLOSED);
    assert_non_null(strstr(wsc_error_detail(c), "without answering"));
    wsc_free(c);
}

static void test_response_missing_upgrade_and_others(void **state)
{
    (void)state;
    struct {
        const char *head; /* status line and headers before Sec-WebSocket-Accept */
        const char *extra;
        int rc;
    } cases[] = {
        {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n", "", WSC_ERR_UPGRADE},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n", "",
         WSC_ERR_UPGRADE},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", "", WSC_ERR_CONNECTION},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: close\r\n", "",
         WSC_ERR_CONNECTION},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
         "Sec-WebSocket-Extensions: permessage-deflate\r\n", WSC_ERR_EXTENSION},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
         "Sec-WebSocket-Protocol: wshub\r\n", WSC_ERR_SUBPROTOCOL}, /* none offered */
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
         " folded\r\n", WSC_ERR_HTTP},
        {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
         "No colon here\r\n", WSC_ERR_HTTP},
        {"HTTP/2 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", "",
         WSC_ERR_HTTP},
        {"HTTP/1.1 1O1 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", "",
         WSC_ERR_HTTP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wsc *c = client("ws://example.com/ws", NULL, NULL);
        char key[25], acc[WS_ACCEPT_LEN + 1], text[1024];
        key_of(c, key);
        ws_accept_key(key, 24, acc);
        snprintf(text, sizeof text, "%sSec-WebSocket-Accept: %s\r\n%s\r\n", cases[i].head, acc,
                 cases[i].extra);
        struct rec r = {0};
        int rc = feed_str(c, text, &r);
        if (rc != cases[i].rc) fail_msg("case %zu: got %d, want %d", i, rc, cases[i].rc);
        assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
        assert_int_equal(r.n, 0);
        wsc_free(c);
    }

    /* Not HTTP at all: refused from the first bytes, without waiting for a head. */
    struct wsc *c = client("ws://example.com/ws", NULL, NULL);
    struct rec r = {0};
    assert_int_equal(feed_str(c, "SSH-2.0-OpenSSH", &r), WSC_ERR_HTTP);
    assert_non_null(strstr(wsc_error_detail(c), "SSH-2.0"));
    wsc_free(c);

    /* A head that never ends is refused at 16 KiB. */
    c = client("ws://example.com/ws", NULL, NULL);
    assert_int_equal(feed_str(c, "HTTP/1.1 101 Switching Protocols\r\n", &r), 0);
    char line[1001];
    memset(line, 'a', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    memcpy(line, "X-Pad: ", 7);
    line[998] = '\r';
    line[999] = '\n';
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = feed_str(c, line, &r);
    assert_int_equal(rc, WSC_ERR_HTTP);
    wsc_free(c);
}

static void test_response_subprotocol_not_offered(void **state)
{
    (void)state;
    static const char *const subs[] = {"wshub", "chat", NULL};
    const char *bad[] = {"other", "WSHUB", "wshub, chat", "wshub\r\nSec-WebSocket-Protocol: chat",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wsc *c = client("ws://example.com/ws", NULL, subs);
        char extra[128], resp[1024];
        snprintf(extra, sizeof extra, "Sec-WebSocket-Protocol: %s\r\n", bad[i]);
        response_101(c, resp, sizeof resp, NULL, extra);
        struct rec r = {0};
        int rc = feed_str(c, resp, &r);
        if (rc != WSC_ERR_SUBPROTOCOL) fail_msg("\"%s\": got %d", bad[i], rc);
        assert_null(wsc_subprotocol(c));
        wsc_free(c);
    }
}

/* ---- frames out ---- */

static void test_send_masked(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);

    assert_int_equal(wsc_send(c, WS_OP_TEXT, "hello", 5), 0);
    size_t len;
    const uint8_t *p = wsc_output(c, &len);
    assert_int_equal(len, 2 + 4 + 5);
    assert_int_equal(p[0], 0x81);
    assert_int_equal(p[1], 0x80 | 5);
    uint8_t payload[5];
    memcpy(payload, p + 6, 5);
    ws_mask(payload, 5, p + 2, 0);
    assert_memory_equal(payload, "hello", 5);
    uint8_t key1[4];
    memcpy(key1, p + 2, 4);
    wsc_output_done(c, len);

    /* Each frame its own key. */
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "hello", 5), 0);
    p = wsc_output(c, &len);
    assert_memory_not_equal(p + 2, key1, 4);
    wsc_output_done(c, len);

    /* Every length form, text, binary and control, decoded by a server-mode reader. */
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(wsc_send(c, WS_OP_BINARY, big, sizeof big), 0);
    assert_int_equal(wsc_send(c, WS_OP_BINARY, big, 200), 0);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "", 0), 0);
    assert_int_equal(wsc_send(c, WS_OP_PING, "p", 1), 0);
    assert_int_equal(wsc_send(c, WS_OP_PONG, NULL, 0), 0);
    assert_int_equal(wsc_want_write(c), 1);
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 5);
    assert_int_equal(d.m[0].op, WS_OP_BINARY);
    assert_int_equal(d.m[0].len, sizeof big);
    assert_memory_equal(d.m[0].data, big, sizeof big);
    assert_int_equal(d.m[1].len, 200);
    assert_memory_equal(d.m[1].data, big, 200);
    assert_int_equal(d.m[2].op, WS_OP_TEXT);
    assert_int_equal(d.m[2].len, 0);
    assert_int_equal(d.m[3].op, WS_OP_PING);
    assert_int_equal(d.m[4].op, WS_OP_PONG);
    decoded_free(&d);

    /* Bad arguments. */
    uint8_t ctl[126] = {0};
    assert_int_equal(wsc_send(c, WS_OP_PING, ctl, 126), WSC_ERR_ARG);
    assert_int_equal(wsc_send(c, WS_OP_CLOSE, NULL, 0), WSC_ERR_ARG);
    assert_int_equal(wsc_send(c, WS_OP_CONT, "x", 1), WSC_ERR_ARG);
    assert_int_equal(wsc_send(c, (enum ws_opcode)3, "x", 1), WSC_ERR_ARG);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, NULL, 3), WSC_ERR_ARG);
    assert_null(wsc_output(c, &len));
    wsc_free(c);

    /* Nothing can be sent before the handshake. */
    c = client("ws://example.com/", NULL, NULL);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "x", 1), WSC_ERR_STATE);
    assert_int_equal(wsc_send(c, WS_OP_PING, "x", 1), WSC_ERR_STATE);
    wsc_free(c);
}

static void test_send_fragmented(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc_options opt = {.fragment_size = 10};
    struct wsc *c = open_client(&r, &opt);
    const char *msg = "0123456789abcdefghijKLMNO";
    assert_int_equal(wsc_send(c, WS_OP_TEXT, msg, strlen(msg)), 0);
    size_t len;
    const uint8_t *p = wsc_output(c, &len);
    /* three frames: 10 + 10 + 5 payload bytes */
    assert_int_equal(len, 3 * 6 + 25);
    assert_int_equal(p[0], WS_OP_TEXT);
    assert_int_equal(p[16], WS_OP_CONT);
    assert_int_equal(p[32], 0x80 | WS_OP_CONT);
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].len, 25);
    assert_memory_equal(d.m[0].data, msg, 25);
    decoded_free(&d);

    /* By hand, with a ping between the pieces. */
    assert_int_equal(wsc_send_frame(c, WS_OP_CONT, "x", 1, true), WSC_ERR_STATE);
    assert_int_equal(wsc_send_frame(c, WS_OP_BINARY, "ab", 2, false), 0);
    assert_int_equal(wsc_send(c, WS_OP_BINARY, "no", 2), WSC_ERR_STATE);
    assert_int_equal(wsc_send_frame(c, WS_OP_TEXT, "no", 2, true), WSC_ERR_STATE);
    assert_int_equal(wsc_send_frame(c, WS_OP_PING, "pi", 2, true), 0);
    assert_int_equal(wsc_send_frame(c, WS_OP_PING, "pi", 2, false), WSC_ERR_ARG);
    assert_int_equal(wsc_send_frame(c, WS_OP_CONT, "cd", 2, false), 0);
    assert_int_equal(wsc_send_frame(c, WS_OP_CONT, "ef", 2, true), 0);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "after", 5), 0);
    decode_output(c, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.m[0].op, WS_OP_PING);
    assert_int_equal(d.m[1].op, WS_OP_BINARY);
    assert_int_equal(d.m[1].len, 6);
    assert_memory_equal(d.m[1].data, "abcdef", 6);
    assert_int_equal(d.m[2].len, 5);
    decoded_free(&d);
    wsc_free(c);
}

/* ---- frames in ---- */

/* The server stream used by the split tests, and what it must produce. */
static size_t server_stream(uint8_t *out)
{
    size_t n = 0;
    static uint8_t mid[300];
    memset(mid, 'm', sizeof mid);
    n += sframe(out + n, 0x80 | WS_OP_TEXT, "hello", 5);
    n += sframe(out + n, 0x80 | WS_OP_BINARY, "\x00\x01\xff", 3);
    n += sframe(out + n, WS_OP_TEXT, "frag", 4);
    n += sframe(out + n, 0x80 | WS_OP_PING, "ping!", 5);
    n += sframe(out + n, 0x80 | WS_OP_CONT, "ment \xc3\xa9", 7);
    n += sframe(out + n, 0x80 | WS_OP_PONG, "", 0);
    n += sframe(out + n, 0x80 | WS_OP_TEXT, mid, sizeof mid);
    n += sframe(out + n, 0x80 | WS_OP_TEXT, "", 0);
    return n;
}

static void check_stream_events(const struct rec *r, size_t first)
{
    assert_int_equal(r->n, first + 7);
    assert_event(r, first + 0, WSC_EV_MESSAGE, "hello");
    assert_int_equal(r->ev[first].opcode, WS_OP_TEXT);
    assert_int_equal(r->ev[first + 1].opcode, WS_OP_BINARY);
    assert_int_equal(r->ev[first + 1].len, 3);
    assert_memory_equal(r->ev[first + 1].data, "\x00\x01\xff", 3);
    assert_event(r, first + 2, WSC_EV_PING, "ping!");
    assert_event(r, first + 3, WSC_EV_MESSAGE, "fragment \xc3\xa9");
    assert_event(r, first + 4, WSC_EV_PONG, "");
    assert_int_equal(r->ev[first + 5].len, 300);
    assert_event(r, first + 6, WSC_EV_MESSAGE, "");
}

static void check_auto_pong(struct wsc *c, const char *payload)
{
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].op, WS_OP_PONG);
    assert_int_equal(d.m[0].len, strlen(payload));
    assert_memory_equal(d.m[0].data, payload, strlen(payload));
    decoded_free(&d);
}

static void test_feed_split_every_byte(void **state)
{
    (void)state;
    uint8_t stream[1024], copy[1024];
    size_t n = server_stream(stream);

    for (size_t cut = 0; cut <= n; cut++) {
        struct rec r = {0};
        struct wsc *c = open_client(&r, NULL);
        memcpy(copy, stream, n);
        assert_int_equal(wsc_feed(c, copy, cut, record, &r), 0);
        assert_int_equal(wsc_feed(c, copy + cut, n - cut, record, &r), 0);
        check_stream_events(&r, 1);
        check_auto_pong(c, "ping!");
        wsc_free(c);
    }

    /* one byte at a time */
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);
    memcpy(copy, stream, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(wsc_feed(c, copy + i, 1, record, &r), 0);
    check_stream_events(&r, 1);
    check_auto_pong(c, "ping!");
    wsc_free(c);
}

static void test_feed_handshake_and_frames_together(void **state)
{
    (void)state;
    uint8_t all[2048], copy[2048];
    /* The 101 and the frames behind it, cut at every byte of the whole. */
    for (size_t cut = 0;; cut++) {
        struct wsc *c = client("ws://example.com/ws", NULL, NULL);
        size_t len;
        wsc_output(c, &len);
        char resp[1024];
        size_t h = response_101(c, resp, sizeof resp, NULL, NULL);
        wsc_output_done(c, len);
        memcpy(all, resp, h);
        size_t n = h + server_stream(all + h);
        if (cut > n) {
            wsc_free(c);
            break;
        }
        struct rec r = {0};
        memcpy(copy, all, n);
        assert_int_equal(wsc_feed(c, copy, cut, record, &r), 0);
        assert_int_equal(wsc_feed(c, copy + cut, n - cut, record, &r), 0);
        assert_int_equal(r.ev[0].type, WSC_EV_OPEN);
        check_stream_events(&r, 1);
        wsc_free(c);
    }
}

static void test_auto_pong(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);
    uint8_t buf[256];
    uint8_t payload[125];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    size_t n = sframe(buf, 0x80 | WS_OP_PING, payload, sizeof payload);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), 0);
    assert_int_equal(r.ev[1].type, WSC_EV_PING);
    assert_int_equal(wsc_want_write(c), 1);
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].op, WS_OP_PONG);
    assert_int_equal(d.m[0].len, sizeof payload);
    assert_memory_equal(d.m[0].data, payload, sizeof payload);
    decoded_free(&d);

    /* Empty ping, and a pong from the server (answered with nothing). */
    n = sframe(buf, 0x80 | WS_OP_PING, NULL, 0);
    n += sframe(buf + n, 0x80 | WS_OP_PONG, "x", 1);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), 0);
    check_auto_pong(c, "");
    assert_int_equal(r.ev[3].type, WSC_EV_PONG);

    /* After our close, pings get no pong. */
    assert_int_equal(wsc_close(c, 1000, NULL), 0);
    size_t len;
    wsc_output(c, &len);
    wsc_output_done(c, len);
    n = sframe(buf, 0x80 | WS_OP_PING, "late", 4);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), 0);
    assert_int_equal(wsc_want_write(c), 0);
    wsc_free(c);
}

static void test_server_close(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);
    uint8_t buf[256];
    size_t n = sframe(buf, 0x80 | WS_OP_TEXT, "last", 4);
    n += sclose(buf + n, 1001, "going away");
    n += sframe(buf + n, 0x80 | WS_OP_TEXT, "ignored", 7);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), WSC_DONE);
    assert_int_equal(r.n, 3);
    assert_event(&r, 1, WSC_EV_MESSAGE, "last");
    assert_event(&r, 2, WSC_EV_CLOSE, "going away");
    assert_int_equal(r.ev[2].code, 1001);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    assert_int_equal(wsc_close_code(c), 1001);
    assert_string_equal(wsc_close_reason(c), "going away");
    assert_string_equal(wsc_error_detail(c), "");

    /* The answer: a close with the same code. */
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].op, WS_OP_CLOSE);
    assert_int_equal(d.m[0].code, 1001);
    decoded_free(&d);

    /* Finished: nothing more goes in or out. */
    n = sframe(buf, 0x80 | WS_OP_TEXT, "more", 4);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), WSC_DONE);
    assert_int_equal(r.n, 3);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "x", 1), WSC_ERR_STATE);
    assert_int_equal(wsc_close(c, 1000, NULL), WSC_ERR_STATE);
    assert_int_equal(wsc_feed_eof(c), WSC_DONE);
    wsc_free(c);

    /* An empty close is answered with an empty close and reported as 1005. */
    memset(&r, 0, sizeof r);
    c = open_client(&r, NULL);
    n = sframe(buf, 0x80 | WS_OP_CLOSE, NULL, 0);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), WSC_DONE);
    assert_int_equal(r.ev[1].code, WS_CLOSE_NO_STATUS);
    size_t len;
    const uint8_t *p = wsc_output(c, &len);
    assert_int_equal(len, 6);
    assert_int_equal(p[0], 0x88);
    assert_int_equal(p[1], 0x80);
    wsc_free(c);
}

static void test_client_close(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);
    assert_int_equal(wsc_close(c, 1005, NULL), WSC_ERR_ARG);
    assert_int_equal(wsc_close(c, 999, NULL), WSC_ERR_ARG);
    assert_int_equal(wsc_close(c, 0, "reason without code"), WSC_ERR_ARG);
    char longr[125];
    memset(longr, 'r', 124);
    longr[124] = '\0';
    assert_int_equal(wsc_close(c, 1000, longr), WSC_ERR_ARG);
    assert_int_equal(wsc_close(c, 1000, "\xff"), WSC_ERR_ARG);
    longr[123] = '\0';
    assert_int_equal(wsc_close(c, 4000, longr), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSING);
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "x", 1), WSC_ERR_STATE);
    assert_int_equal(wsc_close(c, 1000, NULL), WSC_ERR_STATE);
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].op, WS_OP_CLOSE);
    assert_int_equal(d.m[0].code, 4000);
    assert_int_equal(d.m[0].len, 123);
    decoded_free(&d);

    /* Messages still arriving are delivered; the server's close completes it and is not
     * answered again. */
    uint8_t buf[128];
    size_t n = sframe(buf, 0x80 | WS_OP_TEXT, "in flight", 9);
    n += sclose(buf + n, 4000, "");
    assert_int_equal(wsc_feed(c, buf, n, record, &r), WSC_DONE);
    assert_event(&r, 1, WSC_EV_MESSAGE, "in flight");
    assert_int_equal(r.ev[2].type, WSC_EV_CLOSE);
    assert_int_equal(r.ev[2].code, 4000);
    assert_int_equal(wsc_want_write(c), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    wsc_free(c);

    /* Closing before the handshake just ends it. */
    c = client("ws://example.com/", NULL, NULL);
    assert_int_equal(wsc_close(c, 1000, NULL), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    assert_int_equal(wsc_want_write(c), 0);
    wsc_free(c);
}

/* A bad frame from the server fails the connection with the right close code. */
static void expect_protocol_error(const uint8_t *frame, size_t n, unsigned code,
                                  const struct wsc_options *opt)
{
    struct rec r = {0};
    struct wsc *c = open_client(&r, opt);
    uint8_t copy[512];
    memcpy(copy, frame, n);
    assert_int_equal(wsc_feed(c, copy, n, record, &r), WSC_ERR_PROTOCOL);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    char want[16];
    snprintf(want, sizeof want, "%u", code);
    assert_non_null(strstr(wsc_error_detail(c), want));
    struct decoded d;
    decode_output(c, &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.m[0].op, WS_OP_CLOSE);
    assert_int_equal(d.m[0].code, code);
    decoded_free(&d);
    assert_int_equal(wsc_feed(c, copy, n, record, &r), WSC_ERR_PROTOCOL);
    wsc_free(c);
}

/* With .deflate the request offers permessage-deflate; an accepted answer makes
 * compressed server messages arrive inflated; bad compressed data is a 1002. */
static void test_deflate(void **state)
{
    (void)state;
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://example.com/ws", &u, NULL), 0);
    struct wsc_options opt = {.deflate = true};
    int err;
    struct wsc *c = wsc_new(&u, &opt, &err);
    assert_non_null(c);
    assert_non_null(strstr(request_text(c), "\r\nSec-WebSocket-Extensions: permessage-deflate; "
                                            "client_no_context_takeover\r\n"));
    char resp[1024];
    response_101(c, resp, sizeof resp, NULL,
                 "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                 "client_no_context_takeover\r\n");
    size_t len;
    wsc_output(c, &len);
    wsc_output_done(c, len);
    struct rec r = {0};
    assert_int_equal(feed_str(c, resp, &r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_OPEN);
    /* "hello hello hello" as raw deflate with a sync flush, tail removed. */
    static const uint8_t z[] = {0xca, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40,
                                0x90, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff};
    uint8_t f[64];
    size_t n = sframe(f, 0x80 | 0x40 | WS_OP_TEXT, z, sizeof z - 4);
    n += sframe(f + n, 0x80 | WS_OP_TEXT, "plain", 5);
    n += sframe(f + n, 0x80 | 0x40 | WS_OP_TEXT, z, sizeof z - 4); /* no context kept */
    assert_int_equal(wsc_feed(c, f, n, record, &r), 0);
    assert_int_equal(r.n, 4);
    assert_event(&r, 1, WSC_EV_MESSAGE, "hello hello hello");
    assert_event(&r, 2, WSC_EV_MESSAGE, "plain");
    assert_event(&r, 3, WSC_EV_MESSAGE, "hello hello hello");
    n = sframe(f, 0x80 | 0x40 | WS_OP_BINARY, "\x07\x00", 2); /* reserved block type */
    assert_int_equal(wsc_feed(c, f, n, record, &r), WSC_ERR_PROTOCOL);
    assert_non_null(strstr(wsc_error_detail(c), "1002"));
    wsc_free(c);

    /* Not offered: RSV1 stays a protocol error and an answer naming it is refused. */
    uint8_t g[64];
    n = sframe(g, 0x80 | 0x40 | WS_OP_TEXT, z, sizeof z - 4);
    expect_protocol_error(g, n, 1002, NULL);
}

static void test_protocol_errors(void **state)
{
    (void)state;
    uint8_t f[512];
    /* masked frame from a server */
    const uint8_t masked[] = {0x81, 0x81, 1, 2, 3, 4, 'x' ^ 1};
    expect_protocol_error(masked, sizeof masked, 1002, NULL);
    /* reserved opcode, RSV1 without an extension */
    const uint8_t op3[] = {0x83, 0x00};
    expect_protocol_error(op3, sizeof op3, 1002, NULL);
    const uint8_t rsv[] = {0xC1, 0x00};
    expect_protocol_error(rsv, sizeof rsv, 1002, NULL);
    /* invalid UTF-8 text */
    size_t n = sframe(f, 0x80 | WS_OP_TEXT, "\xc3\x28", 2);
    expect_protocol_error(f, n, 1007, NULL);
    /* over max_message_size */
    struct wsc_options small = {.max_message_size = 10};
    n = sframe(f, 0x80 | WS_OP_BINARY, "01234567890", 11);
    expect_protocol_error(f, n, 1009, &small);
    /* bad close code */
    n = sclose(f, 1006, "");
    expect_protocol_error(f, n, 1002, NULL);
}

static void test_eof_and_callback_stop(void **state)
{
    (void)state;
    struct rec r = {0};
    struct wsc *c = open_client(&r, NULL);
    assert_int_equal(wsc_feed_eof(c), WSC_ERR_CLOSED);
    assert_non_null(strstr(wsc_error_detail(c), "1006"));
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    wsc_free(c);

    /* A callback's negative value stops and is returned; the connection is over. */
    memset(&r, 0, sizeof r);
    c = open_client(&r, NULL);
    r.stop_at = 2;
    uint8_t buf[64];
    size_t n = sframe(buf, 0x80 | WS_OP_TEXT, "a", 1);
    n += sframe(buf + n, 0x80 | WS_OP_TEXT, "b", 1);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), -77);
    assert_int_equal(r.n, 2);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    assert_int_equal(wsc_feed(c, buf, n, record, &r), -77);
    wsc_free(c);

    /* ... also from the close event, and from the open event. */
    memset(&r, 0, sizeof r);
    c = open_client(&r, NULL);
    r.stop_at = 2;
    n = sclose(buf, 1000, "");
    assert_int_equal(wsc_feed(c, buf, n, record, &r), -77);
    wsc_free(c);

    memset(&r, 0, sizeof r);
    r.stop_at = 1;
    c = client("ws://example.com/ws", NULL, NULL);
    char resp[1024];
    response_101(c, resp, sizeof resp, NULL, NULL);
    assert_int_equal(feed_str(c, resp, &r), -77);
    assert_int_equal(wsc_state(c), WSC_STATE_CLOSED);
    wsc_free(c);
}

static void test_strerror(void **state)
{
    (void)state;
    for (int e = WSC_ERR_PROTOCOL; e <= WSC_DONE; e++) {
        const char *s = wsc_strerror(e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(wsc_strerror(-1000), "unknown error");
}

/* ---- socket layer over a socketpair ---- */

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        assert_true(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

static void test_socket_layer(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://example.com/ws", &u, NULL), 0);
    struct wsc_options opt = {.read_buffer_size = 1024};
    struct wsc *c = wsc_new(&u, &opt, NULL);
    assert_non_null(c);
    assert_int_equal(wsc_flush(c), WSC_ERR_STATE); /* no socket yet */
    assert_int_equal(wsc_attach(c, sv[0]), 0);
    assert_int_equal(wsc_fd(c), sv[0]);
    assert_int_equal(wsc_attach(c, sv[1]), WSC_ERR_STATE);

    /* The request arrives on the server side whole. */
    assert_int_equal(wsc_flush(c), 0);
    char req[4096];
    ssize_t got = read(sv[1], req, sizeof req - 1);
    assert_true(got > 0);
    req[got] = '\0';
    assert_non_null(strstr(req, "\r\n\r\n"));
    const char *k = strstr(req, "Sec-WebSocket-Key: ") + strlen("Sec-WebSocket-Key: ");
    char acc[WS_ACCEPT_LEN + 1], resp[512];
    ws_accept_key(k, 24, acc);
    int rn = snprintf(resp, sizeof resp,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      acc);

    /* Response, a ping, a 5000-byte message (over the 1 KiB read buffer) and 40 small
     * messages behind it, written in awkward pieces. */
    static uint8_t stream[16384];
    size_t n = 0;
    memcpy(stream, resp, (size_t)rn);
    n += (size_t)rn;
    n += sframe(stream + n, 0x80 | WS_OP_PING, "hb", 2);
    static uint8_t big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i % 251);
    n += sframe(stream + n, 0x80 | WS_OP_BINARY, big, sizeof big);
    for (int i = 0; i < 40; i++) {
        char m[16];
        int ml = snprintf(m, sizeof m, "msg %d", i);
        n += sframe(stream + n, 0x80 | WS_OP_TEXT, m, (size_t)ml);
    }
    struct rec r = {0};
    size_t off = 0, piece = 1;
    while (off < n) {
        size_t take = n - off < piece ? n - off : piece;
        write_all(sv[1], stream + off, take);
        off += take;
        piece = piece * 3 + 1;
        assert_int_equal(wsc_read(c, record, &r), 0);
    }
    assert_int_equal(wsc_read(c, record, &r), 0);
    assert_int_equal(r.n, 1 + 1 + 1 + 40);
    assert_int_equal(r.ev[0].type, WSC_EV_OPEN);
    assert_event(&r, 1, WSC_EV_PING, "hb");
    assert_int_equal(r.ev[2].type, WSC_EV_MESSAGE);
    assert_int_equal(r.ev[2].len, sizeof big);
    assert_memory_equal(r.ev[2].data, big, sizeof r.ev[2].data);
    for (int i = 0; i < 40; i++) {
        char m[16];
        snprintf(m, sizeof m, "msg %d", i);
        assert_event(&r, 3 + (size_t)i, WSC_EV_MESSAGE, m);
    }

    /* The pong went out by itself (wsc_read flushes). */
    uint8_t out[256];
    got = read(sv[1], out, sizeof out);
    assert_int_equal(got, 2 + 4 + 2);
    assert_int_equal(out[0], 0x8A);

    /* We send; the server closes; wsc_poll delivers the close and closes the socket. */
    assert_int_equal(wsc_send(c, WS_OP_TEXT, "bye", 3), 0);
    assert_int_equal(wsc_flush(c), 0);
    got = read(sv[1], out, sizeof out);
    assert_int_equal(got, 2 + 4 + 3);
    size_t cn = sclose(out, 1000, "done");
    write_all(sv[1], out, cn);
    memset(&r, 0, sizeof r);
    assert_int_equal(wsc_poll(c, 2000, record, &r), WSC_DONE);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].code, 1000);
    assert_int_equal(wsc_fd(c), -1);
    got = read(sv[1], out, sizeof out); /* our close reply, then EOF */
    assert_int_equal(got, 2 + 4 + 2);
    assert_int_equal(out[0], 0x88);
    assert_int_equal(read(sv[1], out, sizeof out), 0);
    assert_int_equal(wsc_poll(c, 0, record, &r), WSC_DONE);
    assert_int_equal(wsc_read(c, record, &r), WSC_DONE);
    close(sv[1]);
    wsc_free(c);
}

static void test_socket_eof_and_refusal(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://example.com/ws", &u, NULL), 0);
    struct wsc *c = wsc_new(&u, NULL, NULL);
    assert_int_equal(wsc_attach(c, sv[0]), 0);
    assert_int_equal(wsc_flush(c), 0);
    static const char resp[] = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 7\r\n\r\nno way!";
    write_all(sv[1], resp, sizeof resp - 1);
    struct rec r = {0};
    assert_int_equal(wsc_poll(c, 2000, record, &r), WSC_ERR_STATUS);
    assert_string_equal(wsc_error_detail(c), "HTTP 401 Unauthorized: no way!");
    assert_int_equal(wsc_fd(c), -1);
    close(sv[1]);
    wsc_free(c);

    /* EOF in the open state. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    c = wsc_new(&u, NULL, NULL);
    assert_int_equal(wsc_attach(c, sv[0]), 0);
    assert_int_equal(wsc_flush(c), 0);
    char req[4096];
    ssize_t got = read(sv[1], req, sizeof req - 1);
    assert_true(got > 0);
    req[got] = '\0';
    const char *k = strstr(req, "Sec-WebSocket-Key: ") + strlen("Sec-WebSocket-Key: ");
    char acc[WS_ACCEPT_LEN + 1], ok[512];
    ws_accept_key(k, 24, acc);
    int rn = snprintf(ok, sizeof ok,
                      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                      acc);
    write_all(sv[1], ok, (size_t)rn);
    assert_int_equal(wsc_poll(c, 2000, record, &r), 0);
    assert_int_equal(wsc_state(c), WSC_STATE_OPEN);
    close(sv[1]);
    assert_int_equal(wsc_poll(c, 2000, record, &r), WSC_ERR_CLOSED);
    assert_int_equal(wsc_fd(c), -1);
    wsc_free(c);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* A port nobody listens on: bind one on loopback, note it, close it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    close(s);
    struct wsc_url u;
    assert_int_equal(wsc_url_parse("ws://127.0.0.1:1/", &u, NULL), 0);
    u.port = ntohs(sin.sin_port);
    struct wsc *c = wsc_new(&u, NULL, NULL);
    int rc = wsc_connect(c, 2000, NULL, NULL);
    assert_int_equal(rc, WSC_ERR_CONNECT);
    assert_non_null(strstr(wsc_error_detail(c), "127.0.0.1"));
    assert_int_equal(wsc_connect(c, 2000, NULL, NULL), WSC_ERR_STATE);
    wsc_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_good),
        cmocka_unit_test(test_wss_host_header_and_attach),
        cmocka_unit_test(test_deflate),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_request_own_host_and_bad_options),
        cmocka_unit_test(test_response_101),
        cmocka_unit_test(test_response_wrong_accept),
        cmocka_unit_test(test_response_401_body),
        cmocka_unit_test(test_response_missing_upgrade_and_others),
        cmocka_unit_test(test_response_subprotocol_not_offered),
        cmocka_unit_test(test_send_masked),
        cmocka_unit_test(test_send_fragmented),
        cmocka_unit_test(test_feed_split_every_byte),
        cmocka_unit_test(test_feed_handshake_and_frames_together),
        cmocka_unit_test(test_auto_pong),
        cmocka_unit_test(test_server_close),
        cmocka_unit_test(test_client_close),
        cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_eof_and_callback_stop),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_socket_layer),
        cmocka_unit_test(test_socket_eof_and_refusal),
        cmocka_unit_test(test_connect_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
