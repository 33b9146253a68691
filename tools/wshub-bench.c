/* wshub-bench: the load generator for wshub and for the reference peers (seed-go,
 * node-ws). Four modes: echo (round trips on /echo), fanout (room publish/deliver with
 * the guide's JSON protocol on /ws), idle (many open connections: connect rate and the
 * server's memory per connection), churn (connect, one echo, close handshake, at a
 * fixed rate). `wshub-bench --help` documents every option.
 *
 * Design, so that the tool is not the bottleneck:
 *  - One thread, one epoll instance, edge-triggered, non-blocking sockets; every
 *    socket is registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP and never modified: a
 *    connection remembers whether its last send() hit EAGAIN and waits for EPOLLOUT.
 *  - Nothing is allocated per message. Connections and their buffers are set up
 *    before the measured window (churn: each new connection has its handshake state,
 *    as it must; the slots and their buffers are reused). Received data lands in one
 *    shared read buffer and is parsed in place (bench_wire.h says why the hot path
 *    does not use wsc_feed); only the tail of a frame cut by a read is copied aside
 *    (into a per-connection carry buffer that grows once, to the largest frame seen).
 *  - Sending: every frame the echo and churn modes send is a copy of one of
 *    MASK_POOL pre-built, pre-masked frames; only the 16 timestamp bytes are written
 *    (and masked) per message. RFC 6455 wants a fresh unpredictable mask per frame so
 *    that a browser script cannot choose the bytes on the wire; a load generator has no
 *    untrusted script to defend against, and a small rotating pool of random masks (as
 *    other WebSocket benchmarks use) keeps the server's unmasking honest at no cost.
 *    Fan-out messages carry numbers of varying length, so a publisher builds each one
 *    in its output buffer and masks it with ws_mask (a word at a time), with a key from
 *    the same pool: one publish is delivered to many subscribers, so this is noise.
 *    Frames produced while handling one read() are written with one send(): batching.
 *  - Timestamps: clock_gettime(CLOCK_MONOTONIC) in nanoseconds. A receive time is
 *    taken once per read() (every frame in that buffer had arrived by then); echo
 *    frames are stamped right before the send() that carries them. Latencies go into
 *    a fixed log-linear histogram (bench_hist.h).
 *  - The handshake goes through wsclient's protocol core (wsc_new / wsc_output /
 *    wsc_feed), which validates the 101; the wsc is freed once the connection is open.
 *  - Everything is bounded in time (connect, settle, drain, close phases have
 *    deadlines) and only the host of --url is ever contacted. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "client/wsc_tls.h"
#include "client/wsclient.h"
#include "ws/deflate.h"
#include "ws/frame.h"

#include "bench_hist.h"
#include "bench_wire.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

#ifndef WSHUB_VERSION
#define WSHUB_VERSION "dev"
#endif

#define PROG "wshub-bench"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define NS_PER_S              1000000000LL
#define RBUF_SIZE             (256 * 1024)       /* one read() */
#define MAX_MSG               (2u * 1024 * 1024) /* largest frame / message accepted */
#define MAX_CARRY             (MAX_MSG + 16)     /* a partial frame kept between reads */
#define MAX_HEAD              16384              /* largest handshake response head */
#define MAX_SIZE              (1024 * 1024)      /* largest --size */
#define MASK_POOL             16                 /* pre-masked frame variants (power of 2) */
#define MAX_EVENTS            1024
#define FD_RESERVE            64
#define IDLE_MAX              19000
#define SMALL_OUT             512   /* output buffer of connections that only send controls */
#define PUB_BATCH             65536 /* a publisher builds at most this much before a send */
#define CLOSE_WAIT_NS         (3 * NS_PER_S)
#define DRAIN_WAIT_NS         (5 * NS_PER_S)
#define DRAIN_STALL_NS        (2 * NS_PER_S)
#define CHURN_CONN_TIMEOUT_NS (10 * NS_PER_S)

/* ------------------------------------------------------------------ options */

enum mode { M_ECHO, M_FANOUT, M_IDLE, M_CHURN };
static const char *const mode_names[] = {"echo", "fanout", "idle", "churn"};

/* which modes an option applies to */
#define F_ECHO   (1u << M_ECHO)
#define F_FANOUT (1u << M_FANOUT)
#define F_IDLE   (1u << M_IDLE)
#define F_CHURN  (1u << M_CHURN)
#define F_ALL    (F_ECHO | F_FANOUT | F_IDLE | F_CHURN)

struct opts {
    enum mode mode;
    char url[WSC_MAX_PATH + WSC_MAX_HOST + 32];
    long connections;
    long inflight;
    long size;
    bool binary;
    bool deflate; /* offer permessage-deflate; inflate what comes compressed */
    double duration, warmup;
    long subscribers, publishers, rooms;
    double rate;
    long window, max_lag;
    long sources;
    double hold;
    long server_pid; /* 0: none */
    bool json_only, quiet;
    long max_pending;
    long max_failures;
    double timeout;
    const char *ca_file; /* --ca, for wss:// */
};

static struct opts O;

/* ------------------------------------------------------------------ connections */

/* CS_TLS: connected, TLS handshake under way (wss:// only). */
enum conn_state { CS_FREE, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_CLOSED, CS_TLS };
enum role { R_ECHO, R_SUB, R_PUB, R_IDLE, R_CHURN };

struct conn {
    int fd;
    uint8_t state; /* enum conn_state */
    uint8_t role;  /* enum role */
    bool writable;
    bool sent_close, got_close;
    bool in_frag;
    uint8_t frag_op;
    bool churn_echoed;
    uint32_t id; /* subscriber / publisher / connection number */
    uint32_t room;
    uint32_t outstanding; /* echo: frames sent and not yet echoed */
    struct wsc *wsc;      /* during the handshake only */
    SSL *ssl;             /* wss:// */
    uint8_t *carry;       /* a frame cut by a read (or the handshake head so far) */
    uint32_t carry_len, carry_cap;
    uint8_t *out; /* output queue: out[out_off..out_len) unsent */
    uint32_t out_off, out_len, out_cap;
    uint32_t stamp_from; /* echo: frames from here on still need their timestamp */
    uint8_t *frag;       /* a fragmented message being gathered */
    uint32_t frag_len, frag_cap;
    int64_t t_start;  /* socket created */
    int64_t deadline; /* churn: give up after */
};

struct global {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool src_bind; /* bind sources 127.0.0.2.. (target is IPv4 loopback) */
    struct wsc_url url;
    uint8_t *rbuf; /* MAX_CARRY bytes of room for a carry, then RBUF_SIZE */
    uint8_t masks[MASK_POOL][4];
    unsigned mask_next;
    int64_t now;
    long clk_tck;
    /* connection bookkeeping */
    struct conn *conns;
    size_t n_conns;
    size_t next_start;    /* connect phase: next connection to start */
    size_t pending;       /* connecting or in handshake */
    size_t opened;        /* handshakes completed */
    size_t open_now;      /* currently open (or closing) */
    uint64_t failures;    /* connect or handshake failures */
    uint64_t disconnects; /* open connections lost before the end */
    uint64_t protocol_errors;
    uint64_t inflated; /* compressed messages received (--deflate) */
    bool closing;      /* final phase: connections going down are expected */
    char first_error[256];
    SSL_CTX *tls_ctx; /* wss:// */
};

static struct global g;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    if (interrupted) _exit(130);
    interrupted = 1;
}

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

BENCH_PRINTF(1, 2) static void progress(const char *fmt, ...)
{
    if (O.quiet || O.json_only) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

BENCH_PRINTF(1, 2) static void note_error(const char *fmt, ...)
{
    if (g.first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.first_error, sizeof g.first_error, fmt, ap);
    va_end(ap);
    if (!O.quiet && !O.json_only) fprintf(stderr, PROG ": %s\n", g.first_error);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(EXIT_FAIL);
    }
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(EXIT_FAIL);
    }
    return q;
}

/* ---- mode hooks (defined with the modes) ---- */

static void mode_on_open(struct conn *c);
static void mode_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len);
static void mode_on_down(struct conn *c, bool clean);
static void mode_before_flush(struct conn *c);

/* ---- low-level connection handling ---- */

static uint32_t out_cap_for(const struct conn *c);

static void conn_release_fd(struct conn *c)
{
    if (c->ssl) {
        wsc_tls_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    if (c->wsc) {
        wsc_free(c->wsc);
        c->wsc = NULL;
    }
}

static const char *role_name(const struct conn *c)
{
    static const char *const names[] = {"connection", "subscriber", "publisher", "connection",
                                        "connection"};
    return names[c->role];
}

/* Ends a connection. clean: the close handshake completed (or the run is over).
 * Before the final phase, an open connection of echo, fanout or idle going down is a
 * disconnect (the run needed it); churn connections report to their mode. */
static void conn_down(struct conn *c, bool clean)
{
    uint8_t st = c->state;
    if (st == CS_FREE || st == CS_CLOSED) return;
    bool was_open = st == CS_OPEN || st == CS_CLOSING;
    if (!was_open) {
        g.pending--;
        g.failures++;
    } else {
        g.open_now--;
        if (!g.closing && c->role != R_CHURN) g.disconnects++;
    }
    conn_release_fd(c);
    c->state = CS_CLOSED;
    c->carry_len = 0;
    c->out_off = c->out_len = c->stamp_from = 0;
    c->in_frag = false;
    mode_on_down(c, clean && was_open);
}

BENCH_PRINTF(2, 3) static void conn_fail(struct conn *c, const char *fmt, ...)
{
    if (c->state == CS_FREE || c->state == CS_CLOSED) return;
    bool expected = g.closing && (c->state == CS_OPEN || c->state == CS_CLOSING);
    if (!expected && !g.first_error[0]) {
        char buf[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        note_error("%s %u (%s): %s", role_name(c), c->id,
                   c->state == CS_CONNECTING  ? "connecting"
                   : c->state == CS_TLS       ? "TLS handshake"
                   : c->state == CS_HANDSHAKE ? "handshake"
                                              : "open",
                   buf);
    }
    conn_down(c, false);
}

static bool out_reserve(struct conn *c, size_t need)
{
    if (!c->out) {
        uint32_t cap = out_cap_for(c);
        if (cap < need) cap = (uint32_t)need;
        c->out = xcalloc(1, cap);
        c->out_cap = cap;
    }
    if (c->out_cap - c->out_len >= need) return true;
    if (c->out_off) { /* compact */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        if (c->stamp_from >= c->out_off)
            c->stamp_from -= c->out_off;
        else
            c->stamp_from = 0;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= need) return true;
    }
    return false;
}

/* send(2) and read(2), through TLS for wss://. */
static ssize_t c_send(struct conn *c, const void *p, size_t n)
{
    bool want_write;
    if (c->ssl) return wsc_tls_send(c->ssl, p, n, &want_write);
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t c_read(struct conn *c, void *p, size_t n)
{
    bool want_write;
    if (c->ssl) return wsc_tls_recv(c->ssl, p, n, &want_write);
    return read(c->fd, p, n);
}

/* Writes what is queued. Returns false if the connection failed. */
static bool conn_flush(struct conn *c)
{
    if (c->state == CS_HANDSHAKE && c->wsc) {
        size_t len;
        const uint8_t *p;
        while ((p = wsc_output(c->wsc, &len)) != NULL && len) {
            ssize_t n = c_send(c, p, len);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->writable = false;
                    return true;
                }
                conn_fail(c, "send: %s", strerror(errno));
                return false;
            }
            wsc_output_done(c->wsc, (size_t)n);
        }
        return true;
    }
    if (c->out_off == c->out_len || !c->writable) return true;
    mode_before_flush(c);
    while (c->out_off < c->out_len) {
        ssize_t n = c_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->writable = false;
                return true;
            }
            conn_fail(c, "send: %s", strerror(errno));
            return false;
        }
        c->out_off += (uint32_t)n;
    }
    c->out_off = c->out_len = c->stamp_from = 0;
    return true;
}

