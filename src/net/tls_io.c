/* TLS handshake, reads and writes for one connection; see tls_io.h. */
#include "net/tls_io.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>

#include "base/log.h"
#include "base/stats.h"

/* The most plaintext one TLS record carries (RFC 8446 section 5.1). */
#define TLS_RECORD_MAX 16384u

static _Thread_local uint8_t scratch[TLS_RECORD_MAX];

/* The streams by descriptor (conn_tls): one slot per descriptor the process may
 * open (the hard RLIMIT_NOFILE, so no descriptor falls outside it), allocated at the
 * first TLS connection: a fixed 8 B per possible descriptor (160 KB at a limit of
 * 20,000; a large calloc gets fresh zero pages from mmap, which take memory only
 * where TLS descriptors land), paid only by a server that serves TLS. */
struct tls_stream **conn_tls_table;
static size_t table_cap;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

#define TLS_TABLE_MAX ((size_t)1 << 24)

static void table_init(void)
{
    struct rlimit rl;
    size_t cap = TLS_TABLE_MAX; /* (unlimited: descriptors past it are refused TLS) */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < TLS_TABLE_MAX)
        cap = (size_t)rl.rlim_max;
    if ((conn_tls_table = calloc(cap, sizeof *conn_tls_table))) table_cap = cap;
}

int tls_io_start(struct conn *c, struct tls_server *srv)
{
    pthread_once(&table_once, table_init);
    if (c->w.fd < 0 || (size_t)c->w.fd >= table_cap) return -ENOMEM;
    struct tls_stream *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->ssl = tls_server_new_ssl(srv, c->w.fd);
    if (!t->ssl) {
        free(t);
        return -ENOMEM;
    }
    conn_tls_table[c->w.fd] = t;
    c->flags |= CONN_TLS;
    return 0;
}

/* A client that speaks plain HTTP to a TLS port gets a plain answer it can read,
 * rather than a TLS alert it cannot. Best effort: the connection closes right after. */
static void refuse_plaintext(struct conn *c)
{
    static const char body[] = "{\"error\":{\"code\":\"tls_required\",\"message\":\"this port "
                               "speaks TLS: use https:// or wss://\"}}\n";
    char resp[320];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    if (n > 0 && (size_t)n < sizeof resp) {
        ssize_t w = write(c->w.fd, resp, (size_t)n);
        (void)w;
    }
}

int tls_io_handshake(struct conn *c)
{
    struct tls_stream *t = conn_tls(c);
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->state = TLS_OPEN;
        STAT_INC(tls_handshakes);
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    unsigned long err = ERR_peek_error();
    if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_HTTP_REQUEST) {
        STAT_INC(tls_plaintext_refused);
        refuse_plaintext(c);
    }
    STAT_INC(tls_handshake_failures);
    if (LOG_DEBUG >= log_min_level) {
        char why[200], ip[64];
        if (err)
            ERR_error_string_n(err, why, sizeof why);
        else
            snprintf(why, sizeof why, "connection closed (%s)",
                     e == SSL_ERROR_SYSCALL ? "socket" : "peer");
        log_debug("tls handshake failed", "remote=%s reason=\"%s\"", conn_peer(c, ip, sizeof ip),
                  why);
    }
    ERR_clear_error();
    return -1;
}

void tls_io_handshake_timeout(struct conn *c)
{
    (void)c;
    STAT_INC(handshake_timeouts);
    STAT_INC(tls_handshake_failures);
}

ssize_t tls_io_read(struct conn *c, uint8_t *buf, size_t cap)
{
    struct tls_stream *t = conn_tls(c);
    size_t got = 0;
    /* One SSL_read yields at most one record: gather several, so the protocol above
     * parses in large chunks as it does on a plaintext socket. */
    while (got < cap) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, buf + got, cap - got, &n);
        if (r == 1) {
            got += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (e == SSL_ERROR_WANT_WRITE) t->read_wants_write = true;
            t->drained = true;
            if (got) return (ssize_t)got;
            errno = EAGAIN;
            return -1;
        }
        /* EOF or a failure: hand over what came before it; the next call sees it
         * again (OpenSSL keeps returning the same error). */
        if (got) break;
        if (e == SSL_ERROR_ZERO_RETURN) return 0;
        if (e != SSL_ERROR_SYSCALL || errno == 0 || errno == EAGAIN || errno == EINTR)
            errno = EPROTO;
        ERR_clear_error();
        return -1;
    }
    t->drained = false;
    return (ssize_t)got;
}

/* Keeps bytes SSL_write could not take, for the retry OpenSSL requires. p may be
 * anywhere in scratch, not only at its start: a client that negotiated a smaller
 * record size (max_fragment_length, RFC 6066) has SSL_write return after each
 * record, so a block can come part-way through the buffer. */
static int stage_keep(struct tls_stream *t, const uint8_t *p, size_t len)
{
    if (p >= scratch && p < scratch + sizeof scratch) {
        t->stage = malloc(TLS_RECORD_MAX);
        if (!t->stage) return -1;
        memcpy(t->stage, p, len);
        t->stage_off = 0;
        t->stage_len = (uint32_t)len;
    } else {
        t->stage_off = (uint32_t)(p - t->stage);
    }
    return 0;
}

void tls_io_flush(struct conn *c)
{
    struct tls_stream *t = conn_tls(c);
    if (t->state != TLS_OPEN) return;
    while ((c->flags & (CONN_WRITABLE | CONN_CLOSED)) == CONN_WRITABLE) {
        const uint8_t *p;
        size_t len;
        if (t->stage_len) {
            p = t->stage + t->stage_off;
            len = t->stage_len - t->stage_off;
        } else if (conn_out_count(c)) {
            len = conn_queue_take(c, scratch, sizeof scratch);
            p = scratch;
        } else {
            break;
        }
        while (len > 0) {
            size_t n = 0;
            ERR_clear_error();
            int r = SSL_write_ex(t->ssl, p, len, &n);
            if (r == 1) {
                p += n;
                len -= n;
                c->blocked_since32 = 0;
                continue;
            }
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                if (e == SSL_ERROR_WANT_WRITE)
                    c->flags &= ~CONN_WRITABLE;
                else
                    t->write_wants_read = true;
                if (stage_keep(t, p, len) < 0) break;
                return;
            }
            break; /* the peer is gone or broke the protocol */
        }
        if (len > 0) {
            ERR_clear_error();
            conn_close(c);
            return;
        }
        if (t->stage_len) {
            free(t->stage);
            t->stage = NULL;
            t->stage_off = t->stage_len = 0;
        }
    }
}

void tls_io_shutdown(struct conn *c)
{
    struct tls_stream *t = conn_tls(c);
    if (t->state != TLS_OPEN) return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

void tls_io_free(struct conn *c)
{
    struct tls_stream *t = conn_tls(c);
    if (!t) return;
    conn_tls_table[c->w.fd] = NULL;
    c->flags &= ~(uint32_t)CONN_TLS;
    SSL_free(t->ssl);
    free(t->stage);
    free(t);
}
