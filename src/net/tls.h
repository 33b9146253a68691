/* The server's TLS configuration: an OpenSSL SSL_CTX built from a PEM certificate
 * chain and its private key, with wshub's policy (TLS 1.2 minimum, 1.3 allowed;
 * forward-secret AEAD suites only for 1.2, OpenSSL's defaults for 1.3; ALPN
 * http/1.1; no renegotiation; resumption by session tickets, no server-side cache).
 *
 * Reload: tls_server_reload builds a new SSL_CTX from the same files and, only if it
 * is complete (chain readable, key readable and matching), makes it the one new
 * connections get; otherwise the old one stays and an error is returned. Connections
 * already open keep the SSL_CTX they were created with: every SSL holds a reference
 * to its SSL_CTX, so the old one is freed when its last connection goes.
 *
 * Threads: tls_server_new_ssl may be called from any worker while the main thread
 * reloads; a mutex (taken once per accepted connection, never per message) orders
 * the pointer swap against SSL_new's reference.
 *
 * Ownership: struct tls_server is created once at start-up and destroyed after every
 * worker has stopped; the SSL objects it hands out belong to the caller. */
#ifndef WSHUB_NET_TLS_H
#define WSHUB_NET_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct tls_server;

/* Loads cert_file and key_file. On failure returns NULL with a message naming the
 * file at fault in err. */
struct tls_server *tls_server_create(const char *cert_file, const char *key_file, char *err,
                                     size_t cap);

/* Rebuilds the SSL_CTX from the same files. 0 when the new one is in force; -1 with a
 * message in err when the old one stays. Counts both outcomes. */
int tls_server_reload(struct tls_server *t, char *err, size_t cap);

/* A server-side SSL for an accepted socket, in accept state, using the current
 * SSL_CTX; NULL when OpenSSL cannot allocate it. */
SSL *tls_server_new_ssl(struct tls_server *t, int fd);

/* Reloads that took effect / were refused since start-up. */
uint64_t tls_server_reloads(const struct tls_server *t);
uint64_t tls_server_reload_failures(const struct tls_server *t);

/* The subject of the certificate in force (for logs), "" when unknown. */
const char *tls_server_subject(struct tls_server *t, char *out, size_t cap);

void tls_server_destroy(struct tls_server *t);

#endif
