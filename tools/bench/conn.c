/* wshub-bench connections: one slot per connection, non-blocking sockets registered
 * once (edge-triggered) in one epoll set, the handshake through wsclient's protocol
 * core (then freed), frames parsed in place from the shared read buffer
 * (bench_wire), one output buffer per connection written with one send() per batch,
 * and the loop and connect/close phases every mode uses. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "ws/deflate.h"

#include "bench.h"

BENCH_PRINTF(1, 2) void progress(const char *fmt, ...)
{
    if (O.quiet || O.json_only) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

BENCH_PRINTF(1, 2) void note_error(const char *fmt, ...)
{
    if (g.first_error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.first_error, sizeof g.first_error, fmt, ap);
    va_end(ap);
    if (!O.quiet && !O.json_only) fprintf(stderr, PROG ": %s\n", g.first_error);
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(EXIT_FAIL);
    }
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q) {
        fprintf(stderr, PROG ": out of memory\n");
        exit(EXIT_FAIL);
    }
    return q;
}

/* ---- low-level connection handling ---- */

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

BENCH_PRINTF(2, 3) void conn_fail(struct conn *c, const char *fmt, ...)
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

bool out_reserve(struct conn *c, size_t need)
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
bool conn_send_queued(struct conn *c)
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

/* A fresh masking key for every frame (RFC 6455, 5.3), from xorshift64* (Vigna):
 * unpredictable enough for a load generator, which has no script to defend against,
 * and a few cycles instead of a system call. */
void next_mask(uint8_t mask[4])
{
    uint64_t x = g.mask_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g.mask_rng = x;
    uint32_t m = (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
    memcpy(mask, &m, 4);
}

/* Queues a control frame (ping/pong/close payloads are at most 125 bytes). */
static void conn_queue_control(struct conn *c, enum ws_opcode op, const uint8_t *data, size_t len)
{
    if (len > WS_MAX_CONTROL) len = WS_MAX_CONTROL;
    if (!out_reserve(c, WS_MAX_HEADER + len)) return; /* full of data: drop the pong */
    mode_before_flush(c); /* data frames queued so far get their send time now */
    uint8_t mask[4];
    next_mask(mask);
    uint8_t *dst = c->out + c->out_len;
    size_t hl = ws_frame_header(dst, op, true, false, len, mask);
    if (len) memcpy(dst + hl, data, len);
    ws_mask(dst + hl, len, mask, 0);
    c->out_len += (uint32_t)(hl + len);
    c->stamp_from = c->out_len;
}

/* Starts the closing handshake: close frame with code (0: none). */
void conn_send_close(struct conn *c, unsigned code)
{
    if (c->sent_close || c->state != CS_OPEN) return;
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    conn_queue_control(c, WS_OP_CLOSE, p, code ? 2 : 0);
    c->sent_close = true;
    c->state = CS_CLOSING;
    conn_send_queued(c);
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
         * of plain frames: it sees a copy of the header with the bit cleared. */
        const uint8_t *h = data + off;
        size_t hn = len - off < 10 ? len - off : 10;
        uint8_t hdr[10];
        bool rsv1 = O.deflate && (h[0] & 0x40u) &&
                    ((h[0] & 0x0Fu) == WS_OP_TEXT || (h[0] & 0x0Fu) == WS_OP_BINARY);
        if (rsv1) {
            memcpy(hdr, h, hn);
            hdr[0] &= (uint8_t)~0x40u;
            h = hdr;
        }
        int r = bench_wire_header(h, hn, &f);
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
        if (c->out_len > c->out_off && !conn_send_queued(c)) return;
        /* A short read drained the socket: with edge-triggered epoll any later data
         * raises a new event, so skip the read that would only say EAGAIN. Not under
         * TLS: OpenSSL may hold records already read. */
        if ((size_t)n < RBUF_SIZE && !hup && !c->ssl) break;
    }
    if (c->out_len > c->out_off) conn_send_queued(c);
}

static void conn_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_FREE || c->state == CS_CLOSED) return;
    if (c->state == CS_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        /* A failed connect raises EPOLLERR (and HUP); writable alone means connected, so
         * the getsockopt that says why is only made for a failure. */
        if (ev & (EPOLLERR | EPOLLHUP)) {
            int err = 0;
            socklen_t el = sizeof err;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
            conn_fail(c, "connect: %s", strerror(err ? err : ECONNRESET));
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
            if (!conn_send_queued(c)) return;
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
        if (!conn_send_queued(c)) return;
        ev |= EPOLLIN; /* the 101 may already be in OpenSSL's buffer */
    } else if (ev & EPOLLOUT) {
        c->writable = true;
        if (!conn_send_queued(c)) return;
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
void conn_start(struct conn *c, size_t seq, const char *token_prefix)
{
    static struct wsc_url tu; /* big (9 KiB): not on the stack, copied only for a token */
    const struct wsc_url *u = &g.url;
    c->fd = -1;
    c->state = CS_CONNECTING;
    c->writable = false;
    c->sent_close = c->got_close = c->in_frag = c->churn_echoed = false;
    c->carry_len = 0;
    c->out_off = c->out_len = c->stamp_from = 0;
    c->outstanding = 0;
    c->t_start = g.now ? g.now : now_ns();
    g.pending++;

    if (token_prefix) {
        tu = g.url;
        if (!token_path(tu.path, sizeof tu.path, token_prefix, c->id)) {
            conn_fail(c, "the URL's path is too long to add a token");
            return;
        }
        u = &tu;
    }
    int err = 0;
    const struct wsc_options wo = {.deflate = O.deflate};
    c->wsc = wsc_new(u, &wo, &err);
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
    /* Nagle only holds back data sent while earlier data is unacknowledged: an idle
     * connection sends its request and, much later, a close frame, so it goes without. */
    if (c->role != R_IDLE) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
    struct sockaddr_storage to = g.addr;
    if (g.nspread > 0 && c->role == R_SUB) { /* --spread-ports: this room's share of a node */
        uint16_t port = htons(g.spread_port[(c->id / (size_t)O.rooms) % g.nspread]);
        if (to.ss_family == AF_INET)
            ((struct sockaddr_in *)&to)->sin_port = port;
        else
            ((struct sockaddr_in6 *)&to)->sin6_port = port;
    }
    if (connect(fd, (struct sockaddr *)&to, g.addrlen) < 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect: %s", strerror(errno));
        return;
    }
}

/* One turn of the event loop: waits until an event or deadline (absolute ns). */
void loop_once(int64_t deadline)
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
bool connect_all(size_t first, size_t count, token_fn tok, int64_t deadline)
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
void close_all(void)
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
