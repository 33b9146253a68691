/* Unit tests for the RFC 6455 server handshake: requests go through the real parser
 * (from exact-size heap copies), then ws_handshake_check and the 101 response. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"
#include "ws/handshake.h"

#define RFC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static char *g_buf;
static struct http_request g_req;

static int teardown(void **state)
{
    (void)state;
    free(g_buf);
    g_buf = NULL;
    return 0;
}

/* Builds a request from a request line and the header block (each line CRLF-ended). */
static int check(const char *line, const char *headers, const char *const *supported,
                 struct ws_handshake *hs)
{
    size_t n = strlen(line) + strlen(headers) + 5;
    free(g_buf);
    g_buf = malloc(n);
    assert_non_null(g_buf);
    snprintf(g_buf, n, "%s\r\n%s\r\n", line, headers);
    assert_int_equal(http_parse_request(g_buf, n - 1, &g_req, NULL), (int)(n - 1));
    return ws_handshake_check(&g_req, supported, hs);
}

#define STD_HEADERS                                                                                \
    "Host: server.example.com\r\n"                                                                 \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Key: " RFC_KEY "\r\n"                                                           \
    "Sec-WebSocket-Version: 13\r\n"

static int status_of(const char *line, const char *headers)
{
    struct ws_handshake hs;
    int rc = check(line, headers, NULL, &hs);
    assert_int_equal(rc, hs.status);
    if (rc != 0) {
        assert_non_null(hs.reason);
        assert_true(strlen(hs.reason) > 0);
    }
    return rc;
}

static int status_h(const char *headers)
{
    return status_of("GET /chat HTTP/1.1", headers);
}

static void test_accept_key(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    ws_accept_key(RFC_KEY, strlen(RFC_KEY), out);
    assert_string_equal(out, RFC_ACCEPT);
    ws_accept_key("", 0, out);
    assert_string_equal(out, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");

    /* Around the length where hashing switches from the stack to an EVP context. */
    char key[101];
    memset(key, 'x', sizeof key);
    ws_accept_key(key, 64, out);
    assert_string_equal(out, "4FGVtn97aCcao3xzZ5Y1zkEgvLc=");
    ws_accept_key(key, 65, out);
    assert_string_equal(out, "Kdy1RNRXbQUIgIu1UaLUyYfGT8E=");
    ws_accept_key(key, 100, out);
    assert_string_equal(out, "DJTE+uYDnPxiT+W6VvIG/iPUxv8=");
}

static void test_valid_rfc_example(void **state)
{
    (void)state;
    struct ws_handshake hs;
    assert_int_equal(check("GET /chat HTTP/1.1", STD_HEADERS, NULL, &hs), 0);
    assert_int_equal(hs.status, 0);
    assert_string_equal(hs.accept, RFC_ACCEPT);
    assert_int_equal(hs.key_len, 24);
    assert_memory_equal(hs.key, RFC_KEY, 24);
    assert_true(hs.key >= g_buf && hs.key < g_buf + strlen(g_buf));
    assert_null(hs.subprotocol);
    assert_non_null(hs.reason);
}

static void test_reject_method(void **state)
{
    (void)state;
    assert_int_equal(status_of("POST /chat HTTP/1.1", STD_HEADERS), 405);
    assert_int_equal(status_of("get /chat HTTP/1.1", STD_HEADERS), 405);
    assert_int_equal(status_of("GETX /chat HTTP/1.1", STD_HEADERS), 405);
    assert_int_equal(status_of("GE /chat HTTP/1.1", STD_HEADERS), 405);
    /* The first failing check decides. */
    assert_int_equal(status_of("POST /chat HTTP/1.0", ""), 405);
}

static void test_reject_http10(void **state)
{
    (void)state;
    assert_int_equal(status_of("GET /chat HTTP/1.0", STD_HEADERS), 400);
}

static void test_reject_host(void **state)
{
    (void)state;
    assert_int_equal(status_h("Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     400);
    assert_int_equal(status_h("Host: b\r\n" STD_HEADERS), 400);
}

static void test_reject_upgrade(void **state)
{
    (void)state;
    assert_int_equal(status_h("Host: h\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     426);
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: h2c\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     426);
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: websockets\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     426);
}

static void test_reject_connection(void **state)
{
    (void)state;
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: websocket\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     400);
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: keep-alive\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     400);
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: upgraded\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     400);
}