static const uint8_t *next_mask(void)
{
    return g.masks[g.mask_next++ & (MASK_POOL - 1)];
}

/* Queues a control frame (ping/pong/close payloads are at most 125 bytes). */
static void conn_queue_control(struct conn *c, enum ws_opcode op, const uint8_t *data, size_t len)
{
    if (len > WS_MAX_CONTROL) len = WS_MAX_CONTROL;
    if (!out_reserve(c, WS_MAX_HEADER + len)) return; /* full of data: drop the pong */
    mode_before_flush(c); /* data frames queued so far get their send time now */
    const uint8_t *mask = next_mask();
    uint8_t *dst = c->out + c->out_len;
    size_t hl = ws_frame_header(dst, op, true, false, len, mask);
    if (len) memcpy(dst + hl, data, len);
    ws_mask(dst + hl, len, mask, 0);
    c->out_len += (uint32_t)(hl + len);
    c->stamp_from = c->out_len;
}

/* Starts the closing handshake: close frame with code (0: none). */
static void conn_send_close(struct conn *c, unsigned code)
{
    if (c->sent_close || c->state != CS_OPEN) return;
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    conn_queue_control(c, WS_OP_CLOSE, p, code ? 2 : 0);
    c->sent_close = true;
    c->state = CS_CLOSING;
    conn_flush(c);
}

static int hs_event(void *ud, const struct wsc_event *ev)
{
    (void)ud;
    (void)ev;
    return 0;
}

static void handshake_done(struct conn *c)
{
    wsc_free(c->wsc);
    c->wsc = NULL;
    c->state = CS_OPEN;
    g.pending--;
    g.opened++;
    g.open_now++;
    mode_on_open(c);
}

/* One complete frame. Returns false when the rest of the input must be ignored. */
static bool conn_frame(struct conn *c, const struct bench_frame *f, uint8_t *p)
{
    size_t len = (size_t)f->plen;
    switch (f->op) {
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (c->in_frag) {
            g.protocol_errors++;
            conn_fail(c, "new data frame inside a fragmented message");
            return false;
        }
        if (f->fin) {
            if (c->state == CS_OPEN || c->state == CS_CLOSING) mode_on_message(c, f->op, p, len);
            return c->state == CS_OPEN || c->state == CS_CLOSING;
        }
        c->in_frag = true;
        c->frag_op = f->op;
        c->frag_len = 0;
        /* fall through: gather the first piece */
        /* FALLTHRU */
    case WS_OP_CONT:
        if (!c->in_frag) {
            g.protocol_errors++;
            conn_fail(c, "continuation frame with no message started");
            return false;
        }
        if ((uint64_t)c->frag_len + len > MAX_MSG) {
            g.protocol_errors++;
            conn_fail(c, "fragmented message over %u bytes", MAX_MSG);
            return false;
        }
        if (c->frag_len + len > c->frag_cap) {
            size_t cap = c->frag_cap ? c->frag_cap : 4096;
            while (cap < c->frag_len + len)
                cap *= 2;
            c->frag = xrealloc(c->frag, cap);
            c->frag_cap = (uint32_t)cap;
        }
        if (len) memcpy(c->frag + c->frag_len, p, len);
        c->frag_len += (uint32_t)len;
        if (f->fin && f->op == WS_OP_CONT) {
            c->in_frag = false;
            if (c->state == CS_OPEN || c->state == CS_CLOSING)
                mode_on_message(c, c->frag_op, c->frag, c->frag_len);
        }
        return c->state == CS_OPEN || c->state == CS_CLOSING;
    case WS_OP_PING:
        if (c->state == CS_OPEN) conn_queue_control(c, WS_OP_PONG, p, len);
        return true;
    case WS_OP_PONG:
        return true;
    case WS_OP_CLOSE: {
        unsigned code = len >= 2 ? ((unsigned)p[0] << 8 | p[1]) : 0;
        c->got_close = true;
        if (!c->sent_close) {
            if (c->role == R_CHURN) {
                conn_fail(c, "the server closed the connection first (code %u)", code);
                return false;
            }
            if (!g.closing)
                note_error("%s %u: the server closed the connection with code %u%s%.*s",
                           role_name(c), c->id, code, len > 2 ? ": " : "",
                           len > 2 ? (int)(len - 2) : 0, (const char *)p + 2);
            uint8_t cp[2] = {len >= 2 ? p[0] : 0, len >= 2 ? p[1] : 0};
            conn_queue_control(c, WS_OP_CLOSE, cp, code ? 2 : 0);
            c->sent_close = true;
        }
        c->state = CS_CLOSING;
        return false; /* what follows is ignored; the server closes the TCP connection */
    }
    default:
        return false;
    }
}

/* Consumes data[0..len). Returns how many bytes were used (the rest is a partial
 * frame to carry over); len when the connection ended or input is to be ignored. */
static size_t conn_input(struct conn *c, uint8_t *data, size_t len)
{
    size_t off = 0;
    if (c->state == CS_HANDSHAKE) {
        const uint8_t *e = memmem(data, len, "\r\n\r\n", 4);
        if (!e) {
            if (len > MAX_HEAD) {
                conn_fail(c, "handshake response head over %d bytes", MAX_HEAD);
                return len;
            }
            return 0;
        }
        size_t hl = (size_t)(e - data) + 4;
        int rc = wsc_feed(c->wsc, data, hl, hs_event, c);
        if (rc < 0 || wsc_state(c->wsc) != WSC_STATE_OPEN) {
            int st = wsc_http_status(c->wsc);
            const char *d = wsc_error_detail(c->wsc);
            if (d && *d)
                conn_fail(c, "%s", d);
            else
                conn_fail(c, "upgrade refused: HTTP %d", st);
            return len;
        }
        handshake_done(c);
        if (c->state != CS_OPEN) return len;
        off = hl;
    }
    if (c->state != CS_OPEN && !(c->state == CS_CLOSING && !c->got_close)) return len;
    while (off < len) {
        struct bench_frame f;
        /* RSV1 (compressed) is checked here so bench_wire_header stays the strict parser
         * of plain frames: it sees the header with the bit cleared. */
        uint8_t hdr[10];
        size_t hn = len - off < sizeof hdr ? len - off : sizeof hdr;
        memcpy(hdr, data + off, hn);
        bool rsv1 = O.deflate && (hdr[0] & 0x40u) &&
                    ((hdr[0] & 0x0Fu) == WS_OP_TEXT || (hdr[0] & 0x0Fu) == WS_OP_BINARY);
        if (rsv1) hdr[0] &= (uint8_t)~0x40u;
        int r = bench_wire_header(hdr, hn, &f);
        if (r == 0) break;
        if (r < 0) {
            g.protocol_errors++;
            conn_fail(c, "invalid frame header from the server (%02x %02x)", data[off],
                      len - off > 1 ? data[off + 1] : 0);
            return len;
        }
        if (f.plen > MAX_MSG) {
            g.protocol_errors++;
            conn_fail(c, "frame of %llu bytes (limit %u)", (unsigned long long)f.plen, MAX_MSG);
            return len;
        }
        size_t total = f.hlen + (size_t)f.plen;
        if (len - off < total) break;
        uint8_t *p = data + off + f.hlen;
        off += total;
        if (rsv1) {
            if (!f.fin) {
                g.protocol_errors++;
                conn_fail(c, "fragmented compressed message (not expected from wshub)");
                return len;
            }
            /* The server keeps no context: each message inflates on its own. */
            static const struct ws_deflate_params pmd = {.flags =
                                                             WS_DEFLATE_ON | WS_DEFLATE_CLIENT_NCT,
                                                         .server_wbits = 15,
                                                         .client_wbits = 15};
            uint8_t *out;
            size_t olen;
            static struct ws_deflate unused; /* no context kept: the thread's inflater */
            int code = ws_deflate_inflate(&unused, &pmd, p, (size_t)f.plen, MAX_MSG, &out, &olen);
            if (code) {
                g.protocol_errors++;
                conn_fail(c, "compressed message does not inflate (%d)", code);
                return len;
            }
            g.inflated++;
            f.plen = olen;
            p = out;
        }
        if (!conn_frame(c, &f, p)) return len;
    }
    return off;
}

static void conn_eof(struct conn *c)
{
    if (c->state == CS_CONNECTING || c->state == CS_TLS || c->state == CS_HANDSHAKE) {
        conn_fail(c, "the server closed the connection during the handshake");
        return;
    }
    if ((c->got_close && c->sent_close) || g.closing) {
        conn_down(c, true);
        return;
    }
    conn_fail(c, "the server closed the connection without a close frame");
}

static void conn_readable(struct conn *c, bool hup)
{
    uint8_t *base = g.rbuf + MAX_CARRY;
    for (;;) {
        if (c->state == CS_FREE || c->state == CS_CLOSED || c->state == CS_CONNECTING ||
            c->state == CS_TLS)
            return;
        ssize_t n = c_read(c, base, RBUF_SIZE);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (g.closing && (errno == ECONNRESET || errno == EPIPE)) {
                conn_down(c, true);
                return;
            }
            conn_fail(c, "read: %s", strerror(errno));
            return;
        }
        if (n == 0) {
            conn_eof(c);
            return;
        }
        g.now = now_ns();
        uint8_t *data = base;
        size_t len = (size_t)n;
        if (c->carry_len) {
            data = base - c->carry_len;
            memcpy(data, c->carry, c->carry_len);
            len += c->carry_len;
            c->carry_len = 0;
        }
        size_t used = conn_input(c, data, len);
        if (c->state == CS_FREE || c->state == CS_CLOSED) return;
        if (used < len) {
            size_t rest = len - used;
            if (rest > MAX_CARRY) {
                conn_fail(c, "message too large");
                return;
            }
            if (rest > c->carry_cap) {
                size_t cap = c->carry_cap ? c->carry_cap : 1024;
                while (cap < rest)
                    cap *= 2;
                c->carry = xrealloc(c->carry, cap);
                c->carry_cap = (uint32_t)cap;
            }
            memmove(c->carry, data + used, rest);
            c->carry_len = (uint32_t)rest;
        }
        /* batching: what handling this read produced goes out in one send() */
        if (c->out_len > c->out_off && !conn_flush(c)) return;
        /* A short read drained the socket: with edge-triggered epoll any later data
         * raises a new event, so skip the read that would only say EAGAIN. Not under
         * TLS: OpenSSL may hold records already read. */
        if ((size_t)n < RBUF_SIZE && !hup && !c->ssl) break;
    }
    if (c->out_len > c->out_off) conn_flush(c);
}

