/* The TLS side of a connection: the server handshake, reads and writes through an
 * OpenSSL SSL on the connection's socket. net/conn.c calls these only when the
 * connection has CONN_TLS (its stream is conn_tls(c)), so a plaintext connection pays
 * one flag test per read, write and event, and nothing else (not even the pointer).
 *
 * Writes: queued frames are copied into a per-thread 16 KiB scratch buffer (one TLS
 * record's worth) and handed to SSL_write, so many small frames share one record and
 * one write(2) instead of one each. Bytes taken from the queue are committed: when
 * SSL_write cannot finish (WANT_WRITE), the rest is kept in `stage`, a buffer of the
 * connection's own allocated only then and freed once it has gone out, because
 * OpenSSL requires the same bytes on the retry.
 *
 * Reads behave like read(2) on a non-blocking socket (bytes, 0 at EOF, -1 with
 * errno EAGAIN or another error), but a short read does not mean the socket is
 * drained: OpenSSL may hold records already read. `drained` says when it is.
 *
 * Ownership: struct tls_stream belongs to its connection (moved with it by
 * conn_migrate) and is freed by tls_io_free when the connection closes. */
#ifndef WSHUB_NET_TLS_IO_H
#define WSHUB_NET_TLS_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "net/conn.h"
#include "net/tls.h"

enum tls_state { TLS_HANDSHAKE = 0, TLS_OPEN = 1 };

struct tls_stream {
    SSL *ssl;
    uint8_t *stage; /* bytes SSL_write must be given again, or NULL */
    uint32_t stage_off, stage_len;
    uint8_t state;         /* enum tls_state */
    bool drained;          /* the last read ended in WANT_READ: wait for an edge */
    bool read_wants_write; /* SSL_read needs the socket writable (key update...) */
    bool write_wants_read; /* SSL_write needs input first */
};

/* Puts c (just accepted, not yet read from) under TLS with the server's current
 * certificate. Returns 0 or -ENOMEM (also for a descriptor beyond the hard
 * RLIMIT_NOFILE seen at the first call, which cannot happen unless the limit is
 * raised later); the caller closes c on failure. */
int tls_io_start(struct conn *c, struct tls_server *srv);

/* Advances the server handshake. 1: done (application data may already be buffered:
 * read it); 0: waiting for the socket; -1: failed (counted; the caller closes). */
int tls_io_handshake(struct conn *c);

/* The handshake did not finish within the connection's deadline: counts it. */
void tls_io_handshake_timeout(struct conn *c);

/* Like read(2); see above. Sets tls->drained. */
ssize_t tls_io_read(struct conn *c, uint8_t *buf, size_t cap);

/* Writes what is staged and queued while the socket takes it. May close c. */
void tls_io_flush(struct conn *c);

/* Sends close_notify (best effort, before the socket is half-closed). */
void tls_io_shutdown(struct conn *c);

/* Frees the SSL and the stage. */
void tls_io_free(struct conn *c);

static inline bool tls_io_staged(const struct conn *c)
{
    return conn_tls(c)->stage_len != 0;
}

static inline bool tls_io_open(const struct conn *c)
{
    return conn_tls(c)->state == TLS_OPEN;
}

#endif