#define BASE_NO_VERSION                                                                            \
    "Host: h\r\n"                                                                                  \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Key: " RFC_KEY "\r\n"

static void test_reject_version(void **state)
{
    (void)state;
    assert_int_equal(status_h(BASE_NO_VERSION), 426);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version: 8\r\n"), 426);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version: 013\r\n"), 426);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version: 13, 8\r\n"), 426);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version:\r\n"), 426);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version: 13\r\n"
                                              "Sec-WebSocket-Version: 13\r\n"),
                     400);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version: 13\r\n"
                                              "Sec-WebSocket-Version: 8\r\n"),
                     400);
    assert_int_equal(status_h(BASE_NO_VERSION "Sec-WebSocket-Version:  13 \r\n"), 0);
}

#define BASE_NO_KEY                                                                                \
    "Host: h\r\n"                                                                                  \
    "Upgrade: websocket\r\n"                                                                       \
    "Connection: Upgrade\r\n"                                                                      \
    "Sec-WebSocket-Version: 13\r\n"

static int key_status(const char *key)
{
    char headers[256];
    snprintf(headers, sizeof headers, BASE_NO_KEY "Sec-WebSocket-Key: %s\r\n", key);
    return status_h(headers);
}

static void test_reject_key(void **state)
{
    (void)state;
    assert_int_equal(status_h(BASE_NO_KEY), 400);
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25jZQ="), 400);   /* 23 chars */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25jZQ=="), 0);    /* control */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25jZQ==="), 400); /* 25 chars */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25j!Q=="), 400);  /* not base64 */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25j-Q=="), 400);  /* base64url */
    assert_int_equal(key_status("dGhlIHNh bXBsZSBub25jZQ="), 400);  /* inner space */
    assert_int_equal(key_status("AAAAAAAAAAAAAAAAAAAA"), 400);      /* 15 bytes */
    assert_int_equal(key_status("AAAAAAAAAAAAAAAAAAAA===="), 400);  /* "15 bytes" + pad */
    assert_int_equal(key_status("AAAAAAAAAAAAAAAAAAAAAAA="), 400);  /* 17 bytes */
    assert_int_equal(key_status("AAAAAAAAAAAAAAAAAAAAAAAA"), 400);  /* 18 bytes */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25j=Q=="), 400);  /* '=' inside */
    assert_int_equal(key_status("dGhlIHNhbXBsZSBub25jZQ=A"), 400);  /* '=' inside */
    assert_int_equal(key_status("++++++++++++++++++++//=="), 0);
    assert_int_equal(key_status(""), 400);
    assert_int_equal(status_h(BASE_NO_KEY "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                                          "Sec-WebSocket-Key: " RFC_KEY "\r\n"),
                     400);
}