static void conn_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_FREE || c->state == CS_CLOSED) return;
    if (c->state == CS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
        if (err) {
            conn_fail(c, "connect: %s", strerror(err));
            return;
        }
        if (g.tls_ctx) {
            char why[300];
            c->ssl = wsc_tls_new(g.tls_ctx, c->fd, g.url.host, why, sizeof why);
            if (!c->ssl) {
                conn_fail(c, "%s", why);
                return;
            }
            c->state = CS_TLS;
        } else {
            c->state = CS_HANDSHAKE;
            c->writable = true;
            if (!conn_flush(c)) return;
        }
    }
    if (c->state == CS_TLS) {
        char why[300];
        bool want_write;
        int r = wsc_tls_handshake(c->ssl, &want_write, why, sizeof why);
        if (r < 0) conn_fail(c, "TLS: %s", why);
        if (r <= 0) return;
        c->state = CS_HANDSHAKE;
        c->writable = true;
        if (!conn_flush(c)) return;
        ev |= EPOLLIN; /* the 101 may already be in OpenSSL's buffer */
    } else if (ev & EPOLLOUT) {
        c->writable = true;
        if (!conn_flush(c)) return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_readable(c, (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
}

/* Path with "token=<prefix><n>" added to the URL's query. false if it does not fit. */
static bool token_path(char *out, size_t cap, const char *prefix, unsigned n)
{
    const char *base = g.url.path;
    size_t bl = strlen(base);
    char tail[48];
    int tl = snprintf(tail, sizeof tail, "%ctoken=%s%u", strchr(base, '?') ? '&' : '?', prefix, n);
    if (tl < 0 || (size_t)tl >= sizeof tail || bl + (size_t)tl >= cap) return false;
    memcpy(out, base, bl);
    memcpy(out + bl, tail, (size_t)tl + 1);
    return true;
}

/* Starts connecting c. token_prefix: NULL for the URL as given. */
static void conn_start(struct conn *c, size_t seq, const char *token_prefix)
{
    static struct wsc_url u; /* big (9 KiB): not on the stack */
    c->fd = -1;
    c->state = CS_CONNECTING;
    c->writable = false;
    c->sent_close = c->got_close = c->in_frag = c->churn_echoed = false;
    c->carry_len = 0;
    c->out_off = c->out_len = c->stamp_from = 0;
    c->outstanding = 0;
    c->t_start = g.now ? g.now : now_ns();
    g.pending++;

    u = g.url;
    if (token_prefix && !token_path(u.path, sizeof u.path, token_prefix, c->id)) {
        conn_fail(c, "the URL's path is too long to add a token");
        return;
    }
    int err = 0;
    const struct wsc_options wo = {.deflate = O.deflate};
    c->wsc = wsc_new(&u, &wo, &err);
    if (!c->wsc) {
        conn_fail(c, "wsc_new: %s", wsc_strerror(err));
        return;
    }
    int fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        conn_fail(c, "socket: %s", strerror(errno));
        return;
    }
    c->fd = fd;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g.src_bind && O.sources > 0) {
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(seq % (size_t)O.sources));
        /* the port is chosen at connect() time, per 4-tuple: each source address
         * gets the whole ephemeral range */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            conn_fail(c, "bind 127.0.0.%u: %s", 2 + (unsigned)(seq % (size_t)O.sources),
                      strerror(errno));
            return;
        }
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        conn_fail(c, "epoll_ctl: %s", strerror(errno));
        return;
    }
    if (connect(fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect: %s", strerror(errno));
        return;
    }
}

/* One turn of the event loop: waits until an event or deadline (absolute ns). */
static void loop_once(int64_t deadline)
{
    static struct epoll_event evs[MAX_EVENTS];
    int64_t wait = deadline - now_ns();
    if (wait < 0) wait = 0;
    if (wait > NS_PER_S / 10) wait = NS_PER_S / 10;
    struct timespec ts = {.tv_sec = (time_t)(wait / NS_PER_S), .tv_nsec = (long)(wait % NS_PER_S)};
    int n = epoll_pwait2(g.ep, evs, MAX_EVENTS, &ts, NULL);
    g.now = now_ns();
    if (n < 0) {
        if (errno == EINTR) return;
        fprintf(stderr, PROG ": epoll_pwait2: %s\n", strerror(errno));
        exit(EXIT_FAIL);
    }
    for (int i = 0; i < n; i++)
        conn_event(evs[i].data.ptr, evs[i].events);
}

/* Connects g.conns[first..first+count) (token prefix per connection from tok()).
 * Keeps at most O.max_pending connects/handshakes in progress. Returns true when all
 * opened within the deadline (failures up to O.max_failures are tolerated). */
typedef const char *(*token_fn)(const struct conn *c);

static bool connect_all(size_t first, size_t count, token_fn tok, int64_t deadline)
{
    size_t next = first, end = first + count;
    uint64_t fail0 = g.failures;
    size_t open0 = g.opened;
    while (!interrupted) {
        g.now = now_ns();
        while (next < end && g.pending < (size_t)O.max_pending) {
            struct conn *c = &g.conns[next];
            conn_start(c, next, tok ? tok(c) : NULL);
            next++;
        }
        size_t done = (g.opened - open0) + (size_t)(g.failures - fail0);
        if (done >= count) break;
        if (g.failures - fail0 > (uint64_t)O.max_failures) break;
        if (g.now >= deadline) {
            note_error("connect phase timed out: %zu of %zu connections open", g.opened - open0,
                       count);
            break;
        }
        loop_once(deadline);
    }
    return !interrupted && g.opened - open0 + (size_t)(g.failures - fail0) >= count &&
           g.failures - fail0 <= (uint64_t)O.max_failures;
}

/* Closing handshake for every open connection, bounded in time; the rest is closed. */
static void close_all(void)
{
    g.closing = true;
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        if (c->state == CS_OPEN) conn_send_close(c, WS_CLOSE_NORMAL);
    }
    int64_t deadline = now_ns() + CLOSE_WAIT_NS;
    while (g.open_now > 0 && now_ns() < deadline && !interrupted)
        loop_once(deadline);
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        if (c->state != CS_FREE && c->state != CS_CLOSED) conn_down(c, true);
    }
}

/* ------------------------------------------------------------------ server figures */

