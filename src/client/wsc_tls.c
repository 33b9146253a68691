/* TLS for wsclient; see wsc_tls.h. */
#include "client/wsc_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static const char *reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "connection closed");
    ERR_clear_error();
    return buf;
}

SSL_CTX *wsc_tls_ctx_new(const char *ca_file, char *err, size_t cap)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, cap, "cannot create a TLS context: %s", reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The output queue may be reallocated between a blocked write and its retry. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, cap, "cannot load trusted CAs%s%s: %s", ca_file ? " from " : "",
                 ca_file ? ca_file : "", reason(why, sizeof why));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *wsc_tls_new(SSL_CTX *ctx, int fd, const char *host, char *err, size_t cap)
{
    char why[256];
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        snprintf(err, cap, "cannot create a TLS connection: %s", reason(why, sizeof why));
        return NULL;
    }
    bool ok = SSL_set_fd(ssl, fd) == 1;
    if (ok && is_ip(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    } else if (ok) {
        /* SNI (RFC 6066 names hosts, not addresses) and the name the certificate must
         * carry. */
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    }
    if (!ok) {
        snprintf(err, cap, "cannot set up TLS for %s: %s", host, reason(why, sizeof why));
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int wsc_tls_handshake(SSL *ssl, bool *want_write, char *err, size_t cap)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) {
        *want_write = false;
        return 1;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
    }
    char why[256];
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        snprintf(err, cap, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)
        snprintf(err, cap, "the server closed the connection%s%s", errno ? ": " : "",
                 errno ? strerror(errno) : "");
    else
        snprintf(err, cap, "%s", reason(why, sizeof why));
    ERR_clear_error();
    return -1;
}

/* Maps a failed SSL call onto the send/recv conventions. */
static ssize_t io_error(SSL *ssl, int r, bool *want_write)
{
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want_write = e == SSL_ERROR_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e != SSL_ERROR_SYSCALL || errno == 0 || errno == EAGAIN || errno == EINTR) errno = EPROTO;
    ERR_clear_error();
    return -1;
}

ssize_t wsc_tls_send(SSL *ssl, const void *p, size_t n, bool *want_write)
{
    size_t done = 0;
    ERR_clear_error();
    int r = SSL_write_ex(ssl, p, n, &done);
    if (r == 1) {
        *want_write = false;
        return (ssize_t)done;
    }
    ssize_t rc = io_error(ssl, r, want_write);
    if (rc == 0) { /* a write cannot end cleanly */
        errno = EPIPE;
        return -1;
    }
    return rc;
}

ssize_t wsc_tls_recv(SSL *ssl, void *p, size_t n, bool *want_write)
{
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(ssl, p, n, &got);
    if (r == 1) {
        *want_write = false;
        return (ssize_t)got;
    }
    return io_error(ssl, r, want_write);
}

void wsc_tls_free(SSL *ssl)
{
    if (!ssl) return;
    ERR_clear_error();
    if (SSL_is_init_finished(ssl)) SSL_shutdown(ssl);
    ERR_clear_error();
    SSL_free(ssl);
}
