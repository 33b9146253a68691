/* WebSocket client (see wsclient.h). The protocol core is a small state machine over
 * two byte streams: the output queue (handshake request, then masked frames) and the
 * input, parsed first as an HTTP response head (by hand: status line and header
 * fields, reusing the request parser's header helpers for the checks) and then by a
 * ws_reader in client mode. The socket layer only moves bytes between a descriptor
 * and that core; its one piece of cleverness is to hand the reader whole frames when
 * they fit the read buffer, so the reader can deliver them in place without
 * gathering. */
#include "client/wsclient.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "client/wsc_tls.h"
#include "http/parser.h"
#include "ws/deflate.h"
#include "ws/handshake.h"
#include "ws/reader.h"
#include "ws/utf8.h"

#if defined(__GNUC__)
#define WSC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WSC_PRINTF(f, a)
#endif

#define DEFAULT_MAX_MESSAGE  (UINT64_C(64) << 20)
#define DEFAULT_READ_BUFFER  (64u << 10)
#define MIN_READ_BUFFER      1024u
#define DEFAULT_TIMEOUT_MS   10000
#define HS_HEAD_MAX          16384 /* bytes of a handshake response head */
#define HS_BODY_MAX          4096  /* bytes of a refused upgrade's body kept */
#define PONG_OUTPUT_LIMIT    65536 /* no auto-pong while this much output is unsent */
#define KEY_RAW              16
#define KEY_B64              24
#define MAX_SUBPROTOCOL_NAME 1024

struct wsc {
    enum wsc_state state;
    int result; /* once WSC_STATE_CLOSED: WSC_DONE or the error */
    bool opened;
    int fd;
    char host[WSC_MAX_HOST];
    uint16_t port;

    /* wss:// */
    bool tls;
    bool tls_want_write; /* OpenSSL waits for the socket to be writable */
    char *ca_file;
    SSL_CTX *tls_ctx;
    SSL *ssl;

    /* handshake */
    char accept[WS_ACCEPT_LEN + 1];
    char *offered; /* offered subprotocols: NUL-separated, ending with an empty name */
    char *subprotocol;
    char *hs;       /* response bytes (head, then a refused upgrade's body), or NULL */
    size_t hs_len;  /* bytes in hs */
    size_t hs_head; /* length of the head once complete, else 0 */
    size_t hs_body_want;
    bool hs_body_to_eof;
    int http_status;

    /* frames */
    struct ws_reader reader;
    bool deflate_offered;
    struct ws_deflate_params pmd; /* agreed permessage-deflate, read as a receiver */
    struct ws_deflate dfl;
    int deflate_err; /* close code for a compressed message that failed to inflate */
    size_t fragment_size;
    bool out_frag; /* a wsc_send_frame message is unfinished */
    uint8_t *out;  /* output queue: out[out_off..out_len) unsent */
    size_t out_off, out_len, out_cap;

    /* socket layer input */
    uint8_t *rbuf;
    size_t rbuf_size, rlen;
    uint64_t rskip; /* bytes of a frame already handed to the reader still to come */

    /* close */
    unsigned close_code;
    char close_reason[WS_MAX_CONTROL + 1];

    /* during wsc_feed / wsc_read */
    wsc_event_fn fn;
    void *ud;
    bool in_reader; /* inside ws_reader_feed: its buffers must not be freed */

    char *detail;
};

static void socket_finish(struct wsc *c);

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return false;
    return true;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

WSC_PRINTF(2, 3) static void set_detail(struct wsc *c, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    free(c->detail);
    c->detail = NULL;
    if (n < 0) return;
    c->detail = malloc((size_t)n + 1);
    if (!c->detail) return;
    if ((size_t)n < sizeof small) {
        memcpy(c->detail, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(c->detail, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
}

/* Ends the connection with result rc; the socket (if any) is left to the socket layer,
 * which closes it once it sees the state. The reader's buffers are released at once,
 * unless a reader callback is running (frames_feed releases them when it returns). */
static int finish(struct wsc *c, int rc)
{
    c->state = WSC_STATE_CLOSED;
    c->result = rc;
    c->out_frag = false;
    if (!c->in_reader) ws_reader_free(&c->reader);
    return rc;
}

WSC_PRINTF(3, 4) static int fail(struct wsc *c, int rc, const char *fmt, ...)
{
    if (c->state == WSC_STATE_CLOSED) return c->result;
    va_list ap;
    char buf[512];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    set_detail(c, "%s", buf);
    return finish(c, rc);
}

/* ---- random bytes: one getrandom call serves many frames ---- */

static _Thread_local uint8_t rnd_pool[256];
static _Thread_local size_t rnd_pos = sizeof rnd_pool;

static int rnd_take(uint8_t *out, size_t n)
{
    if (n > sizeof rnd_pool) return WSC_ERR_ARG;
    if (sizeof rnd_pool - rnd_pos < n) {
        size_t got = 0;
        while (got < sizeof rnd_pool) {
            ssize_t r = getrandom(rnd_pool + got, sizeof rnd_pool - got, 0);
            if (r < 0) {
                if (errno == EINTR) continue;
                return WSC_ERR_RANDOM;
            }
            got += (size_t)r;
        }
        rnd_pos = 0;
    }
    memcpy(out, rnd_pool + rnd_pos, n);
    rnd_pos += n;
    return 0;
}

/* ---- output queue ---- */

static size_t out_pending(const struct wsc *c)
{
    return c->out_len - c->out_off;
}

/* Makes room for n more bytes at out + out_len. */
static int out_reserve(struct wsc *c, size_t n)
{
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= n) return 0;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= n) return 0;
    }
    if (n > SIZE_MAX / 2 - c->out_len) return WSC_ERR_NOMEM;
    size_t want = c->out_cap ? c->out_cap * 2 : 256;
    if (want < c->out_len + n) want = c->out_len + n;
    uint8_t *nb = realloc(c->out, want);
    if (!nb) return WSC_ERR_NOMEM;
    c->out = nb;
    c->out_cap = want;
    return 0;
}