static bool proc_cpu_s(long pid, double *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parens */
    if (!p) return false;
    p++;
    /* fields after the name start at 3 (state); utime is 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            *out = (double)(ut + st) / (double)g.clk_tck;
            return true;
        }
    }
    return false;
}

static long proc_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static double client_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU snapshots around the measured window. */
struct cpu_mark {
    double server, client;
    bool server_ok;
    int64_t t;
};

static void cpu_mark(struct cpu_mark *m)
{
    m->t = now_ns();
    m->client = client_cpu_s();
    m->server_ok = O.server_pid && proc_cpu_s(O.server_pid, &m->server);
}

/* ------------------------------------------------------------------ JSON output */

static char jbuf[16384];
static size_t jlen;

BENCH_PRINTF(1, 2) static void jcat(const char *fmt, ...)
{
    if (jlen >= sizeof jbuf) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(jbuf + jlen, sizeof jbuf - jlen, fmt, ap);
    va_end(ap);
    if (n > 0) jlen += (size_t)n;
    if (jlen > sizeof jbuf) jlen = sizeof jbuf;
}

static void jstr(const char *s)
{
    jcat("\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            jcat("\\%c", ch);
        else if (ch < 0x20)
            jcat("\\u%04x", ch);
        else
            jcat("%c", ch);
    }
    jcat("\"");
}

/* a number, or null when not finite */
static void jnum(double v, int decimals)
{
    if (!isfinite(v))
        jcat("null");
    else
        jcat("%.*f", decimals, v);
}

static void jhist_us(const struct bench_hist *h)
{
    jcat("{\"count\":%llu,\"p50\":", (unsigned long long)h->count);
    jnum((double)bench_hist_percentile(h, 50) / 1e3, 1);
    jcat(",\"p90\":");
    jnum((double)bench_hist_percentile(h, 90) / 1e3, 1);
    jcat(",\"p99\":");
    jnum((double)bench_hist_percentile(h, 99) / 1e3, 1);
    jcat(",\"p999\":");
    jnum((double)bench_hist_percentile(h, 99.9) / 1e3, 1);
    jcat(",\"max\":");
    jnum((double)h->max / 1e3, 1);
    jcat(",\"mean\":");
    jnum(bench_hist_mean(h) / 1e3, 1);
    jcat("}");
}

static void print_hist_line(const char *label, const struct bench_hist *h)
{
    if (h->count == 0) {
        printf("  %-14s (no samples)\n", label);
        return;
    }
    printf("  %-14s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f, %llu "
           "samples)\n",
           label, (double)bench_hist_percentile(h, 50) / 1e3,
           (double)bench_hist_percentile(h, 90) / 1e3, (double)bench_hist_percentile(h, 99) / 1e3,
           (double)bench_hist_percentile(h, 99.9) / 1e3, (double)h->max / 1e3,
           bench_hist_mean(h) / 1e3, (unsigned long long)h->count);
}

/* The common tail of every JSON line and the human CPU/RSS lines. per_unit: the
 * count server CPU is divided by (0: not applicable); unit_key: its JSON name. */
static void report_common(const struct cpu_mark *a, const struct cpu_mark *b, uint64_t per_unit,
                          const char *unit_key, const char *unit_label, bool ok)
{
    double window = (double)(b->t - a->t) / 1e9;
    double ccpu = b->client - a->client;
    bool scpu = a->server_ok && b->server_ok;
    double server = scpu ? b->server - a->server : NAN;
    long rss = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    double per = scpu && per_unit ? server * 1e6 / (double)per_unit : NAN;

    jcat(",\"server_cpu_s\":");
    jnum(server, 2);
    if (unit_key) {
        jcat(",\"%s\":", unit_key);
        jnum(per, 3);
    }
    jcat(",\"client_cpu_s\":");
    jnum(ccpu, 2);
    jcat(",\"client_cpu_pct\":");
    jnum(window > 0 ? ccpu * 100 / window : NAN, 1);
    jcat(",\"server_rss_kib\":");
    if (rss >= 0)
        jcat("%ld", rss);
    else
        jcat("null");
    jcat(",\"ok\":%s,\"error\":", ok ? "true" : "false");
    if (g.first_error[0])
        jstr(g.first_error);
    else if (interrupted)
        jstr("interrupted");
    else
        jcat("null");
    jcat("}");

    if (!O.json_only) {
        if (scpu) {
            printf("  server CPU     %.2f s (%.0f %% of one core)", server,
                   window > 0 ? server * 100 / window : 0.0);
            if (unit_key && per_unit) printf(", %.3f us %s", per, unit_label);
            printf("\n");
        }
        if (rss >= 0) printf("  server RSS     %ld KiB\n", rss);
        printf("  client CPU     %.2f s (%.0f %% of one core)\n", ccpu,
               window > 0 ? ccpu * 100 / window : 0.0);
        if (!ok) printf("  FAILED: %s\n", g.first_error[0] ? g.first_error : "see above");
        fflush(stdout);
    }
    fwrite(jbuf, 1, jlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void json_begin(void)
{
    jlen = 0;
    jcat("{\"mode\":\"%s\",\"url\":", mode_names[O.mode]);
    jstr(O.url);
}

/* ------------------------------------------------------------------ echo / churn frames */

/* Pre-built, pre-masked frames: one per mask of the pool. Payload: text, 16 hex
 * digits of the send time then 'x' padding; binary, the send time as 8 little-endian
 * bytes then a byte pattern. */
static struct {
    uint8_t *tmpl[MASK_POOL];
    size_t frame_len, hdr_len; /* hdr_len includes the 4 mask bytes */
    size_t size;
    uint8_t op;
} T;

static void templates_build(size_t size, bool binary)
{
    T.size = size;
    T.op = binary ? WS_OP_BINARY : WS_OP_TEXT;
    for (unsigned m = 0; m < MASK_POOL; m++) {
        uint8_t hdr[WS_MAX_HEADER];
        size_t hl = ws_frame_header(hdr, (enum ws_opcode)T.op, true, false, size, g.masks[m]);
        T.hdr_len = hl;
        T.frame_len = hl + size;
        free(T.tmpl[m]);
        T.tmpl[m] = xcalloc(1, T.frame_len);
        memcpy(T.tmpl[m], hdr, hl);
        uint8_t *p = T.tmpl[m] + hl;
        for (size_t i = 0; i < size; i++)
            p[i] = binary ? (uint8_t)(i * 7 + 1) : (uint8_t)'x';
        if (binary)
            memset(p, 0, 8);
        else
            memset(p, '0', 16);
        ws_mask(p, size, g.masks[m], 0);
    }
}

/* Appends one frame (timestamp written later by stamp_frames). */
static void frame_append(struct conn *c)
{
    unsigned m = g.mask_next++ & (MASK_POOL - 1);
    memcpy(c->out + c->out_len, T.tmpl[m], T.frame_len);
    c->out_len += (uint32_t)T.frame_len;
}

/* Writes the send time into every frame from c->stamp_from on (frames are contiguous
 * and all T.frame_len long; each carries its own mask in its header). */
static void stamp_frames(struct conn *c)
{
    if (c->stamp_from >= c->out_len) return;
    int64_t t = now_ns();
    uint8_t ts[16];
    size_t tl;
    if (T.op == WS_OP_TEXT) {
        bench_wire_to_hex16(ts, (uint64_t)t);
        tl = 16;
    } else {
        for (int k = 0; k < 8; k++)
            ts[k] = (uint8_t)((uint64_t)t >> (8 * k));
        tl = 8;
    }
    for (uint32_t off = c->stamp_from; off + T.frame_len <= c->out_len;
         off += (uint32_t)T.frame_len) {
        uint8_t *f = c->out + off;
        const uint8_t *mk = f + T.hdr_len - 4;
        uint8_t *p = f + T.hdr_len;
        for (size_t k = 0; k < tl; k++)
            p[k] = ts[k] ^ mk[k & 3];
    }
    c->stamp_from = c->out_len;
}

/* The send time carried by an echoed payload; false if it does not look like ours. */
static bool echo_time(uint8_t op, const uint8_t *p, size_t len, int64_t *t)
{
    uint64_t v = 0;
    if (op != T.op || len != T.size) return false;
    if (op == WS_OP_TEXT) {
        if (!bench_wire_from_hex16(p, &v)) return false;
    } else {
        for (int k = 7; k >= 0; k--)
            v = (v << 8) | p[k];
    }
    *t = (int64_t)v;
    return *t > 0 && *t <= g.now;
}

/* ------------------------------------------------------------------ echo mode */

enum phase { PH_SETUP, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

static struct {
    enum phase phase;
    bool sending;
    struct bench_hist hist;
    uint64_t received, bad;
    uint64_t outstanding;
} E;

static void echo_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    int64_t t;
    if (!echo_time(op, data, len, &t)) {
        E.bad++;
        if (!g.first_error[0])
            note_error("connection %u: an echo that is not what was sent (%s, %zu bytes)", c->id,
                       op == WS_OP_TEXT ? "text" : "binary", len);
    } else if (E.phase == PH_MEASURE) {
        bench_hist_record(&E.hist, (uint64_t)(g.now - t));
        E.received++;
    }
    if (c->outstanding) {
        c->outstanding--;
        E.outstanding--;
    }
    if (E.sending && c->state == CS_OPEN && out_reserve(c, T.frame_len)) {
        frame_append(c);
        c->outstanding++;
        E.outstanding++;
    }
}

static int run_echo(void)
{
    templates_build((size_t)O.size, O.binary);
    g.n_conns = (size_t)O.connections;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_ECHO;
        g.conns[i].id = (uint32_t)i;
        g.conns[i].fd = -1;
    }
    progress("echo: connecting %zu connections to %s", g.n_conns, O.url);
    int64_t t0 = now_ns();
    bool ok = connect_all(0, g.n_conns, NULL, t0 + (int64_t)(O.timeout * 1e9));
    struct cpu_mark a = {0}, b = {0};
    if (ok) {
        progress("echo: %zu open in %.2f s; warm-up %.1f s, then %.1f s measured", g.opened,
                 (double)(now_ns() - t0) / 1e9, O.warmup, O.duration);
        E.sending = true;
        E.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
        g.now = now_ns();
        int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
        int64_t end = warm_end + (int64_t)(O.duration * 1e9);
        if (E.phase == PH_MEASURE) cpu_mark(&a);
        for (size_t i = 0; i < g.n_conns; i++) {
            struct conn *c = &g.conns[i];
            if (c->state != CS_OPEN) continue;
            if (!out_reserve(c, (size_t)O.inflight * T.frame_len)) continue;
            for (long k = 0; k < O.inflight; k++) {
                frame_append(c);
                c->outstanding++;
                E.outstanding++;
            }
            conn_flush(c);
        }
        while (!interrupted && E.phase != PH_DONE) {
            if (g.open_now == 0) {
                note_error("every connection was lost");
                break;
            }
            if (E.phase == PH_WARMUP && g.now >= warm_end) {
                cpu_mark(&a);
                bench_hist_reset(&E.hist);
                E.received = 0;
                E.phase = PH_MEASURE;
            }
            if (E.phase == PH_MEASURE && g.now >= end) {
                cpu_mark(&b);
                E.phase = PH_DONE;
                break;
            }
            loop_once(E.phase == PH_WARMUP ? warm_end : end);
        }
        if (E.phase != PH_DONE) cpu_mark(&b);
        if (!a.t) a = b;
        /* let the frames in flight come back, then close */
        E.sending = false;
        int64_t dl = now_ns() + DRAIN_WAIT_NS;
        while (E.outstanding > 0 && g.open_now > 0 && now_ns() < dl && !interrupted)
            loop_once(dl);
    } else {
        cpu_mark(&a);
        b = a;
    }
    close_all();

    double window = (double)(b.t - a.t) / 1e9;
    double rate = window > 0 ? (double)E.received / window : 0;
    bool success = ok && !interrupted && g.disconnects == 0 && E.bad == 0 &&
                   g.failures <= (uint64_t)O.max_failures && E.received > 0;
    if (ok && E.received == 0 && !g.first_error[0]) note_error("no echo received");

    if (!O.json_only) {
        printf("echo %s: %ld connections x %ld in flight, %ld B %s, %.1f s measured (+%.1f s "
               "warm-up)\n",
               O.url, O.connections, O.inflight, O.size, O.binary ? "binary" : "text", window,
               O.warmup);
        printf("  messages/s     %.0f  (%llu echoes)\n", rate, (unsigned long long)E.received);
        print_hist_line("RTT us", &E.hist);
        if (g.failures || g.disconnects || E.bad)
            printf("  errors         %llu connect, %llu disconnects, %llu bad echoes\n",
                   (unsigned long long)g.failures, (unsigned long long)g.disconnects,
                   (unsigned long long)E.bad);
    }
    json_begin();
    jcat(",\"params\":{\"connections\":%ld,\"inflight\":%ld,\"size\":%ld,\"binary\":%s,"
         "\"duration_s\":%g,\"warmup_s\":%g,\"sources\":%ld}",
         O.connections, O.inflight, O.size, O.binary ? "true" : "false", O.duration, O.warmup,
         O.sources);
    jcat(",\"results\":{\"window_s\":%.3f,\"messages\":%llu,\"messages_per_s\":%.0f,\"rtt_us\":",
         window, (unsigned long long)E.received, rate);
    jhist_us(&E.hist);
    jcat(",\"connect_failures\":%llu,\"disconnects\":%llu,\"bad_echoes\":%llu,"
         "\"protocol_errors\":%llu}",
         (unsigned long long)g.failures, (unsigned long long)g.disconnects,
         (unsigned long long)E.bad, (unsigned long long)g.protocol_errors);
    report_common(&a, &b, E.received, "server_cpu_per_msg_us", "per message", success);
    return success ? EXIT_OK : EXIT_FAIL;
}

/* ------------------------------------------------------------------ fanout mode */

static struct {
    enum phase phase;
    size_t S, P, R;
    uint32_t *last;    /* [s * P + j]: last n seen by subscriber s from publisher j */
    uint32_t *seq;     /* [j * R + r]: last n sent by publisher j to room r */
    uint32_t *minlast; /* [j * R + r]: min over room r's subscribers of last[.][j] */
    uint64_t *room_sent, *room_minsum; /* per room: sum over j of seq, of minlast */
    uint64_t *room_recalc;             /* per room: loop turn of the last recomputation */
    uint32_t *members;                 /* subscribers per room */
    uint64_t expected, advanced;       /* sum of members*seq; sum of last */
    uint64_t baselined;                /* (s, j) pairs that have seen a message */
    uint64_t turn;
    /* counters */
    uint64_t deliveries, published; /* in the measured window */
    uint64_t lost_gaps, dups, bad, other, pub_errors, rate_behind;
    struct bench_hist hist;
    /* publishers */
    int64_t *next_due; /* rate mode */
    uint32_t *next_room;
    int64_t interval; /* rate mode: ns between two messages of one publisher */
    size_t msg_max;   /* upper bound of one message frame */
    char *pad;        /* size bytes of 'x' */
} F;

static const char *fan_token(const struct conn *c)
{
    return c->role == R_SUB ? "sub" : "pub";
}

static size_t fan_build(uint8_t *dst, uint32_t j, uint32_t r, uint32_t n, int64_t t)
{
    char js[20], rs[20], ns[20], ts[20];
    size_t jl = bench_wire_utoa(js, j), rl = bench_wire_utoa(rs, r), nl = bench_wire_utoa(ns, n),
           tl = bench_wire_utoa(ts, (uint64_t)t);
    static const char p1[] = "{\"type\":\"send_to_room\",\"payload\":{\"room_id\":\"bench";
    static const char p2[] = "\",\"pub\":";
    static const char p3[] = ",\"n\":";
    static const char p4[] = ",\"t\":";
    static const char p5[] = ",\"content\":\"wsb:";
    static const char p6[] = "\"}}";
    size_t plen = (sizeof p1 - 1) + rl + (sizeof p2 - 1) + jl + (sizeof p3 - 1) + nl +
                  (sizeof p4 - 1) + tl + (sizeof p5 - 1) + jl + 1 + nl + 1 + tl + 1 +
                  (size_t)O.size + (sizeof p6 - 1);
    const uint8_t *mask = next_mask();
    size_t hl = ws_frame_header(dst, WS_OP_TEXT, true, false, plen, mask);
    char *p = (char *)dst + hl;
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        memcpy(p, (s), (l));                                                                       \
        p += (l);                                                                                  \
    } while (0)
    PUT(p1, sizeof p1 - 1);
    PUT(rs, rl);
    PUT(p2, sizeof p2 - 1);
    PUT(js, jl);
    PUT(p3, sizeof p3 - 1);
    PUT(ns, nl);
    PUT(p4, sizeof p4 - 1);
    PUT(ts, tl);
    PUT(p5, sizeof p5 - 1);
    PUT(js, jl);
    *p++ = ':';
    PUT(ns, nl);
    *p++ = ':';
    PUT(ts, tl);
    *p++ = ':';
    PUT(F.pad, (size_t)O.size);
    PUT(p6, sizeof p6 - 1);
#undef PUT
    ws_mask(dst + hl, plen, mask, 0);
    return hl + plen;
}

/* Queues one message from publisher c to room r (caller checked the space). */
static void fan_publish(struct conn *c, uint32_t r)
{
    uint32_t j = c->id;
    uint32_t n = ++F.seq[(size_t)j * F.R + r];
    F.room_sent[r]++;
    F.expected += F.members[r];
    c->out_len += (uint32_t)fan_build(c->out + c->out_len, j, r, n, now_ns());
    if (F.phase == PH_MEASURE) F.published++;
}

static void fan_recalc_room(uint32_t r)
{
    if (F.room_recalc[r] == F.turn) return;
    F.room_recalc[r] = F.turn;
    uint64_t sum = 0;
    for (size_t j = 0; j < F.P; j++) {
        uint32_t m = UINT32_MAX;
        for (size_t s = r; s < F.S; s += F.R) {
            uint32_t v = F.last[s * F.P + j];
            if (v < m) m = v;
        }
        if (m == UINT32_MAX) m = F.seq[j * F.R + r];
        F.minlast[j * F.R + r] = m;
        sum += m;
    }
    F.room_minsum[r] = sum;
}

/* May another message go to room r now (as-fast-as-possible mode)? */
static bool fan_room_open(uint32_t r)
{
    if (F.expected - F.advanced >= (uint64_t)O.max_lag) return false;
    if (F.room_sent[r] - F.room_minsum[r] < (uint64_t)O.window) return true;
    fan_recalc_room(r);
    return F.room_sent[r] - F.room_minsum[r] < (uint64_t)O.window;
}

static void fan_pump(void)
{
    if (F.phase != PH_WARMUP && F.phase != PH_MEASURE) return;
    F.turn++;
    for (size_t i = 0; i < F.P; i++) {
        struct conn *c = &g.conns[F.S + i];
        if (c->state != CS_OPEN) continue;
        if (O.rate > 0) {
            int64_t now = now_ns();
            if (now - F.next_due[i] > NS_PER_S) { /* more than 1 s behind: skip ahead */
                F.rate_behind += (uint64_t)((now - F.next_due[i]) / F.interval);
                F.next_due[i] = now;
            }
            while (F.next_due[i] <= now && c->out_len - c->out_off < PUB_BATCH &&
                   out_reserve(c, F.msg_max)) {
                uint32_t r = F.next_room[i]++ % (uint32_t)F.R;
                fan_publish(c, r);
                F.next_due[i] += F.interval;
            }
        } else {
            uint32_t blocked = 0;
            while (blocked < F.R && c->out_len - c->out_off < PUB_BATCH &&
                   out_reserve(c, F.msg_max)) {
                uint32_t r = F.next_room[i] % (uint32_t)F.R;
                F.next_room[i]++;
                if (!fan_room_open(r)) {
                    blocked++;
                    continue;
                }
                blocked = 0;
                fan_publish(c, r);
            }
        }
        if (c->out_len > c->out_off) conn_flush(c);
    }
}

/* Settling: every publisher sends one message to every room in turn (as many as fit
 * in one batch per round; the next round goes on from there). */
static void fan_probe(void)
{
    for (size_t i = 0; i < F.P; i++) {
        struct conn *c = &g.conns[F.S + i];
        if (c->state != CS_OPEN) continue;
        for (size_t k = 0; k < F.R; k++) {
            if (c->out_len - c->out_off >= PUB_BATCH || !out_reserve(c, F.msg_max)) break;
            fan_publish(c, F.next_room[i]++ % (uint32_t)F.R);
        }
        conn_flush(c);
    }
}

static void fan_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    if (c->role == R_PUB) {
        if (op == WS_OP_TEXT && memmem(data, len, "\"type\":\"error\"", 14)) {
            F.pub_errors++;
            if (!g.first_error[0])
                note_error("publisher %u got an error: %.*s", c->id, (int)(len > 200 ? 200 : len),
                           (const char *)data);
        }
        return;
    }
    uint64_t j, n, t;
    if (op != WS_OP_TEXT || !bench_wire_scan_bench(data, len, &j, &n, &t)) {
        F.other++;
        if (op == WS_OP_TEXT && memmem(data, len, "\"type\":\"error\"", 14)) {
            F.bad++;
            if (!g.first_error[0])
                note_error("subscriber %u got an error: %.*s", c->id, (int)(len > 200 ? 200 : len),
                           (const char *)data);
        }
        return;
    }
    if (j >= F.P || n == 0 || n > UINT32_MAX || (int64_t)t > g.now) {
        F.bad++;
        return;
    }
    uint32_t *last = &F.last[(size_t)c->id * F.P + j];
    uint32_t nn = (uint32_t)n;
    if (*last == 0) {
        F.baselined++;
        F.advanced += nn;
        *last = nn;
    } else if (nn > *last) {
        F.lost_gaps += nn - *last - 1;
        F.advanced += nn - *last;
        *last = nn;
    } else {
        F.dups++;
        return;
    }
    if (F.phase == PH_MEASURE) {
        F.deliveries++;
        bench_hist_record(&F.hist, (uint64_t)(g.now - (int64_t)t));
    }
}

