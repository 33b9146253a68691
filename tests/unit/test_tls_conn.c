/* net/tls and the TLS path of net/conn, over a socketpair against an in-process OpenSSL
 * client: the handshake, input reaching on_data, a queue larger than the socket
 * buffer going out byte-exact and in order through the retry of a blocked SSL_write
 * (the staged bytes), close_notify from conn_finish; tls_server's refusals of a
 * mismatched key and a broken reload. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/conn.h"
#include "net/tls.h"
#include "net/tls_io.h"

struct tconn {
    struct conn c;
    char got[4096];
    size_t got_len;
    int drains;
};

static int frees_total; /* on_free runs just before the struct is freed */

static void t_data(struct conn *c, uint8_t *d, size_t n)
{
    struct tconn *t = (struct tconn *)c;
    if (n > sizeof t->got - t->got_len) n = sizeof t->got - t->got_len;
    memcpy(t->got + t->got_len, d, n);
    t->got_len += n;
}
static void t_timer(struct conn *c)
{
    (void)c;
}
static void t_drain(struct conn *c)
{
    ((struct tconn *)c)->drains++;
}
static void t_free(struct conn *c)
{
    (void)c;
    frees_total++;
}

static const struct conn_ops tops = {t_data, NULL, t_timer, t_drain, t_free, NULL};

static void stop_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    loop_stop(loop);
}

static void spin(struct loop *loop, unsigned ms)
{
    struct timer t;
    loop_timer_init(&t, stop_cb);
    loop_timer_arm(loop, &t, ms);
    loop_run(loop);
    loop_timer_cancel(loop, &t);
}

static char cert_path[64], key_path[64], other_key_path[64];

static EVP_PKEY *write_key(const char *path)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(pk);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return pk;
}

/* A self-signed certificate and its key in temporary files. */
static int make_files(void **state)
{
    (void)state;
    snprintf(cert_path, sizeof cert_path, "/tmp/wshub-tls-unit-%d.pem", (int)getpid());
    snprintf(key_path, sizeof key_path, "/tmp/wshub-tls-unit-%d.key", (int)getpid());
    snprintf(other_key_path, sizeof other_key_path, "/tmp/wshub-tls-unit-%d.other", (int)getpid());
    EVP_PKEY *pk = write_key(key_path);
    EVP_PKEY_free(write_key(other_key_path));
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"unit", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
    return 0;
}

static int remove_files(void **state)
{
    (void)state;
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    return 0;
}