static int out_append(struct wsc *c, const void *p, size_t n)
{
    int rc = out_reserve(c, n);
    if (rc) return rc;
    if (n) memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static int out_str(struct wsc *c, const char *s)
{
    return out_append(c, s, strlen(s));
}

/* Appends one masked frame: header, then the payload masked in the queue. */
static int queue_frame(struct wsc *c, enum ws_opcode op, bool fin, const void *data, size_t len)
{
    uint8_t key[4], hdr[WS_MAX_HEADER];
    int rc = rnd_take(key, sizeof key);
    if (rc) return rc;
    size_t h = ws_frame_header(hdr, op, fin, false, len, key);
    if (len > SIZE_MAX / 2 - h) return WSC_ERR_NOMEM;
    rc = out_reserve(c, h + len);
    if (rc) return rc;
    uint8_t *p = c->out + c->out_len;
    memcpy(p, hdr, h);
    if (len) {
        memcpy(p + h, data, len);
        ws_mask(p + h, len, key, 0);
    }
    c->out_len += h + len;
    return 0;
}

static int queue_close(struct wsc *c, unsigned code, const char *reason, size_t rlen)
{
    uint8_t p[WS_MAX_CONTROL];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        if (rlen) memcpy(p + 2, reason, rlen);
        n += rlen;
    }
    return queue_frame(c, WS_OP_CLOSE, true, p, n);
}

const uint8_t *wsc_output(const struct wsc *c, size_t *len)
{
    *len = out_pending(c);
    return *len ? c->out + c->out_off : NULL;
}

void wsc_output_done(struct wsc *c, size_t n)
{
    size_t pending = out_pending(c);
    if (n > pending) n = pending;
    c->out_off += n;
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

/* ---- URLs ---- */

static bool host_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int url_err(const char **why, const char *text)
{
    if (why) *why = text;
    return WSC_ERR_ARG;
}

int wsc_url_parse(const char *url, struct wsc_url *out, const char **why)
{
    if (!url || !out) return url_err(why, "no URL");
    memset(out, 0, sizeof *out);
    bool tls = strncasecmp(url, "wss://", 6) == 0;
    if (!tls && strncasecmp(url, "ws://", 5) != 0)
        return url_err(why, "the URL must start with ws:// or wss://");
    out->tls = tls;
    const char *p = url + (tls ? 6 : 5);
    size_t alen = strcspn(p, "/?#");
    const char *auth = p, *aend = p + alen;
    if (memchr(auth, '@', alen)) return url_err(why, "user info (user@host) is not supported");

    const char *hs, *he, *rest;
    if (alen && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close) return url_err(why, "unterminated [IPv6] address");
        hs = auth + 1;
        he = close;
        rest = close + 1;
        size_t hl = (size_t)(he - hs);
        struct in6_addr a6;
        if (hl == 0 || hl >= WSC_MAX_HOST) return url_err(why, "bad [IPv6] address");
        memcpy(out->host, hs, hl);
        out->host[hl] = '\0';
        if (inet_pton(AF_INET6, out->host, &a6) != 1) return url_err(why, "bad [IPv6] address");
        out->ipv6 = true;
    } else {
        hs = auth;
        he = memchr(auth, ':', alen);
        if (!he) he = aend;
        rest = he;
        size_t hl = (size_t)(he - hs);
        if (hl == 0) return url_err(why, "no host in the URL");
        if (hl >= WSC_MAX_HOST) return url_err(why, "host name too long");
        for (size_t i = 0; i < hl; i++)
            if (!host_char((unsigned char)hs[i]))
                return url_err(why, "bad character in the host name");
        memcpy(out->host, hs, hl);
        out->host[hl] = '\0';
    }

    out->port = tls ? 443 : 80;
    if (rest < aend) {
        if (*rest != ':') return url_err(why, "unexpected text after the host");
        const char *ps = rest + 1;
        size_t pl = (size_t)(aend - ps);
        if (pl == 0) return url_err(why, "empty port");
        unsigned long v = 0;
        for (size_t i = 0; i < pl; i++) {
            if (ps[i] < '0' || ps[i] > '9' || pl > 5) return url_err(why, "bad port");
            v = v * 10 + (unsigned long)(ps[i] - '0');
        }
        if (v == 0 || v > 65535) return url_err(why, "port out of range (1-65535)");
        out->port = (uint16_t)v;
    }

    const char *path = aend;
    if (strchr(path, '#')) return url_err(why, "fragments (#) are not allowed in WebSocket URLs");
    size_t plen = strlen(path);
    for (size_t i = 0; i < plen; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return url_err(why, "bad character in the path (percent-encode it)");
    }
    size_t need = plen + (path[0] != '/' ? 1 : 0);
    if (need >= WSC_MAX_PATH) return url_err(why, "path too long");
    size_t o = 0;
    if (path[0] != '/') out->path[o++] = '/';
    memcpy(out->path + o, path, plen);
    out->path[o + plen] = '\0';
    return 0;
}

/* ---- creation ---- */

static int hdr_err(const char **why, const char *text)
{
    if (why) *why = text;
    return WSC_ERR_ARG;
}

int wsc_check_header(const char *line, const char **why)
{
    static const char *const reserved[] = {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    };
    if (!line) return hdr_err(why, "no header");
    const char *colon = strchr(line, ':');
    if (!colon) return hdr_err(why, "a header must look like \"Name: value\"");
    size_t nlen = (size_t)(colon - line);
    if (!is_token(line, nlen)) return hdr_err(why, "bad header name");
    for (const char *v = colon + 1; *v; v++) {
        unsigned char ch = (unsigned char)*v;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return hdr_err(why, "control character in the header value");
    }
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (http_slice_eq(line, nlen, reserved[i]))
            return hdr_err(why, "this header is set by the WebSocket handshake itself");
    return 0;
}