static void fan_on_open(struct conn *c)
{
    if (c->role != R_SUB) return;
    char msg[128];
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"join_room\",\"payload\":{\"room_id\":\"bench%u\"}}", c->room);
    if (!out_reserve(c, WS_MAX_HEADER + (size_t)n)) return;
    const uint8_t *mask = next_mask();
    uint8_t *dst = c->out + c->out_len;
    size_t hl = ws_frame_header(dst, WS_OP_TEXT, true, false, (uint64_t)n, mask);
    memcpy(dst + hl, msg, (size_t)n);
    ws_mask(dst + hl, (size_t)n, mask, 0);
    c->out_len += (uint32_t)(hl + (size_t)n);
    conn_flush(c);
}

static int run_fanout(void)
{
    F.S = (size_t)O.subscribers;
    F.P = (size_t)O.publishers;
    F.R = (size_t)O.rooms;
    g.n_conns = F.S + F.P;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    F.last = xcalloc(F.S * F.P, sizeof *F.last);
    F.seq = xcalloc(F.P * F.R, sizeof *F.seq);
    F.minlast = xcalloc(F.P * F.R, sizeof *F.minlast);
    F.room_sent = xcalloc(F.R, sizeof *F.room_sent);
    F.room_minsum = xcalloc(F.R, sizeof *F.room_minsum);
    F.room_recalc = xcalloc(F.R, sizeof *F.room_recalc);
    F.members = xcalloc(F.R, sizeof *F.members);
    F.next_due = xcalloc(F.P, sizeof *F.next_due);
    F.next_room = xcalloc(F.P, sizeof *F.next_room);
    F.pad = xcalloc(1, (size_t)O.size + 1);
    memset(F.pad, 'x', (size_t)O.size);
    F.msg_max = WS_MAX_HEADER + 256 + (size_t)O.size;
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        c->fd = -1;
        if (i < F.S) {
            c->role = R_SUB;
            c->id = (uint32_t)i;
            c->room = (uint32_t)(i % F.R);
            F.members[c->room]++;
        } else {
            c->role = R_PUB;
            c->id = (uint32_t)(i - F.S);
            F.next_room[c->id] = c->id; /* spread publishers over the rooms */
        }
    }
    for (size_t r = 0; r < F.R; r++)
        F.room_recalc[r] = UINT64_MAX;

    struct cpu_mark a = {0}, b = {0};
    int64_t t0 = now_ns();
    progress("fanout: connecting %zu subscribers and %zu publishers to %s", F.S, F.P, O.url);
    bool ok = connect_all(0, g.n_conns, fan_token, t0 + (int64_t)(O.timeout * 1e9));
    double settle_s = 0, drain_s = 0;
    if (ok) {
        /* settle: probes until every subscriber has heard from every publisher */
        progress("fanout: %zu open in %.2f s; settling the joins", g.opened,
                 (double)(now_ns() - t0) / 1e9);
        F.phase = PH_SETTLE;
        int64_t s0 = now_ns(), deadline = s0 + (int64_t)(O.timeout * 1e9), next_probe = s0;
        while (!interrupted && F.baselined < (uint64_t)F.S * F.P) {
            if (g.disconnects) break;
            g.now = now_ns();
            if (g.now >= deadline) {
                note_error("joins did not settle within %.0f s: %llu of %zu subscriber/publisher "
                           "pairs heard from",
                           O.timeout, (unsigned long long)F.baselined, F.S * F.P);
                break;
            }
            if (g.now >= next_probe) {
                fan_probe();
                next_probe = g.now + NS_PER_S / 20;
            }
            loop_once(next_probe);
        }
        settle_s = (double)(now_ns() - s0) / 1e9;
        ok = F.baselined == (uint64_t)F.S * F.P && !interrupted && !g.disconnects;
    }
    if (ok) {
        progress("fanout: settled in %.2f s; warm-up %.1f s, then %.1f s measured", settle_s,
                 O.warmup, O.duration);
        /* let the probes drain so the window starts clean */
        int64_t dl = now_ns() + DRAIN_WAIT_NS;
        while (F.expected > F.advanced && now_ns() < dl && !interrupted && !g.disconnects)
            loop_once(dl);
        for (uint32_t r = 0; r < F.R; r++)
            fan_recalc_room(r);
        g.now = now_ns();
        int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
        int64_t end = warm_end + (int64_t)(O.duration * 1e9);
        F.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
        if (F.phase == PH_MEASURE) cpu_mark(&a);
        if (O.rate > 0) {
            F.interval = (int64_t)((double)NS_PER_S * (double)F.P / O.rate);
            if (F.interval < 1) F.interval = 1;
            for (size_t i = 0; i < F.P; i++) /* stagger the publishers */
                F.next_due[i] = g.now + F.interval * (int64_t)i / (int64_t)F.P;
        }
        while (!interrupted) {
            g.now = now_ns();
            if (F.phase == PH_WARMUP && g.now >= warm_end) {
                cpu_mark(&a);
                bench_hist_reset(&F.hist);
                F.deliveries = F.published = 0;
                F.phase = PH_MEASURE;
            }
            if (F.phase == PH_MEASURE && g.now >= end) {
                cpu_mark(&b);
                F.phase = PH_DRAIN;
                break;
            }
            fan_pump();
            int64_t wake = F.phase == PH_WARMUP ? warm_end : end;
            if (O.rate > 0)
                for (size_t i = 0; i < F.P; i++)
                    if (F.next_due[i] < wake) wake = F.next_due[i];
            loop_once(wake);
        }
        if (F.phase != PH_DRAIN) cpu_mark(&b);
        if (!a.t) a = b;
        /* Drain: wait for what is still on its way for as long as deliveries keep
         * coming (a server that fell behind a fixed rate may need a while), up to
         * --timeout; what has not arrived after DRAIN_STALL_NS without progress is
         * counted as lost. */
        F.phase = PH_DRAIN;
        int64_t d0 = now_ns(), progress = d0, hard = d0 + (int64_t)(O.timeout * 1e9);
        uint64_t seen = F.advanced;
        while (F.expected > F.advanced && !interrupted) {
            int64_t t = now_ns();
            if (F.advanced != seen) {
                seen = F.advanced;
                progress = t;
            }
            if (t - progress >= DRAIN_STALL_NS || t >= hard) break;
            loop_once(progress + DRAIN_STALL_NS < hard ? progress + DRAIN_STALL_NS : hard);
        }
        drain_s = (double)(now_ns() - d0) / 1e9;
    } else {
        cpu_mark(&a);
        b = a;
    }
    uint64_t tail_lost = ok ? F.expected - F.advanced : 0;
    close_all();

    uint64_t lost = F.lost_gaps + tail_lost;
    if (ok && tail_lost && !g.first_error[0])
        note_error("%llu deliveries had not arrived %.1f s after the window (%s)",
                   (unsigned long long)tail_lost, drain_s,
                   drain_s >= O.timeout ? "gave up after --timeout" : "no progress for 2 s");
    double window = (double)(b.t - a.t) / 1e9;
    double drate = window > 0 ? (double)F.deliveries / window : 0;
    double prate = window > 0 ? (double)F.published / window : 0;
    /* rate mode: deliveries a second the server was asked for (messages go round-robin
     * over the rooms, so each reaches S/R subscribers on average) */
    double offered = O.rate * (double)F.S / (double)F.R;
    if (ok && lost && !g.first_error[0])
        note_error("%llu deliveries lost", (unsigned long long)lost);
    if (ok && F.dups && !g.first_error[0])
        note_error("%llu deliveries duplicated", (unsigned long long)F.dups);
    if (ok && F.deliveries == 0 && !g.first_error[0]) note_error("no delivery in the window");
    bool success = ok && !interrupted && lost == 0 && F.dups == 0 && g.disconnects == 0 &&
                   F.deliveries > 0 && F.bad == 0 && F.pub_errors == 0 &&
                   g.failures <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("fanout %s: %zu publisher(s) -> %zu subscribers in %zu room(s), %ld B pad, rate "
               "%s, %.1f s measured (+%.1f s warm-up)\n",
               O.url, F.P, F.S, F.R, O.size, O.rate > 0 ? "fixed" : "max", window, O.warmup);
        if (O.rate > 0) {
            printf("  target rate    %.0f msg/s (%.0f deliveries/s)\n", O.rate, offered);
            if (drate < 0.95 * offered)
                printf("  NOTE           the server fell behind the offered load: latency "
                       "grows with the run\n");
        }
        printf("  deliveries/s   %.0f  (%llu)\n", drate, (unsigned long long)F.deliveries);
        if (O.deflate)
            printf("  compressed     %llu messages received compressed (permessage-deflate)\n",
                   (unsigned long long)g.inflated);
        printf("  published/s    %.0f  (%llu)\n", prate, (unsigned long long)F.published);
        print_hist_line("latency us", &F.hist);
        printf("  lost %llu (%llu never arrived), duplicated %llu, disconnects %llu, settle "
               "%.2f s, drain %.2f s\n",
               (unsigned long long)lost, (unsigned long long)tail_lost, (unsigned long long)F.dups,
               (unsigned long long)g.disconnects, settle_s, drain_s);
    }
    json_begin();
    jcat(",\"params\":{\"subscribers\":%zu,\"publishers\":%zu,\"rooms\":%zu,\"size\":%ld,"
         "\"rate\":%g,\"window\":%ld,\"max_lag\":%ld,\"duration_s\":%g,\"warmup_s\":%g,"
         "\"sources\":%ld,\"deflate\":%s}",
         F.S, F.P, F.R, O.size, O.rate, O.window, O.max_lag, O.duration, O.warmup, O.sources,
         O.deflate ? "true" : "false");
    jcat(",\"results\":{\"window_s\":%.3f,\"deliveries\":%llu,\"deliveries_per_s\":%.0f,"
         "\"published\":%llu,\"published_per_s\":%.0f,\"offered_deliveries_per_s\":",
         window, (unsigned long long)F.deliveries, drate, (unsigned long long)F.published, prate);
    if (O.rate > 0)
        jcat("%.0f", offered);
    else
        jcat("null");
    jcat(",\"latency_us\":");
    jhist_us(&F.hist);
    jcat(",\"lost\":%llu,\"never_arrived\":%llu,\"duplicated\":%llu,\"settle_s\":%.3f,"
         "\"drain_s\":%.3f,\"connect_failures\":%llu,"
         "\"disconnects\":%llu,\"protocol_errors\":%llu,\"bad_messages\":%llu,"
         "\"publisher_errors\":%llu,\"rate_behind\":%llu,\"other_messages\":%llu}",
         (unsigned long long)lost, (unsigned long long)tail_lost, (unsigned long long)F.dups,
         settle_s, drain_s, (unsigned long long)g.failures, (unsigned long long)g.disconnects,
         (unsigned long long)g.protocol_errors, (unsigned long long)F.bad,
         (unsigned long long)F.pub_errors, (unsigned long long)F.rate_behind,
         (unsigned long long)F.other);
    report_common(&a, &b, F.deliveries, "server_cpu_per_msg_us", "per delivery", success);
    return success ? EXIT_OK : EXIT_FAIL;
}

