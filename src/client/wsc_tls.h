/* TLS for wsclient's socket layer (wss:// URLs): a client SSL_CTX that verifies the
 * server (the system's trust store, or one PEM CA file), TLS 1.2 minimum, ALPN
 * http/1.1; and non-blocking send/recv through an SSL with the calling conventions of
 * send(2)/recv(2), so the socket layer keeps one code path.
 *
 * want_write: set when OpenSSL needs the socket writable to go on (the caller polls
 * for POLLOUT and calls again); cleared by a call that made progress.
 *
 * Ownership: the caller owns the SSL_CTX and the SSL (wsc_tls_free frees the SSL after
 * a best-effort close_notify). */
#ifndef WSHUB_CLIENT_WSC_TLS_H
#define WSHUB_CLIENT_WSC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* ca_file: PEM file of trusted CAs, or NULL for the system's. NULL with err set on
 * failure. */
SSL_CTX *wsc_tls_ctx_new(const char *ca_file, char *err, size_t cap);

/* A client SSL on the connected socket fd for host (a name: SNI and name check; an
 * IP literal: address check). NULL with err set on failure. */
SSL *wsc_tls_new(SSL_CTX *ctx, int fd, const char *host, char *err, size_t cap);

/* One handshake step: 1 done, 0 waiting for the socket, -1 failed (err says why,
 * including a certificate verification failure). */
int wsc_tls_handshake(SSL *ssl, bool *want_write, char *err, size_t cap);

/* Like send/recv on a non-blocking socket: bytes, 0 at a clean end (recv), or -1 with
 * errno (EAGAIN when OpenSSL waits for the socket, EPROTO for a TLS failure). */
ssize_t wsc_tls_send(SSL *ssl, const void *p, size_t n, bool *want_write);
ssize_t wsc_tls_recv(SSL *ssl, void *p, size_t n, bool *want_write);

/* Sends close_notify (best effort) and frees ssl. NULL is a no-op. */
void wsc_tls_free(SSL *ssl);

#endif