static void test_case_insensitive(void **state)
{
    (void)state;
    struct ws_handshake hs;
    assert_int_equal(check("GET / HTTP/1.1",
                           "HOST: h\r\n"
                           "UPGRADE: WebSocket\r\n"
                           "connection: keep-alive, Upgrade\r\n"
                           "SEC-WEBSOCKET-KEY: " RFC_KEY "\r\n"
                           "sec-websocket-version: 13\r\n",
                           NULL, &hs),
                     0);
    assert_string_equal(hs.accept, RFC_ACCEPT);
    /* Lists and repeated fields. */
    assert_int_equal(status_h("Host: h\r\n"
                              "Upgrade: h2c\r\n"
                              "Upgrade: foo, WEBSOCKET\r\n"
                              "Connection: keep-alive\r\n"
                              "Connection: \tupgrade ,x\r\n"
                              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n"),
                     0);
}

static const char *const protos[] = {"chat", "superchat", "v2.json", NULL};

static const char *pick(const char *offers)
{
    struct ws_handshake hs;
    char headers[512];
    snprintf(headers, sizeof headers, STD_HEADERS "%s", offers);
    assert_int_equal(check("GET / HTTP/1.1", headers, protos, &hs), 0);
    return hs.subprotocol;
}

static void test_subprotocol(void **state)
{
    (void)state;
    struct ws_handshake hs;
    /* Client order wins among those the server supports. */
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: superchat, chat\r\n"), protos[1]);
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: chat, superchat\r\n"), protos[0]);
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: foo, v2.json, chat\r\n"), protos[2]);
    assert_null(pick("Sec-WebSocket-Protocol: foo, bar\r\n"));
    assert_null(pick(""));
    assert_null(pick("Sec-WebSocket-Protocol: CHAT\r\n")); /* names are case-sensitive */
    assert_null(pick("Sec-WebSocket-Protocol: cha\r\n"));
    assert_null(pick("Sec-WebSocket-Protocol: chats\r\n"));
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: \tfoo ,  chat\t\r\n"), protos[0]);
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: ,, ,superchat,\r\n"), protos[1]);
    assert_ptr_equal(pick("Sec-WebSocket-Protocol: foo\r\n"
                          "sec-websocket-protocol: v2.json, chat\r\n"),
                     protos[2]);
    /* A server with no list chooses nothing. */
    assert_int_equal(
        check("GET / HTTP/1.1", STD_HEADERS "Sec-WebSocket-Protocol: chat\r\n", NULL, &hs), 0);
    assert_null(hs.subprotocol);
    static const char *const empty[] = {NULL};
    assert_int_equal(
        check("GET / HTTP/1.1", STD_HEADERS "Sec-WebSocket-Protocol: chat\r\n", empty, &hs), 0);
    assert_null(hs.subprotocol);
}

static void test_response_bytes(void **state)
{
    (void)state;
    struct ws_handshake hs;
    char buf[512];
    static const char plain[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                                "\r\n";
    assert_int_equal(check("GET / HTTP/1.1", STD_HEADERS, protos, &hs), 0);
    assert_int_equal(ws_handshake_response(buf, sizeof buf, &hs, NULL), sizeof plain - 1);
    assert_memory_equal(buf, plain, sizeof plain - 1);
    assert_int_equal(ws_handshake_response(buf, sizeof buf, &hs, ""), sizeof plain - 1);
    assert_memory_equal(buf, plain, sizeof plain - 1);

    static const char full[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"
                               "Sec-WebSocket-Protocol: superchat\r\n"
                               "X-A: 1\r\n"
                               "X-B: 2\r\n"
                               "\r\n";
    assert_int_equal(check("GET / HTTP/1.1",
                           STD_HEADERS "Sec-WebSocket-Protocol: x, superchat, chat\r\n", protos,
                           &hs),
                     0);
    assert_int_equal(ws_handshake_response(buf, sizeof buf, &hs, "X-A: 1\r\nX-B: 2\r\n"),
                     sizeof full - 1);
    assert_memory_equal(buf, full, sizeof full - 1);
}

static void test_response_cap(void **state)
{
    (void)state;
    struct ws_handshake hs;
    char buf[256];
    const char *extra = "X-A: 1\r\n";
    assert_int_equal(
        check("GET / HTTP/1.1", STD_HEADERS "Sec-WebSocket-Protocol: chat\r\n", protos, &hs), 0);
    size_t n = ws_handshake_response(buf, sizeof buf, &hs, extra);
    assert_true(n > 0);
    /* Exactly enough works; one byte less writes nothing past cap and returns 0. */
    char *exact = malloc(n);
    assert_non_null(exact);
    assert_int_equal(ws_handshake_response(exact, n, &hs, extra), n);
    assert_memory_equal(exact, buf, n);
    free(exact);
    char *small = malloc(n - 1);
    assert_non_null(small);
    assert_int_equal(ws_handshake_response(small, n - 1, &hs, extra), 0);
    free(small);
    assert_int_equal(ws_handshake_response(NULL, 0, &hs, extra), 0);
    assert_int_equal(ws_handshake_response(buf, 10, &hs, NULL), 0);

    /* A failed handshake has no 101 response. */
    assert_int_equal(check("POST / HTTP/1.1", STD_HEADERS, NULL, &hs), 405);
    assert_int_equal(ws_handshake_response(buf, sizeof buf, &hs, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),        cmocka_unit_test(test_valid_rfc_example),
        cmocka_unit_test(test_reject_method),     cmocka_unit_test(test_reject_http10),
        cmocka_unit_test(test_reject_host),       cmocka_unit_test(test_reject_upgrade),
        cmocka_unit_test(test_reject_connection), cmocka_unit_test(test_reject_version),
        cmocka_unit_test(test_reject_key),        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_subprotocol),       cmocka_unit_test(test_response_bytes),
        cmocka_unit_test(test_response_cap),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