/* ------------------------------------------------------------------ idle mode */

static int run_idle(void)
{
    g.n_conns = (size_t)O.connections;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_IDLE;
        g.conns[i].id = (uint32_t)i;
        g.conns[i].fd = -1;
    }
    long rss0 = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    struct cpu_mark a, b;
    cpu_mark(&a);
    progress("idle: opening %zu connections to %s (%ld in progress at most)", g.n_conns, O.url,
             O.max_pending);
    bool ok = connect_all(0, g.n_conns, NULL, a.t + (int64_t)(O.timeout * 1e9));
    cpu_mark(&b);
    double connect_s = (double)(b.t - a.t) / 1e9;
    double rate = connect_s > 0 ? (double)g.opened / connect_s : 0;
    long rss1 = -1;
    size_t still_open = 0;
    if (ok) {
        progress("idle: %zu open in %.2f s (%.0f/s); holding %.1f s", g.opened, connect_s, rate,
                 O.hold);
        int64_t end = now_ns() + (int64_t)(O.hold * 1e9);
        while (!interrupted && now_ns() < end)
            loop_once(end);
        still_open = g.open_now;
        rss1 = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    }
    close_all();
    double per = rss0 >= 0 && rss1 >= 0 && g.opened
                     ? (double)(rss1 - rss0) * 1024.0 / (double)g.opened
                     : NAN;
    if (ok && still_open != g.opened && !g.first_error[0])
        note_error("%zu of %zu connections were closed during the hold", g.opened - still_open,
                   g.opened);
    bool success = ok && !interrupted && still_open == g.opened && g.disconnects == 0 &&
                   g.failures <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("idle %s: %zu connections (%ld sources), held %.1f s\n", O.url, g.opened, O.sources,
               O.hold);
        printf("  connect        %.2f s, %.0f connections/s, %llu failed\n", connect_s, rate,
               (unsigned long long)g.failures);
        if (rss0 >= 0 && rss1 >= 0)
            printf("  server RSS     %ld -> %ld KiB: %.0f bytes per connection\n", rss0, rss1, per);
        printf("  still open     %zu\n", still_open);
    }
    json_begin();
    jcat(",\"params\":{\"connections\":%ld,\"sources\":%ld,\"hold_s\":%g,\"max_pending\":%ld}",
         O.connections, O.sources, O.hold, O.max_pending);
    jcat(",\"results\":{\"opened\":%zu,\"still_open\":%zu,\"connect_s\":%.3f,"
         "\"connect_rate_per_s\":%.0f,\"connect_failures\":%llu,\"disconnects\":%llu,"
         "\"rss_before_kib\":",
         g.opened, still_open, connect_s, rate, (unsigned long long)g.failures,
         (unsigned long long)g.disconnects);
    if (rss0 >= 0)
        jcat("%ld", rss0);
    else
        jcat("null");
    jcat(",\"rss_after_kib\":");
    if (rss1 >= 0)
        jcat("%ld", rss1);
    else
        jcat("null");
    jcat(",\"bytes_per_connection\":");
    jnum(per, 1);
    jcat("}");
    /* server CPU of the connect phase, per connection */
    report_common(&a, &b, g.opened, "server_cpu_per_conn_us", "per connection", success);
    return success ? EXIT_OK : EXIT_FAIL;
}

/* ------------------------------------------------------------------ churn mode */

static struct {
    enum phase phase;
    size_t *free_slots;
    size_t n_free;
    uint64_t completed, completed_total, failed, started;
    uint64_t behind;
    struct bench_hist hist;
} C;

static void churn_on_open(struct conn *c)
{
    if (!out_reserve(c, T.frame_len)) return;
    frame_append(c);
    conn_flush(c);
}

static void churn_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    int64_t t;
    if (c->churn_echoed) return;
    c->churn_echoed = true;
    if (!echo_time(op, data, len, &t)) {
        conn_fail(c, "the echo is not what was sent");
        return;
    }
    conn_send_close(c, WS_CLOSE_NORMAL);
}

static void churn_on_down(struct conn *c, bool clean)
{
    if (clean && c->churn_echoed && c->got_close) {
        C.completed_total++;
        if (C.phase == PH_MEASURE) {
            C.completed++;
            bench_hist_record(&C.hist, (uint64_t)(now_ns() - c->t_start));
        }
    } else {
        C.failed++;
        if (!g.first_error[0]) note_error("connection %u did not complete", c->id);
    }
    c->state = CS_FREE;
    C.free_slots[C.n_free++] = (size_t)(c - g.conns);
}

static int run_churn(void)
{
    templates_build((size_t)O.size, O.binary);
    g.n_conns = (size_t)O.max_pending;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    C.free_slots = xcalloc(g.n_conns, sizeof *C.free_slots);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_CHURN;
        g.conns[i].fd = -1;
        C.free_slots[C.n_free++] = g.n_conns - 1 - i;
    }
    progress("churn: %.0f connections/s to %s, warm-up %.1f s, then %.1f s measured", O.rate, O.url,
             O.warmup, O.duration);
    struct cpu_mark a = {0}, b = {0};
    int64_t interval = (int64_t)((double)NS_PER_S / O.rate);
    if (interval < 1) interval = 1;
    g.now = now_ns();
    int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
    int64_t end = warm_end + (int64_t)(O.duration * 1e9);
    int64_t next_open = g.now, next_check = g.now;
    C.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
    if (C.phase == PH_MEASURE) cpu_mark(&a);
    uint64_t seq = 0;
    while (!interrupted) {
        g.now = now_ns();
        if (C.phase == PH_WARMUP && g.now >= warm_end) {
            cpu_mark(&a);
            bench_hist_reset(&C.hist);
            C.completed = 0;
            C.phase = PH_MEASURE;
        }
        if (C.phase == PH_MEASURE && g.now >= end) {
            cpu_mark(&b);
            C.phase = PH_DRAIN;
            break;
        }
        if (g.now - next_open > NS_PER_S) { /* a second behind: give up catching up */
            C.behind += (uint64_t)((g.now - next_open) / interval);
            next_open = g.now;
        }
        while (next_open <= g.now && C.n_free > 0) {
            struct conn *c = &g.conns[C.free_slots[--C.n_free]];
            c->id = (uint32_t)seq;
            conn_start(c, seq++, NULL);
            c->t_start = now_ns();
            c->deadline = c->t_start + CHURN_CONN_TIMEOUT_NS;
            C.started++;
            next_open += interval;
        }
        if (g.now >= next_check) { /* per-connection time limits */
            for (size_t i = 0; i < g.n_conns; i++) {
                struct conn *c = &g.conns[i];
                if (c->state != CS_FREE && c->state != CS_CLOSED && g.now > c->deadline)
                    conn_fail(c, "timed out after %.0f s", CHURN_CONN_TIMEOUT_NS / 1e9);
            }
            next_check = g.now + NS_PER_S / 10;
        }
        int64_t wake = C.phase == PH_WARMUP ? warm_end : end;
        if (next_open < wake) wake = next_open;
        if (next_check < wake) wake = next_check;
        loop_once(wake);
    }
    if (C.phase != PH_DRAIN) cpu_mark(&b);
    if (!a.t) a = b;
    C.phase = PH_DRAIN;
    /* let the connections in progress finish */
    int64_t dl = now_ns() + DRAIN_WAIT_NS;
    while (C.n_free < g.n_conns && now_ns() < dl && !interrupted)
        loop_once(dl);
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        if (c->state != CS_FREE && c->state != CS_CLOSED) conn_fail(c, "unfinished at the end");
    }
    double window = (double)(b.t - a.t) / 1e9;
    double rate = window > 0 ? (double)C.completed / window : 0;
    if (C.completed == 0 && !g.first_error[0]) note_error("no connection completed");
    bool success = !interrupted && C.completed > 0 && C.failed <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("churn %s: target %.0f connections/s, %ld B %s message, %.1f s measured (+%.1f s "
               "warm-up)\n",
               O.url, O.rate, O.size, O.binary ? "binary" : "text", window, O.warmup);
        printf("  completed/s    %.0f  (%llu; %llu failed, %llu started late or skipped)\n", rate,
               (unsigned long long)C.completed, (unsigned long long)C.failed,
               (unsigned long long)C.behind);
        print_hist_line("conn+echo+close us", &C.hist);
    }
    json_begin();
    jcat(",\"params\":{\"rate\":%g,\"size\":%ld,\"binary\":%s,\"duration_s\":%g,\"warmup_s\":%g,"
         "\"sources\":%ld,\"max_pending\":%ld}",
         O.rate, O.size, O.binary ? "true" : "false", O.duration, O.warmup, O.sources,
         O.max_pending);
    jcat(",\"results\":{\"window_s\":%.3f,\"completed\":%llu,\"completed_per_s\":%.0f,"
         "\"failures\":%llu,\"started\":%llu,\"behind\":%llu,\"latency_us\":",
         window, (unsigned long long)C.completed, rate, (unsigned long long)C.failed,
         (unsigned long long)C.started, (unsigned long long)C.behind);
    jhist_us(&C.hist);
    jcat(",\"protocol_errors\":%llu}", (unsigned long long)g.protocol_errors);
    report_common(&a, &b, C.completed, "server_cpu_per_conn_us", "per connection", success);
    return success ? EXIT_OK : EXIT_FAIL;
}