int wsc_check_subprotocol(const char *name, const char **why)
{
    if (!name || !*name) return hdr_err(why, "empty subprotocol name");
    size_t n = strlen(name);
    if (n > MAX_SUBPROTOCOL_NAME) return hdr_err(why, "subprotocol name too long");
    if (!is_token(name, n)) return hdr_err(why, "a subprotocol name must be an HTTP token");
    return 0;
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

static int build_request(struct wsc *c, const struct wsc_url *url, const struct wsc_options *opt,
                         const char *key)
{
    char line[WSC_MAX_HOST + 64];
    int rc = out_str(c, "GET ");
    if (!rc) rc = out_str(c, url->path);
    if (!rc) rc = out_str(c, " HTTP/1.1\r\n");
    bool own_host = false;
    for (const char *const *h = opt->headers; h && *h; h++)
        if (strncasecmp(*h, "host:", 5) == 0) own_host = true;
    if (!rc && !own_host) {
        char port[16] = "";
        if (url->port != (url->tls ? 443 : 80))
            snprintf(port, sizeof port, ":%u", (unsigned)url->port);
        snprintf(line, sizeof line, "Host: %s%s%s%s\r\n", url->ipv6 ? "[" : "", url->host,
                 url->ipv6 ? "]" : "", port);
        rc = out_str(c, line);
    }
    if (!rc) rc = out_str(c, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    if (!rc) rc = out_str(c, key);
    if (!rc) rc = out_str(c, "\r\nSec-WebSocket-Version: 13\r\n");
    if (!rc && c->offered) {
        rc = out_str(c, "Sec-WebSocket-Protocol: ");
        for (const char *s = c->offered; !rc && *s; s += strlen(s) + 1) {
            if (s != c->offered) rc = out_str(c, ", ");
            if (!rc) rc = out_str(c, s);
        }
        if (!rc) rc = out_str(c, "\r\n");
    }
    if (!rc && opt->deflate)
        rc = out_str(
            c, "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n");
    for (const char *const *h = opt->headers; !rc && h && *h; h++) {
        rc = out_str(c, *h);
        if (!rc) rc = out_str(c, "\r\n");
    }
    if (!rc) rc = out_str(c, "\r\n");
    return rc;
}

struct wsc *wsc_new(const struct wsc_url *url, const struct wsc_options *opt, int *err)
{
    static const struct wsc_options defaults;
    int dummy;
    if (!err) err = &dummy;
    *err = WSC_ERR_ARG;
    if (!url || !url->host[0] || url->path[0] != '/') return NULL;
    if (!opt) opt = &defaults;
    for (const char *const *h = opt->headers; h && *h; h++)
        if (wsc_check_header(*h, NULL) != 0) return NULL;
    size_t offered_len = 0;
    for (const char *const *s = opt->subprotocols; s && *s; s++) {
        if (wsc_check_subprotocol(*s, NULL) != 0) return NULL;
        offered_len += strlen(*s) + 1;
    }

    *err = WSC_ERR_NOMEM;
    struct wsc *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = -1;
    c->state = WSC_STATE_HANDSHAKE;
    memcpy(c->host, url->host, sizeof c->host);
    c->host[sizeof c->host - 1] = '\0';
    c->port = url->port;
    c->tls = url->tls;
    if (c->tls && opt->ca_file && !(c->ca_file = strdup(opt->ca_file))) {
        free(c);
        return NULL;
    }
    c->fragment_size = opt->fragment_size;
    c->rbuf_size = opt->read_buffer_size ? opt->read_buffer_size : DEFAULT_READ_BUFFER;
    if (c->rbuf_size < MIN_READ_BUFFER) c->rbuf_size = MIN_READ_BUFFER;
    ws_reader_init(&c->reader, opt->max_message_size ? opt->max_message_size : DEFAULT_MAX_MESSAGE,
                   WS_READER_CLIENT);
    c->deflate_offered = opt->deflate;

    if (offered_len) {
        c->offered = malloc(offered_len + 1);
        if (!c->offered) goto fail;
        size_t o = 0;
        for (const char *const *s = opt->subprotocols; *s; s++) {
            size_t n = strlen(*s) + 1;
            memcpy(c->offered + o, *s, n);
            o += n;
        }
        c->offered[o] = '\0';
    }

    uint8_t raw[KEY_RAW];
    char key[KEY_B64 + 1];
    if (rnd_take(raw, sizeof raw) != 0) {
        *err = WSC_ERR_RANDOM;
        goto fail;
    }
    base64(raw, sizeof raw, key);
    ws_accept_key(key, KEY_B64, c->accept);
    if (!c->accept[0]) goto fail; /* libcrypto could not compute SHA-1 */
    if (build_request(c, url, opt, key) != 0) goto fail;
    *err = 0;
    return c;
fail:
    wsc_free(c);
    return NULL;
}

void wsc_free(struct wsc *c)
{
    if (!c) return;
    wsc_tls_free(c->ssl);
    SSL_CTX_free(c->tls_ctx);
    free(c->ca_file);
    if (c->fd >= 0) close(c->fd);
    ws_reader_free(&c->reader);
    ws_deflate_conn_free(&c->dfl);
    free(c->offered);
    free(c->subprotocol);
    free(c->hs);
    free(c->out);
    free(c->rbuf);
    free(c->detail);
    free(c);
}

/* ---- events ---- */

static int emit(struct wsc *c, struct wsc_event *ev)
{
    if (!c->fn) return 0;
    int rc = c->fn(c->ud, ev);
    return rc < 0 ? rc : 0;
}

static int on_message(void *ud, enum ws_opcode op, bool rsv1, uint8_t *data, size_t len)
{
    struct wsc *c = ud;
    if (rsv1) { /* only possible once permessage-deflate was agreed */
        uint8_t *out;
        size_t n;
        int code =
            ws_deflate_inflate(&c->dfl, &c->pmd, data, len, c->reader.max_message_size, &out, &n);
        if (!code && op == WS_OP_TEXT && !ws_utf8_valid(out, n)) code = WS_CLOSE_BAD_DATA;
        if (code) {
            c->deflate_err = code; /* reported by frames_feed as a protocol error */
            return -1;
        }
        data = out;
        len = n;
    }
    struct wsc_event ev = {.type = WSC_EV_MESSAGE, .opcode = op, .data = data, .len = len};
    return emit(c, &ev);
}

static int on_control(void *ud, enum ws_opcode op, unsigned code, uint8_t *data, size_t len)
{
    struct wsc *c = ud;
    struct wsc_event ev = {.opcode = op, .data = data, .len = len};
    if (op == WS_OP_PING) {
        ev.type = WSC_EV_PING;
        /* After our close nothing more is sent; and a peer that pings faster than we
         * can write gets answered for the latest pings only (RFC 6455 5.5.3 allows). */
        if (c->state == WSC_STATE_OPEN && out_pending(c) < PONG_OUTPUT_LIMIT) {
            int rc = queue_frame(c, WS_OP_PONG, true, data, len);
            if (rc) return rc;
        }
        return emit(c, &ev);
    }
    if (op == WS_OP_PONG) {
        ev.type = WSC_EV_PONG;
        return emit(c, &ev);
    }
    /* close */
    ev.type = WSC_EV_CLOSE;
    ev.code = code;
    c->close_code = code;
    size_t n = len < WS_MAX_CONTROL ? len : WS_MAX_CONTROL;
    memcpy(c->close_reason, data, n);
    c->close_reason[n] = '\0';
    if (c->state == WSC_STATE_OPEN) {
        /* Echo the code (none for an empty close); a failure to queue it only costs the
         * server its answer, the connection ends either way. */
        (void)queue_close(c, code == WS_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    }
    finish(c, WSC_DONE);
    return emit(c, &ev);
}

static const struct ws_reader_callbacks reader_cb = {on_message, on_control};

static const char *close_code_text(int code)
{
    switch (code) {
    case WS_CLOSE_PROTOCOL:
        return "protocol error";
    case WS_CLOSE_BAD_DATA:
        return "invalid UTF-8 text";
    case WS_CLOSE_TOO_BIG:
        return "message too big";
    case WS_CLOSE_INTERNAL:
        return "out of memory";
    default:
        return "error";
    }
}

/* Hands frames to the reader. */
static int frames_feed(struct wsc *c, uint8_t *data, size_t len)
{
    if (c->state == WSC_STATE_CLOSED) return c->result;
    if (len == 0) return 0;
    c->in_reader = true;
    int rc = ws_reader_feed(&c->reader, data, len, &reader_cb, c);
    c->in_reader = false;
    if (rc < 0 && c->deflate_err) rc = c->deflate_err;
    if (rc > 0) {
        /* The reader found a protocol error: fail the connection with that code. */
        if (c->state == WSC_STATE_OPEN) (void)queue_close(c, (unsigned)rc, NULL, 0);
        return fail(c, WSC_ERR_PROTOCOL, "the server sent an invalid frame (%s): closing with %d",
                    close_code_text(rc), rc);
    }
    if (rc < 0) {
        /* A callback stopped (possibly the one reporting the server's close, after which
         * the state already reads closed): the stop is the result. */
        set_detail(c, "%s",
                   rc == WSC_ERR_NOMEM || rc == WSC_ERR_RANDOM ? wsc_strerror(rc)
                                                               : "stopped by the event callback");
        return finish(c, rc);
    }
    if (c->state != WSC_STATE_CLOSED) return 0;
    ws_reader_free(&c->reader);
    return c->result;
}

/* ---- handshake response ---- */

/* End of the head (just past the blank line) in b[from..len), or 0. Bare LF line ends
 * are accepted, as most clients do. */
static size_t head_end(const char *b, size_t from, size_t len)
{
    for (size_t i = from; i < len; i++) {
        if (b[i] != '\n') continue;
        if (i + 1 < len && b[i + 1] == '\n') return i + 2;
        if (i + 2 < len && b[i + 1] == '\r' && b[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Copies s[0..n) into out (cap bytes) as one printable line: control bytes become
 * spaces, runs of blanks and trailing blanks are dropped. */
static void printable(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == ' ') {
            space = o > 0;
            continue;
        }
        if (space && o + 2 < cap) out[o++] = ' ';
        space = false;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static int finish_status(struct wsc *c)
{
    size_t blen = c->hs_len - c->hs_head;
    c->hs[c->hs_len] = '\0';
    char reason[64] = "";
    const char *line = c->hs, *nl = memchr(c->hs, '\n', c->hs_head);
    if (nl && nl - line > 13) printable(reason, sizeof reason, line + 13, (size_t)(nl - line - 13));
    char body[HS_BODY_MAX + 1];
    printable(body, sizeof body, c->hs + c->hs_head, blen);
    return fail(c, WSC_ERR_STATUS, "HTTP %d%s%s%s%s", c->http_status, reason[0] ? " " : "", reason,
                body[0] ? ": " : " (no body)", body);
}

/* Parses the status line and header fields of hs[0..hs_head) into the header array of
 * req (only its headers are used). */
static int parse_head(struct wsc *c, struct http_request *req)
{
    const char *p = c->hs, *end = c->hs + c->hs_head;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t ll = (size_t)(nl - p);
    if (ll && p[ll - 1] == '\r') ll--;
    char shown[80];
    printable(shown, sizeof shown, p, ll);
    if (ll < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' ||
        p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (ll > 12 && p[12] != ' '))
        return fail(c, WSC_ERR_HTTP, "not an HTTP/1.1 response: \"%s\"", shown);
    c->http_status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    req->num_headers = 0;
    p = nl + 1;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        ll = (size_t)(nl - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (ll == 0) break; /* the blank line */
        if (is_ows(p[0])) return fail(c, WSC_ERR_HTTP, "folded header line in the response");
        const char *colon = memchr(p, ':', ll);
        if (!colon || !is_token(p, (size_t)(colon - p)))
            return fail(c, WSC_ERR_HTTP, "malformed header line in the response");
        const char *vs = colon + 1, *ve = p + ll;
        for (const char *q = vs; q < ve; q++) {
            unsigned char ch = (unsigned char)*q;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fail(c, WSC_ERR_HTTP, "control character in a response header");
        }
        while (vs < ve && is_ows(*vs))
            vs++;
        while (ve > vs && is_ows(ve[-1]))
            ve--;
        if (req->num_headers == HTTP_MAX_HEADERS)
            return fail(c, WSC_ERR_HTTP, "more than %d header fields in the response",
                        HTTP_MAX_HEADERS);
        struct http_header *h = &req->headers[req->num_headers++];
        h->name = p;
        h->name_len = (size_t)(colon - p);
        h->value = vs;
        h->value_len = (size_t)(ve - vs);
        p = nl + 1;
    }
    return 0;
}

static bool any_has_token(const struct http_request *req, const char *name, const char *token)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == nlen && http_slice_eq(h->name, nlen, name) &&
            http_token_list_has(h->value, h->value_len, token))
            return true;
    }
    return false;
}

static bool was_offered(const struct wsc *c, const char *s, size_t n)
{
    if (!c->offered) return false;
    for (const char *o = c->offered; *o; o += strlen(o) + 1)
        if (strlen(o) == n && memcmp(o, s, n) == 0) return true;
    return false;
}

/* Checks a 101 response (RFC 6455 section 4.1, the client's list of checks). */
static int validate_101(struct wsc *c, const struct http_request *req)
{
    if (!any_has_token(req, "upgrade", "websocket"))
        return fail(c, WSC_ERR_UPGRADE, "the 101 response has no \"Upgrade: websocket\"");
    if (!any_has_token(req, "connection", "upgrade"))
        return fail(c, WSC_ERR_CONNECTION, "the 101 response has no \"Connection: Upgrade\"");
    const struct http_header *a = http_header_find(req, "sec-websocket-accept");
    if (!a) return fail(c, WSC_ERR_ACCEPT, "the 101 response has no Sec-WebSocket-Accept");
    if (http_header_count(req, "sec-websocket-accept") != 1 || a->value_len != WS_ACCEPT_LEN ||
        memcmp(a->value, c->accept, WS_ACCEPT_LEN) != 0)
        return fail(c, WSC_ERR_ACCEPT, "wrong Sec-WebSocket-Accept (expected %s)", c->accept);
    const struct http_header *e = http_header_find(req, "sec-websocket-extensions");
    if (e && e->value_len) {
        /* The answer has the grammar of an offer. We offered client_no_context_takeover
         * and never compress, so only the server's side matters: a server that keeps
         * context gets this connection's own inflater, one that does not the thread's. */
        struct ws_deflate_params p;
        if (!c->deflate_offered || http_header_count(req, "sec-websocket-extensions") != 1 ||
            !ws_deflate_negotiate_value(e->value, e->value_len, &p))
            return fail(c, WSC_ERR_EXTENSION, "the server chose an extension that was not offered");
        c->pmd.flags = WS_DEFLATE_ON;
        if (p.flags & WS_DEFLATE_SERVER_NCT) c->pmd.flags |= WS_DEFLATE_CLIENT_NCT;
        c->pmd.client_wbits = p.server_wbits;
        c->reader.flags |= WS_READER_ALLOW_RSV1;
    }
    const struct http_header *sp = http_header_find(req, "sec-websocket-protocol");
    if (sp) {
        char shown[128];
        printable(shown, sizeof shown, sp->value, sp->value_len);
        if (http_header_count(req, "sec-websocket-protocol") != 1 || sp->value_len == 0 ||
            !was_offered(c, sp->value, sp->value_len))
            return fail(c, WSC_ERR_SUBPROTOCOL, "the server chose subprotocol \"%s\", which was %s",
                        shown, c->offered ? "not offered" : "not asked for (none was offered)");
        c->subprotocol = malloc(sp->value_len + 1);
        if (!c->subprotocol) return fail(c, WSC_ERR_NOMEM, "out of memory");
        memcpy(c->subprotocol, sp->value, sp->value_len);
        c->subprotocol[sp->value_len] = '\0';
    }
    return 0;
}

/* After the head: 101 opens the connection; anything else is a refusal whose body
 * (by Content-Length, else up to EOF) is collected to explain it. */
static int head_done(struct wsc *c)
{
    struct http_request *req = malloc(sizeof *req);
    if (!req) return fail(c, WSC_ERR_NOMEM, "out of memory");
    int rc = parse_head(c, req);
    if (rc == 0 && c->http_status == 101) {
        rc = validate_101(c, req);
        if (rc == 0) {
            free(c->hs);
            c->hs = NULL;
            c->hs_len = c->hs_head = 0;
            c->state = WSC_STATE_OPEN;
            c->opened = true;
        }
    } else if (rc == 0) {
        long long cl = http_content_length(req);
        bool has_cl = http_header_find(req, "content-length") != NULL;
        bool te = http_header_find(req, "transfer-encoding") != NULL;
        if (has_cl && cl >= 0 && !te) {
            c->hs_body_want = cl > HS_BODY_MAX ? HS_BODY_MAX : (size_t)cl;
        } else if (c->http_status < 200 || c->http_status == 204 || c->http_status == 304) {
            c->hs_body_want = 0;
        } else {
            c->hs_body_want = HS_BODY_MAX;
            c->hs_body_to_eof = true;
        }
    }
    free(req);
    return rc;
}

/* Consumes handshake response bytes from data[0..len): up to the end of the head for a
 * 101 (the rest is frames, *used tells where they start), everything for a refusal. */
static int hs_feed(struct wsc *c, const uint8_t *data, size_t len, size_t *used)
{
    *used = 0;
    if (!c->hs) {
        c->hs = malloc(HS_HEAD_MAX + HS_BODY_MAX + 1);
        if (!c->hs) return fail(c, WSC_ERR_NOMEM, "out of memory");
    }
    if (c->hs_head == 0) {
        size_t room = HS_HEAD_MAX - c->hs_len, from = c->hs_len > 2 ? c->hs_len - 2 : 0;
        size_t take = len < room ? len : room;
        memcpy(c->hs + c->hs_len, data, take);
        c->hs_len += take;
        size_t cmp = c->hs_len < 5 ? c->hs_len : 5;
        if (memcmp(c->hs, "HTTP/", cmp) != 0) {
            char shown[64];
            printable(shown, sizeof shown, c->hs, c->hs_len < 40 ? c->hs_len : 40);
            return fail(c, WSC_ERR_HTTP, "the server did not answer with HTTP: \"%s\"", shown);
        }
        size_t end = head_end(c->hs, from, c->hs_len);
        if (!end) {
            *used = len;
            if (c->hs_len == HS_HEAD_MAX)
                return fail(c, WSC_ERR_HTTP, "handshake response head over %d bytes", HS_HEAD_MAX);
            return 0;
        }
        *used = take - (c->hs_len - end);
        c->hs_len = c->hs_head = end;
        int rc = head_done(c);
        if (rc) return rc;
        if (c->state == WSC_STATE_OPEN) {
            struct wsc_event ev = {.type = WSC_EV_OPEN, .subprotocol = c->subprotocol};
            rc = emit(c, &ev);
            if (rc) return fail(c, rc, "stopped by the event callback");
            return 0;
        }
    }
    size_t have = c->hs_len - c->hs_head;
    size_t want = c->hs_body_want - have;
    size_t take = len - *used < want ? len - *used : want;
    memcpy(c->hs + c->hs_len, data + *used, take);
    c->hs_len += take;
    *used = len; /* bytes past the body (or past what is kept of it) are dropped */
    if (c->hs_len - c->hs_head == c->hs_body_want) return finish_status(c);
    return 0;
}

int wsc_feed(struct wsc *c, uint8_t *data, size_t len, wsc_event_fn fn, void *ud)
{
    if (c->state == WSC_STATE_CLOSED) return c->result;
    c->fn = fn;
    c->ud = ud;
    size_t used = 0;
    int rc = 0;
    if (c->state == WSC_STATE_HANDSHAKE) rc = hs_feed(c, data, len, &used);
    if (rc == 0 && c->state != WSC_STATE_HANDSHAKE) rc = frames_feed(c, data + used, len - used);
    c->fn = NULL;
    c->ud = NULL;
    return rc;
}

int wsc_feed_eof(struct wsc *c)
{
    if (c->state == WSC_STATE_CLOSED) return c->result;
    if (c->state == WSC_STATE_HANDSHAKE) {
        if (c->hs_head) return finish_status(c);
        return fail(c, WSC_ERR_CLOSED, "the server closed the connection %s",
                    c->hs_len ? "in the middle of the handshake response"
                              : "without answering the handshake");
    }
    return fail(c, WSC_ERR_CLOSED,
                "the server closed the connection without a close frame (1006 abnormal closure)");
}

/* ---- sending ---- */

static bool data_op(enum ws_opcode op)
{
    return op == WS_OP_TEXT || op == WS_OP_BINARY;
}

static bool control_op(enum ws_opcode op)
{
    return op == WS_OP_PING || op == WS_OP_PONG;
}

int wsc_send(struct wsc *c, enum ws_opcode op, const void *data, size_t len)
{
    if (!data_op(op) && !control_op(op)) return WSC_ERR_ARG;
    if (len && !data) return WSC_ERR_ARG;
    if (control_op(op)) {
        if (len > WS_MAX_CONTROL) return WSC_ERR_ARG;
        if (c->state != WSC_STATE_OPEN) return WSC_ERR_STATE;
        return queue_frame(c, op, true, data, len);
    }
    if (c->state != WSC_STATE_OPEN || c->out_frag) return WSC_ERR_STATE;
    size_t fs = c->fragment_size;
    if (fs == 0 || len <= fs) return queue_frame(c, op, true, data, len);
    /* Reserve for the whole message first so a failure cannot leave half a message
     * queued. */
    size_t frames = len / fs + 1;
    if (frames > (SIZE_MAX / 2 - len) / WS_MAX_HEADER) return WSC_ERR_NOMEM;
    int rc = out_reserve(c, len + frames * WS_MAX_HEADER);
    if (rc) return rc;
    const uint8_t *p = data;
    for (size_t off = 0; off < len; off += fs) {
        size_t n = len - off < fs ? len - off : fs;
        rc = queue_frame(c, off ? WS_OP_CONT : op, off + n == len, p + off, n);
        if (rc) return rc; /* only getrandom can fail here */
    }
    return 0;
}

int wsc_send_frame(struct wsc *c, enum ws_opcode op, const void *data, size_t len, bool fin)
{
    if (len && !data) return WSC_ERR_ARG;
    if (control_op(op)) {
        if (!fin) return WSC_ERR_ARG;
        return wsc_send(c, op, data, len);
    }
    if (!data_op(op) && op != WS_OP_CONT) return WSC_ERR_ARG;
    if (c->state != WSC_STATE_OPEN) return WSC_ERR_STATE;
    if ((op == WS_OP_CONT) != c->out_frag) return WSC_ERR_STATE;
    int rc = queue_frame(c, op, fin, data, len);
    if (rc == 0) c->out_frag = !fin;
    return rc;
}

int wsc_close(struct wsc *c, unsigned code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    if (code && !ws_close_code_valid(code)) return WSC_ERR_ARG;
    if (rlen &&
        (!code || rlen > WS_MAX_CONTROL - 2 || !ws_utf8_valid((const uint8_t *)reason, rlen)))
        return WSC_ERR_ARG;
    if (c->state == WSC_STATE_HANDSHAKE) {
        c->out_off = c->out_len = 0;
        finish(c, WSC_DONE);
        socket_finish(c);
        return 0;
    }
    if (c->state != WSC_STATE_OPEN) return WSC_ERR_STATE;
    int rc = queue_close(c, code, reason, rlen);
    if (rc) return rc;
    c->state = WSC_STATE_CLOSING;
    c->out_frag = false;
    return 0;
}

/* ---- accessors ---- */

enum wsc_state wsc_state(const struct wsc *c)
{
    return c->state;
}

const char *wsc_subprotocol(const struct wsc *c)
{
    return c->subprotocol;
}

unsigned wsc_close_code(const struct wsc *c)
{
    return c->close_code;
}

const char *wsc_close_reason(const struct wsc *c)
{
    return c->close_reason;
}

int wsc_http_status(const struct wsc *c)
{
    return c->http_status;
}

const char *wsc_http_body(const struct wsc *c, size_t *len)
{
    if (!c->hs || !c->hs_head || c->http_status == 101 || c->hs_len == c->hs_head) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = c->hs_len - c->hs_head;
    c->hs[c->hs_len] = '\0';
    return c->hs + c->hs_head;
}

const char *wsc_error_detail(const struct wsc *c)
{
    if (c->state != WSC_STATE_CLOSED || c->result >= 0) return "";
    return c->detail ? c->detail : wsc_strerror(c->result);
}

const char *wsc_strerror(int err)
{
    switch (err) {
    case WSC_OK:
        return "success";
    case WSC_DONE:
        return "connection closed normally";
    case WSC_ERR_ARG:
        return "invalid argument";
    case WSC_ERR_NOMEM:
        return "out of memory";
    case WSC_ERR_RANDOM:
        return "no random bytes (getrandom failed)";
    case WSC_ERR_STATE:
        return "not allowed in this connection state";
    case WSC_ERR_RESOLVE:
        return "host name did not resolve";
    case WSC_ERR_CONNECT:
        return "cannot connect";
    case WSC_ERR_TIMEOUT:
        return "timed out";
    case WSC_ERR_IO:
        return "socket error";
    case WSC_ERR_CLOSED:
        return "connection closed without a close handshake";
    case WSC_ERR_HTTP:
        return "malformed handshake response";
    case WSC_ERR_STATUS:
        return "the server refused the upgrade";
    case WSC_ERR_UPGRADE:
        return "handshake response without Upgrade: websocket";
    case WSC_ERR_CONNECTION:
        return "handshake response without Connection: Upgrade";
    case WSC_ERR_ACCEPT:
        return "wrong or missing Sec-WebSocket-Accept";
    case WSC_ERR_SUBPROTOCOL:
        return "the server chose a subprotocol that was not offered";
    case WSC_ERR_EXTENSION:
        return "the server chose an extension that was not offered";
    case WSC_ERR_PROTOCOL:
        return "the server broke the WebSocket protocol";
    case WSC_ERR_TLS:
        return "TLS handshake or certificate verification failed";
    default:
        return "unknown error";
    }
}

/* ---- socket layer ---- */

/* send(2)/recv(2), through TLS for wss://. */
static ssize_t sock_send(struct wsc *c, const void *p, size_t n)
{
    if (c->ssl) return wsc_tls_send(c->ssl, p, n, &c->tls_want_write);
    return send(c->fd, p, n, MSG_NOSIGNAL);
}

static ssize_t sock_recv(struct wsc *c, void *p, size_t n)
{
    if (c->ssl) return wsc_tls_recv(c->ssl, p, n, &c->tls_want_write);
    return recv(c->fd, p, n, 0);
}

/* Closes the socket of a finished connection after one last non-blocking attempt to
 * send what is queued (our close frame). */
static void socket_finish(struct wsc *c)
{
    if (c->fd < 0) return;
    while (out_pending(c)) {
        ssize_t n = sock_send(c, c->out + c->out_off, out_pending(c));
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    c->out_off = c->out_len = 0;
    wsc_tls_free(c->ssl);
    c->ssl = NULL;
    c->tls_want_write = false;
    close(c->fd);
    c->fd = -1;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = 0;
}

static int attach_fd(struct wsc *c, int fd)
{
    if (fd < 0) return WSC_ERR_ARG;
    if (c->fd >= 0 || c->state == WSC_STATE_CLOSED) return WSC_ERR_STATE;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return WSC_ERR_ARG;
    if (!c->rbuf) {
        c->rbuf = malloc(c->rbuf_size);
        if (!c->rbuf) return WSC_ERR_NOMEM;
    }
    c->fd = fd;
    return 0;
}

int wsc_attach(struct wsc *c, int fd)
{
    if (c->tls) return WSC_ERR_ARG; /* the TLS handshake is wsc_connect's */
    return attach_fd(c, fd);
}

int wsc_fd(const struct wsc *c)
{
    return c->fd;
}

int wsc_want_write(const struct wsc *c)
{
    return out_pending(c) > 0 || c->tls_want_write;
}

int wsc_flush(struct wsc *c)
{
    if (c->fd < 0) return c->state == WSC_STATE_CLOSED ? c->result : WSC_ERR_STATE;
    if (c->state == WSC_STATE_CLOSED) {
        socket_finish(c);
        return c->result;
    }
    while (out_pending(c)) {
        ssize_t n = sock_send(c, c->out + c->out_off, out_pending(c));
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        } else {
            int rc = fail(c, WSC_ERR_IO, "write to the server failed: %s",
                          n < 0 ? strerror(errno) : "no progress");
            socket_finish(c);
            return rc;
        }
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* Size of the frame starting at p[0..n) (header and payload), or 0 while its length
 * field is incomplete. Saturates instead of wrapping for absurd lengths (the reader
 * refuses those from the header). */
static uint64_t frame_total(const uint8_t *p, size_t n)
{
    if (n < 2) return 0;
    unsigned len7 = p[1] & 0x7Fu;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    if (n < 2 + ext) return 0;
    uint64_t len = len7;
    if (ext) {
        len = 0;
        for (size_t i = 0; i < ext; i++)
            len = len << 8 | p[2 + i];
    }
    uint64_t hdr = 2 + ext + ((p[1] & 0x80u) ? 4 : 0);
    return len > UINT64_MAX - hdr ? UINT64_MAX : len + hdr;
}

/* Feeds rbuf[0..rlen): the handshake part, then whole frames; a trailing partial frame
 * that fits the buffer waits there for its rest, a bigger one is streamed. */
static int process_input(struct wsc *c)
{
    size_t pos = 0;
    int rc;
    if (c->state == WSC_STATE_HANDSHAKE) {
        rc = hs_feed(c, c->rbuf, c->rlen, &pos);
        if (rc || c->state != WSC_STATE_OPEN) {
            c->rlen = 0;
            return rc;
        }
    }
    if (c->rskip) {
        size_t k = c->rlen - pos < c->rskip ? c->rlen - pos : (size_t)c->rskip;
        rc = frames_feed(c, c->rbuf + pos, k);
        c->rskip -= k;
        pos += k;
        if (rc) {
            c->rlen = 0;
            return rc;
        }
    }
    size_t end = pos;
    for (;;) {
        uint64_t t = frame_total(c->rbuf + end, c->rlen - end);
        if (t == 0 || t > c->rlen - end) break;
        end += (size_t)t;
    }
    rc = frames_feed(c, c->rbuf + pos, end - pos);
    size_t tail = c->rlen - end;
    if (rc == 0 && tail) {
        uint64_t t = frame_total(c->rbuf + end, tail);
        if (t > c->rbuf_size) {
            rc = frames_feed(c, c->rbuf + end, tail);
            c->rskip = t - tail;
            tail = 0;
        } else {
            memmove(c->rbuf, c->rbuf + end, tail);
        }
    }
    c->rlen = rc ? 0 : tail;
    return rc;
}

int wsc_read(struct wsc *c, wsc_event_fn fn, void *ud)
{
    if (c->fd < 0) return c->state == WSC_STATE_CLOSED ? c->result : WSC_ERR_STATE;
    c->fn = fn;
    c->ud = ud;
    while (c->state != WSC_STATE_CLOSED) {
        ssize_t n = sock_recv(c, c->rbuf + c->rlen, c->rbuf_size - c->rlen);
        if (n > 0) {
            c->rlen += (size_t)n;
            process_input(c);
        } else if (n == 0) {
            wsc_feed_eof(c);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            fail(c, WSC_ERR_IO, "read from the server failed: %s", strerror(errno));
        }
    }
    c->fn = NULL;
    c->ud = NULL;
    if (c->state == WSC_STATE_CLOSED) {
        socket_finish(c);
        return c->result;
    }
    int rc = wsc_flush(c);
    return rc < 0 ? rc : 0;
}

int wsc_poll(struct wsc *c, int timeout_ms, wsc_event_fn fn, void *ud)
{
    if (c->fd < 0) return c->state == WSC_STATE_CLOSED ? c->result : WSC_ERR_STATE;
    if (c->state == WSC_STATE_CLOSED) {
        socket_finish(c);
        return c->result;
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    if (wsc_want_write(c)) pfd.events |= POLLOUT;
    int n = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        int rc = fail(c, WSC_ERR_IO, "poll failed: %s", strerror(errno));
        socket_finish(c);
        return rc;
    }
    if (n == 0) return 0;
    if (pfd.revents & POLLOUT) {
        int rc = wsc_flush(c);
        if (rc < 0) return rc;
    }
    /* A TLS read that had to write first (a key update) goes on once writable. */
    bool tls_read = c->ssl && c->tls_want_write && !out_pending(c) && (pfd.revents & POLLOUT);
    if (tls_read || (pfd.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
        return wsc_read(c, fn, ud);
    return 0;
}

static void close_keep_errno(int fd)
{
    int e = errno;
    close(fd);
    errno = e;
}

/* Connects to one address within the deadline. Returns the socket or -1 with errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS && errno != EINTR) goto fail;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            goto fail;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto fail;
        if (n == 0) continue;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) goto fail;
        if (soerr == 0) return fd;
        errno = soerr;
        goto fail;
    }
fail:
    close_keep_errno(fd);
    return -1;
}

static int tcp_connect(struct wsc *c, int64_t deadline, int timeout_ms)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)c->port);
    int gai = getaddrinfo(c->host, port, &hints, &res);
    if (gai != 0)
        return fail(c, WSC_ERR_RESOLVE, "cannot resolve %s: %s", c->host,
                    gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    int fd = -1, err = 0;
    char addr[INET6_ADDRSTRLEN] = "";
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST);
        fd = connect_one(ai, deadline);
        if (fd < 0) err = errno;
        if (fd < 0 && err == ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (err == ETIMEDOUT)
            return fail(c, WSC_ERR_TIMEOUT, "connect to %s port %u timed out after %d ms", addr,
                        (unsigned)c->port, timeout_ms);
        return fail(c, WSC_ERR_CONNECT, "cannot connect to %s port %u: %s", addr, (unsigned)c->port,
                    strerror(err));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = attach_fd(c, fd);
    if (rc) {
        close(fd);
        return fail(c, rc, "%s", wsc_strerror(rc));
    }
    return 0;
}

/* The TLS handshake on the connected socket, within the deadline. */
static int tls_connect(struct wsc *c, int64_t deadline, int timeout_ms)
{
    char err[400];
    if (!c->tls_ctx && !(c->tls_ctx = wsc_tls_ctx_new(c->ca_file, err, sizeof err))) goto fail;
    c->ssl = wsc_tls_new(c->tls_ctx, c->fd, c->host, err, sizeof err);
    if (!c->ssl) goto fail;
    for (;;) {
        int r = wsc_tls_handshake(c->ssl, &c->tls_want_write, err, sizeof err);
        if (r > 0) return 0;
        if (r < 0) goto fail;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            int rc = fail(c, WSC_ERR_TIMEOUT, "TLS handshake with %s port %u timed out after %d ms",
                          c->host, (unsigned)c->port, timeout_ms);
            socket_finish(c);
            return rc;
        }
        struct pollfd pfd = {.fd = c->fd, .events = c->tls_want_write ? POLLOUT : POLLIN};
        if (poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left) < 0 && errno != EINTR) {
            snprintf(err, sizeof err, "poll failed: %s", strerror(errno));
            goto fail;
        }
    }
fail:;
    int rc = fail(c, WSC_ERR_TLS, "TLS with %s port %u: %s", c->host, (unsigned)c->port, err);
    socket_finish(c);
    return rc;
}

int wsc_connect(struct wsc *c, int timeout_ms, wsc_event_fn fn, void *ud)
{
    if (c->fd >= 0 || c->state != WSC_STATE_HANDSHAKE) return WSC_ERR_STATE;
    if (timeout_ms <= 0) timeout_ms = DEFAULT_TIMEOUT_MS;
    int64_t deadline = now_ms() + timeout_ms;
    int rc = tcp_connect(c, deadline, timeout_ms);
    if (!rc && c->tls) rc = tls_connect(c, deadline, timeout_ms);
    if (rc) return rc;
    while (c->state == WSC_STATE_HANDSHAKE) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            if (c->hs_head)
                finish_status(c); /* a refusal whose body did not arrive in time */
            else
                fail(c, WSC_ERR_TIMEOUT, "no handshake response within %d ms", timeout_ms);
            socket_finish(c);
            break;
        }
        rc = wsc_poll(c, (int)left, fn, ud);
        if (rc < 0) break;
    }
    return c->opened ? 0 : c->result;
}