static void test_refusals_and_reload(void **state)
{
    (void)state;
    char err[512];
    assert_null(tls_server_create(cert_path, other_key_path, err, sizeof err));
    assert_non_null(strstr(err, "does not match"));
    assert_null(tls_server_create("/nonexistent/cert.pem", key_path, err, sizeof err));
    assert_non_null(strstr(err, "--tls-cert /nonexistent/cert.pem"));

    struct tls_server *t = tls_server_create(cert_path, key_path, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(tls_server_reload(t, err, sizeof err), 0);
    /* Swap in a key that does not fit: the reload is refused and counted. */
    char saved[sizeof key_path + 8];
    snprintf(saved, sizeof saved, "%s.saved", key_path);
    assert_int_equal(rename(key_path, saved), 0);
    assert_int_equal(link(other_key_path, key_path), 0);
    assert_int_equal(tls_server_reload(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(rename(saved, key_path), 0);
    assert_int_equal(tls_server_reloads(t), 1);
    assert_int_equal(tls_server_reload_failures(t), 1);
    char subject[128];
    assert_string_equal(tls_server_subject(t, subject, sizeof subject), "/CN=unit");
    tls_server_destroy(t);
}

/* Client side: non-blocking, driven step by step between loop turns. */
static SSL *client_new(SSL_CTX **cctx, int fd, bool small_records)
{
    *cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(*cctx, SSL_VERIFY_NONE, NULL); /* verification: integration tests */
    /* RFC 6066 max_fragment_length: records of 512 bytes, so the server's SSL_write
     * of a 16 KiB buffer returns after each record and can block part-way through. */
    if (small_records)
        SSL_CTX_set_tlsext_max_fragment_length(*cctx, TLSEXT_max_fragment_length_512);
    SSL *ssl = SSL_new(*cctx);
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    return ssl;
}

static void handshake(struct loop *loop, SSL *cl)
{
    for (int i = 0; i < 200; i++) {
        ERR_clear_error();
        int r = SSL_do_handshake(cl);
        if (r == 1) return;
        int e = SSL_get_error(cl, r);
        assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        spin(loop, 2);
    }
    fail_msg("handshake did not complete");
}

static void stream_through_tls(bool small_records)
{
    int frees_before = frees_total;
    char err[512];
    struct tls_server *srv = tls_server_create(cert_path, key_path, err, sizeof err);
    assert_non_null(srv);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 4096; /* so the queue cannot go out in one go */
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);

    struct loop *loop = loop_create();
    struct tconn *t = calloc(1, sizeof *t);
    assert_int_equal(conn_init(&t->c, loop, sv[0], &tops, NULL), 0);
    assert_int_equal(tls_io_start(&t->c, srv), 0);
    SSL_CTX *cctx;
    SSL *cl = client_new(&cctx, sv[1], small_records);
    handshake(loop, cl);
    spin(loop, 5);
    assert_true(tls_io_open(&t->c));

    /* client -> server */
    size_t w;
    assert_int_equal(SSL_write_ex(cl, "hello server", 12, &w), 1);
    spin(loop, 5);
    assert_int_equal(t->got_len, 12);
    assert_memory_equal(t->got, "hello server", 12);

    /* server -> client: 200 messages of 997 bytes (~195 KiB), far over the buffers */
    enum { N = 200, LEN = 997 };
    for (int i = 0; i < N; i++) {
        char m[LEN];
        for (int k = 0; k < LEN; k++)
            m[k] = (char)(i * 31 + k);
        assert_int_equal(conn_send_copy(&t->c, m, LEN), 0);
    }
    spin(loop, 5);
    assert_true(conn_out_count(&t->c) > 0 || tls_io_staged(&t->c)); /* blocked, nothing lost */
    bool saw_staged = tls_io_staged(&t->c);
    size_t total = 0;
    unsigned char *in = malloc((size_t)N * LEN);
    for (int round = 0; round < 5000 && total < (size_t)N * LEN; round++) {
        size_t n = 0;
        ERR_clear_error();
        if (SSL_read_ex(cl, in + total, (size_t)N * LEN - total, &n) == 1) {
            total += n;
            continue;
        }
        assert_int_equal(SSL_get_error(cl, 0), SSL_ERROR_WANT_READ);
        spin(loop, 1);
        saw_staged |= tls_io_staged(&t->c);
    }
    assert_int_equal(total, (size_t)N * LEN);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < LEN; k++)
            if (in[(size_t)i * LEN + (size_t)k] != (unsigned char)(char)(i * 31 + k))
                fail_msg("byte %d of message %d differs", k, i);
    free(in);
    assert_true(saw_staged); /* the WANT_WRITE retry path ran */
    spin(loop, 2);
    assert_false(tls_io_staged(&t->c));
    assert_int_equal(conn_out_count(&t->c), 0);
    assert_true(t->drains > 0);

    /* conn_finish: close_notify reaches the client */
    conn_finish(&t->c, 1000);
    spin(loop, 5);
    int got_close = 0;
    for (int i = 0; i < 100 && !got_close; i++) {
        char b[64];
        size_t n;
        ERR_clear_error();
        if (SSL_read_ex(cl, b, sizeof b, &n) != 1)
            got_close = SSL_get_error(cl, 0) == SSL_ERROR_ZERO_RETURN;
        if (!got_close) spin(loop, 1);
    }
    assert_true(got_close);
    SSL_shutdown(cl);
    spin(loop, 5);
    assert_int_equal(frees_total - frees_before, 1); /* the peer's close_notify ended it */

    SSL_free(cl);
    SSL_CTX_free(cctx);
    close(sv[1]);
    loop_drain_tasks(loop);
    loop_destroy(loop);
    tls_server_destroy(srv);
}

static void test_stream_through_tls(void **state)
{
    (void)state;
    stream_through_tls(false);
}

/* A client that asked for 512-byte records: blocks come part-way through the
 * staging buffer, and the rest must be kept for the retry. */
static void test_stream_through_tls_small_records(void **state)
{
    (void)state;
    stream_through_tls(true);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals_and_reload),
        cmocka_unit_test(test_stream_through_tls),
        cmocka_unit_test(test_stream_through_tls_small_records),
    };
    return cmocka_run_group_tests(tests, make_files, remove_files);
}