/* ------------------------------------------------------------------ mode hooks */

static uint32_t out_cap_for(const struct conn *c)
{
    switch (c->role) {
    case R_ECHO:
        return (uint32_t)((size_t)O.inflight * T.frame_len + SMALL_OUT);
    case R_PUB:
        return (uint32_t)(PUB_BATCH + 2 * F.msg_max + SMALL_OUT);
    case R_CHURN:
        return (uint32_t)(T.frame_len + SMALL_OUT);
    default:
        return SMALL_OUT;
    }
}

static void mode_on_open(struct conn *c)
{
    switch (c->role) {
    case R_SUB:
    case R_PUB:
        fan_on_open(c);
        break;
    case R_CHURN:
        churn_on_open(c);
        break;
    default:
        break;
    }
}

static void mode_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    switch (c->role) {
    case R_ECHO:
        echo_on_message(c, op, data, len);
        break;
    case R_SUB:
    case R_PUB:
        fan_on_message(c, op, data, len);
        break;
    case R_CHURN:
        churn_on_message(c, op, data, len);
        break;
    default:
        break;
    }
}

static void mode_on_down(struct conn *c, bool clean)
{
    if (c->role == R_CHURN) churn_on_down(c, clean);
    if (c->role == R_ECHO && c->outstanding) {
        E.outstanding -= c->outstanding;
        c->outstanding = 0;
    }
}

static void mode_before_flush(struct conn *c)
{
    if (c->role == R_ECHO || c->role == R_CHURN) stamp_frames(c);
}

/* ------------------------------------------------------------------ usage */

static void usage(FILE *out)
{
    fputs("Usage: " PROG " MODE --url ws[s]://HOST:PORT[/PATH] [OPTIONS]\n"
          "\n"
          "Load generator for wshub and the reference peers (seed-go, node-ws). One thread,\n"
          "edge-triggered epoll, pre-masked frames, batched writes. Run it on its own core\n"
          "(taskset -c 1 ...) and the server on another.\n"
          "\n"
          "Modes:\n"
          "  echo    N connections to /echo, each keeping K messages in flight; every echo\n"
          "          is timed and answered with the next message. Reports messages/s\n"
          "          (echoes received per second in the measured window) and the round trip\n"
          "          p50/p90/p99/p99.9 in microseconds.\n"
          "  fanout  S subscribers (/ws?token=sub<i>) join rooms bench0..bench<R-1> (round-\n"
          "          robin); P publishers (/ws?token=pub<j>, not members) send\n"
          "          {\"type\":\"send_to_room\",\"payload\":{\"room_id\":\"bench<r>\",\"pub\":j,\n"
          "          \"n\":seq,\"t\":send_ns,\"content\":\"wsb:j:seq:send_ns:xxxx...\"}} to every\n"
          "          room in turn (the padding travels in content, the one payload member the\n"
          "          reference peers relay). First the joins settle: probes go out until every\n"
          "          subscriber has heard from every publisher. Subscribers find pub/n/t\n"
          "          wherever they are in the received JSON (or in the content marker),\n"
          "          and count deliveries, latency (now - t), and lost and duplicated\n"
          "          deliveries per publisher and room (from n); other messages are ignored.\n"
          "          Reports deliveries/s, published/s, latency percentiles, lost, duplicated.\n"
          "  idle    N connections to /echo, handshake completed, then silent for --hold\n"
          "          seconds. Reports the connect rate and, with --server-pid, the server's\n"
          "          VmRSS growth per connection (use a freshly started server).\n"
          "  churn   C new connections a second, each: connect, handshake, one message, its\n"
          "          echo, close handshake, TCP close. Reports completed connections/s,\n"
          "          failures, and the connect+echo+close latency percentiles.\n"
          "\n",
          out);
    fputs("Common options:\n"
          "  --url URL             ws://HOST:PORT[/PATH][?QUERY] (required). Without a path:\n"
          "                        /echo (echo, idle, churn) or /ws (fanout). Only this host\n"
          "                        is contacted.\n"
          "  -d, --duration S      measured window, seconds (default 10; not idle)\n"
          "  -w, --warmup S        warm-up before the window, seconds (default 2; not idle)\n"
          "  --server-pid PID      the server's process: its CPU time (utime+stime from\n"
          "                        /proc/PID/stat, all threads) over the window and its\n"
          "                        VmRSS are reported\n"
          "  --sources K           bind client sockets to 127.0.0.2 .. 127.0.0.(1+K) when the\n"
          "                        server is on 127.x.x.x, so that ports and 4-tuples do not\n"
          "                        run out (default 8; 0: let the kernel choose)\n"
          "  --max-pending N       connects + handshakes in progress at once (default 512);\n"
          "                        churn: connections in progress at once\n"
          "  --max-failures N      connection failures tolerated before the run fails\n"
          "                        (default 0)\n"
          "  --timeout S           limit for the connect phase, for settling, and for the\n"
          "                        fanout drain after the window (default 30)\n"
          "  --ca FILE             wss:// URLs: trust the CAs in this PEM file (default: the\n"
          "                        system's); the certificate and host are always verified\n"
          "  --json-only           print only the JSON line (implies --quiet)\n"
          "  -q, --quiet           no progress messages on stderr\n"
          "  -h, --help            this help\n"
          "  -V, --version         version\n"
          "\n",
          out);
    fputs("echo options:\n"
          "  -c, --connections N   connections (default 100)\n"
          "  -k, --inflight K      messages in flight per connection (default 1)\n"
          "  -s, --size B          payload bytes (default 32; text needs 16 or more: 16 hex\n"
          "                        digits of the send time, then 'x'; binary 8 or more)\n"
          "  --binary              binary messages (default text)\n"
          "\n",
          out);
    fputs("echo, fanout and idle option:\n"
          "  --deflate             offer permessage-deflate (client_no_context_takeover) and\n"
          "                        inflate the server's compressed messages (the server must\n"
          "                        answer server_no_context_takeover, as wshub always does);\n"
          "                        what the bench sends stays uncompressed\n"
          "\n",
          out);
    fputs("fanout options:\n"
          "  --subscribers S       subscriber connections (default 1000)\n"
          "  --publishers P        publisher connections (default 1)\n"
          "  --rooms R             rooms, subscribers spread round-robin (default 1)\n"
          "  -s, --size B          padding bytes per message (default 64)\n"
          "  --rate M              messages per second from all publishers together;\n"
          "                        0 = as fast as possible (default 0), limited by --window\n"
          "                        and --max-lag\n"
          "  --window W            rate 0: messages in flight per room, counted at the\n"
          "                        room's slowest subscriber (default 64; keep it under the\n"
          "                        server's per-connection queue, 256 in wshub and seed-go)\n"
          "  --max-lag D           rate 0: deliveries outstanding over all subscribers\n"
          "                        (default 50000)\n"
          "\n",
          out);
    fputs("idle options:\n"
          "  -c, --connections N   connections (default 1000, at most 19000: the open-files\n"
          "                        limit is 20000)\n"
          "  --hold S              seconds to hold them open before reading VmRSS (default 2)\n"
          "\n"
          "churn options:\n"
          "  --rate C              connections opened per second (default 500)\n"
          "  -s, --size B          message bytes (default 32)\n"
          "  --binary              binary message\n"
          "\n",
          out);
    fputs("Output: a human summary on stdout, then one JSON line, always last (tail -1):\n"
          "  {\"mode\", \"url\", \"params\":{...}, \"results\":{...}, \"server_cpu_s\",\n"
          "   \"server_cpu_per_msg_us\" (echo, fanout: per delivery) or\n"
          "   \"server_cpu_per_conn_us\" (idle: connect phase, churn), \"client_cpu_s\",\n"
          "   \"client_cpu_pct\", \"server_rss_kib\", \"ok\", \"error\"}\n"
          "  Latencies are in microseconds; server figures are null without --server-pid.\n"
          "\n"
          "Exit status: 0 success; 1 the run failed (connection failures over --max-failures,\n"
          "lost connections, lost or duplicated deliveries, no traffic, a mode that could\n"
          "not start, interrupted); 2 usage error.\n",
          out);
}

BENCH_PRINTF(1, 2) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    va_end(ap);
    return EXIT_USAGE;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

enum {
    OPT_URL = 256,
    OPT_BINARY,
    OPT_SUBS,
    OPT_PUBS,
    OPT_ROOMS,
    OPT_RATE,
    OPT_WINDOW,
    OPT_MAXLAG,
    OPT_SOURCES,
    OPT_HOLD,
    OPT_PID,
    OPT_JSON,
    OPT_MAXPEND,
    OPT_MAXFAIL,
    OPT_DEFLATE,
    OPT_TIMEOUT,
    OPT_CA,
};

struct opt_rule {
    int id;
    const char *name;
    unsigned modes;
};

static const struct opt_rule rules[] = {
    {'c', "--connections", F_ECHO | F_IDLE},
    {'k', "--inflight", F_ECHO},
    {'s', "--size", F_ECHO | F_FANOUT | F_CHURN},
    {OPT_BINARY, "--binary", F_ECHO | F_CHURN},
    {'d', "--duration", F_ECHO | F_FANOUT | F_CHURN},
    {'w', "--warmup", F_ECHO | F_FANOUT | F_CHURN},
    {OPT_SUBS, "--subscribers", F_FANOUT},
    {OPT_PUBS, "--publishers", F_FANOUT},
    {OPT_ROOMS, "--rooms", F_FANOUT},
    {OPT_RATE, "--rate", F_FANOUT | F_CHURN},
    {OPT_WINDOW, "--window", F_FANOUT},
    {OPT_MAXLAG, "--max-lag", F_FANOUT},
    {OPT_HOLD, "--hold", F_IDLE},
    {OPT_DEFLATE, "--deflate", F_ECHO | F_FANOUT | F_IDLE},
};

/* Adds the mode's default path when the URL names none. */
static bool url_with_default_path(const char *in, const char *def, char *out, size_t cap)
{
    const char *hs = strstr(in, "://");
    const char *h = hs ? hs + 3 : in;
    size_t hostlen = strcspn(h, "/?#");
    if (h[hostlen] == '/') return (size_t)snprintf(out, cap, "%s", in) < cap;
    return (size_t)snprintf(out, cap, "%.*s%s%s", (int)(h - in + (ptrdiff_t)hostlen), in, def,
                            h + hostlen) < cap;
}

static int parse_args(int argc, char **argv)
{
    if (argc < 2) return usage_error("no mode given (echo, fanout, idle or churn)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        exit(EXIT_OK);
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf(PROG " " WSHUB_VERSION "\n");
        exit(EXIT_OK);
    }
    int m = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(argv[1], mode_names[i])) m = i;
    if (m < 0) return usage_error("unknown mode \"%s\" (echo, fanout, idle or churn)", argv[1]);
    O.mode = (enum mode)m;

    /* defaults */
    O.connections = O.mode == M_IDLE ? 1000 : 100;
    O.inflight = 1;
    O.size = O.mode == M_FANOUT ? 64 : 32;
    O.duration = 10;
    O.warmup = 2;
    O.subscribers = 1000;
    O.publishers = 1;
    O.rooms = 1;
    O.rate = O.mode == M_CHURN ? 500 : 0;
    O.window = 64;
    O.max_lag = 50000;
    O.sources = 8;
    O.hold = 2;
    O.max_pending = 512;
    O.max_failures = 0;
    O.timeout = 30;
    const char *url = NULL;
    bool seen[OPT_TIMEOUT + 1] = {false};

    static const struct option longs[] = {
        {"url", required_argument, NULL, OPT_URL},
        {"connections", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'k'},
        {"size", required_argument, NULL, 's'},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"deflate", no_argument, NULL, OPT_DEFLATE},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"subscribers", required_argument, NULL, OPT_SUBS},
        {"publishers", required_argument, NULL, OPT_PUBS},
        {"rooms", required_argument, NULL, OPT_ROOMS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"max-lag", required_argument, NULL, OPT_MAXLAG},
        {"sources", required_argument, NULL, OPT_SOURCES},
        {"hold", required_argument, NULL, OPT_HOLD},
        {"server-pid", required_argument, NULL, OPT_PID},
        {"json-only", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"max-pending", required_argument, NULL, OPT_MAXPEND},
        {"max-failures", required_argument, NULL, OPT_MAXFAIL},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"ca", required_argument, NULL, OPT_CA},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:k:s:d:w:qhV", longs, NULL)) != -1) {
        if (opt >= 0 && opt <= OPT_TIMEOUT) seen[opt] = true;
        switch (opt) {
        case OPT_URL:
            url = optarg;
            break;
        case 'c':
            if (!parse_long(optarg, 1, 1000000, &O.connections))
                return usage_error("bad --connections \"%s\" (1 or more)", optarg);
            break;
        case 'k':
            if (!parse_long(optarg, 1, 65536, &O.inflight))
                return usage_error("bad --inflight \"%s\" (1..65536)", optarg);
            break;
        case 's':
            if (!parse_long(optarg, 0, MAX_SIZE, &O.size))
                return usage_error("bad --size \"%s\" (0..%d bytes)", optarg, MAX_SIZE);
            break;
        case OPT_BINARY:
            O.binary = true;
            break;
        case OPT_DEFLATE:
            O.deflate = true;
            break;
        case 'd':
            if (!parse_double(optarg, 0.001, 86400, &O.duration))
                return usage_error("bad --duration \"%s\" (seconds, over 0)", optarg);
            break;
        case 'w':
            if (!parse_double(optarg, 0, 3600, &O.warmup))
                return usage_error("bad --warmup \"%s\" (seconds, 0 or more)", optarg);
            break;
        case OPT_SUBS:
            if (!parse_long(optarg, 1, 1000000, &O.subscribers))
                return usage_error("bad --subscribers \"%s\" (1 or more)", optarg);
            break;
        case OPT_PUBS:
            if (!parse_long(optarg, 1, 10000, &O.publishers))
                return usage_error("bad --publishers \"%s\" (1..10000)", optarg);
            break;
        case OPT_ROOMS:
            if (!parse_long(optarg, 1, 1000000, &O.rooms))
                return usage_error("bad --rooms \"%s\" (1 or more)", optarg);
            break;
        case OPT_RATE:
            if (!parse_double(optarg, 0, 1e8, &O.rate))
                return usage_error("bad --rate \"%s\" (per second, 0 or more)", optarg);
            break;
        case OPT_WINDOW:
            if (!parse_long(optarg, 1, 1000000, &O.window))
                return usage_error("bad --window \"%s\" (1 or more)", optarg);
            break;
        case OPT_MAXLAG:
            if (!parse_long(optarg, 1, LONG_MAX / 2, &O.max_lag))
                return usage_error("bad --max-lag \"%s\" (1 or more)", optarg);
            break;
        case OPT_SOURCES:
            if (!parse_long(optarg, 0, 250, &O.sources))
                return usage_error("bad --sources \"%s\" (0..250)", optarg);
            break;
        case OPT_HOLD:
            if (!parse_double(optarg, 0, 86400, &O.hold))
                return usage_error("bad --hold \"%s\" (seconds, 0 or more)", optarg);
            break;
        case OPT_PID:
            if (!parse_long(optarg, 1, INT_MAX, &O.server_pid))
                return usage_error("bad --server-pid \"%s\"", optarg);
            break;
        case OPT_JSON:
            O.json_only = true;
            O.quiet = true;
            break;
        case 'q':
            O.quiet = true;
            break;
        case OPT_MAXPEND:
            if (!parse_long(optarg, 1, 100000, &O.max_pending))
                return usage_error("bad --max-pending \"%s\" (1 or more)", optarg);
            break;
        case OPT_MAXFAIL:
            if (!parse_long(optarg, 0, LONG_MAX / 2, &O.max_failures))
                return usage_error("bad --max-failures \"%s\" (0 or more)", optarg);
            break;
        case OPT_TIMEOUT:
            if (!parse_double(optarg, 0.1, 3600, &O.timeout))
                return usage_error("bad --timeout \"%s\" (seconds)", optarg);
            break;
        case OPT_CA:
            O.ca_file = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        case 'V':
            printf(PROG " " WSHUB_VERSION "\n");
            exit(EXIT_OK);
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default: {
            const char *o = argv[optind - 1];
            return usage_error("unknown option %s", o);
        }
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (seen[rules[i].id] && !(rules[i].modes & (1u << O.mode)))
            return usage_error("%s does not apply to %s mode", rules[i].name, mode_names[O.mode]);

    if (!url) return usage_error("--url is required");
    if (!url_with_default_path(url, O.mode == M_FANOUT ? "/ws" : "/echo", O.url, sizeof O.url))
        return usage_error("--url is too long");
    const char *why = NULL;
    if (wsc_url_parse(O.url, &g.url, &why) != 0)
        return usage_error("bad --url \"%s\": %s", url, why ? why : "invalid");
    if (O.ca_file && !g.url.tls) return usage_error("--ca applies to wss:// URLs only");
    if (g.url.tls) {
        char err[400];
        g.tls_ctx = wsc_tls_ctx_new(O.ca_file, err, sizeof err);
        if (!g.tls_ctx) return usage_error("%s", err);
    }

    if (O.mode == M_ECHO || O.mode == M_CHURN) {
        long min = O.binary ? 8 : 16;
        if (O.size < min)
            return usage_error("--size must be at least %ld for %s messages (they carry the send "
                               "time)",
                               min, O.binary ? "binary" : "text");
    }
    if (O.mode == M_ECHO &&
        (double)O.inflight * (double)(O.size + WS_MAX_HEADER) > 256.0 * 1024 * 1024)
        return usage_error("--inflight x --size is over 256 MiB per connection");
    if (O.mode == M_FANOUT && O.rooms > O.subscribers)
        return usage_error("--rooms (%ld) is more than --subscribers (%ld): a room would have no "
                           "member",
                           O.rooms, O.subscribers);
    if (O.mode == M_CHURN && O.rate <= 0) return usage_error("churn needs --rate above 0");
    if (O.mode == M_IDLE && O.connections > IDLE_MAX)
        return usage_error("idle: --connections %ld is over %d: the open-files limit is 20000 per "
                           "process (and the server needs one descriptor per connection too)",
                           O.connections, IDLE_MAX);

    /* descriptors: raise the soft limit to the hard one, then check */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        long need = O.mode == M_FANOUT  ? O.subscribers + O.publishers
                    : O.mode == M_CHURN ? O.max_pending
                                        : O.connections;
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need + FD_RESERVE > rl.rlim_cur)
            return usage_error(
                "%ld connections need more descriptors than the open-files limit "
                "(%llu) allows: at most %llu",
                need, (unsigned long long)rl.rlim_cur,
                (unsigned long long)(rl.rlim_cur > FD_RESERVE ? rl.rlim_cur - FD_RESERVE : 0));
    }
    if (O.server_pid) {
        double s;
        if (!proc_cpu_s(O.server_pid, &s))
            return usage_error("--server-pid %ld: cannot read /proc/%ld/stat", O.server_pid,
                               O.server_pid);
    }
    return EXIT_OK;
}

/* ------------------------------------------------------------------ main */

static bool resolve(void)
{
    char port[8];
    snprintf(port, sizeof port, "%u", g.url.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(g.url.host, port, &hints, &res);
    if (rc != 0 || !res) {
        note_error("cannot resolve %s: %s", g.url.host, gai_strerror(rc));
        return false;
    }
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    g.src_bind = false;
    if (g.addr.ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, &g.addr, sizeof sin);
        g.src_bind = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
    }
    return true;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc != EXIT_OK) return rc;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g.clk_tck = sysconf(_SC_CLK_TCK);
    if (g.clk_tck <= 0) g.clk_tck = 100;
    if (getrandom(g.masks, sizeof g.masks, 0) != (ssize_t)sizeof g.masks) {
        fprintf(stderr, PROG ": getrandom: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    g.rbuf = xcalloc(1, MAX_CARRY + RBUF_SIZE);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    if (!resolve()) {
        struct cpu_mark a;
        cpu_mark(&a);
        json_begin();
        jcat(",\"params\":{},\"results\":{}");
        report_common(&a, &a, 0, NULL, NULL, false);
        return EXIT_FAIL;
    }
    switch (O.mode) {
    case M_ECHO:
        rc = run_echo();
        break;
    case M_FANOUT:
        rc = run_fanout();
        break;
    case M_IDLE:
        rc = run_idle();
        break;
    case M_CHURN:
        rc = run_churn();
        break;
    }
    /* the process exits now: the kernel closes what is left */
    return rc;
}
