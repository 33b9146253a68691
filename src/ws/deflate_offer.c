/* permessage-deflate negotiation (RFC 7692 section 7.1) over the grammar of RFC 6455
 * section 9.1: offers separated by commas, each a token followed by ";"-separated
 * parameters whose values are tokens or quoted strings. A broken offer (bad syntax,
 * an unknown or repeated parameter, a value out of range) is only that offer's
 * problem: the scan skips to the next top-level comma and goes on, because a client
 * may list a fallback offer after one the server cannot take. Nothing is allocated;
 * a quoted value is unescaped into a small stack buffer. */
#include <stdio.h>
#include <string.h>

#include "ws/deflate.h"

#define VAL_MAX 8 /* longest parameter value we need to hold ("15" plus slack) */

enum { P_SNCT = 1, P_CNCT = 2, P_SMWB = 4, P_CMWB = 8 };

struct scan {
    const char *p, *end;
};

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

static size_t token(struct scan *s, const char **start)
{
    *start = s->p;
    while (s->p < s->end && is_tchar((unsigned char)*s->p))
        s->p++;
    return (size_t)(s->p - *start);
}

/* Moves past the rest of a broken offer: up to the next comma outside quotes. */
static void skip_offer(struct scan *s)
{
    bool quoted = false;
    while (s->p < s->end) {
        char c = *s->p;
        if (quoted && c == '\\' && s->p + 1 < s->end) {
            s->p += 2;
            continue;
        }
        if (c == '"') quoted = !quoted;
        if (c == ',' && !quoted) return;
        s->p++;
    }
}

static bool name_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && http_slice_eq(s, n, lit);
}

/* A parameter value: a token, or a quoted string whose unescaped content must itself
 * be a token (RFC 6455 section 9.1). The value is always consumed whole, so the scan
 * stays in step with the quotes. Returns its length in val (NUL-terminated), -1 on a
 * syntax error (unterminated quote, no value), or -2 for a well-formed value that no
 * parameter we know could take (not a token inside the quotes, or too long). */
static int value(struct scan *s, char val[VAL_MAX + 1])
{
    size_t n = 0;
    bool bad = false;
    if (s->p < s->end && *s->p == '"') {
        s->p++;
        for (;;) {
            if (s->p >= s->end) return -1;
            char c = *s->p++;
            if (c == '"') break;
            if (c == '\\') {
                if (s->p >= s->end) return -1;
                c = *s->p++;
            }
            if (!is_tchar((unsigned char)c) || n >= VAL_MAX)
                bad = true;
            else
                val[n++] = c;
        }
        if (n == 0) bad = true;
    } else {
        const char *t;
        size_t tl = token(s, &t);
        if (tl == 0) return -1;
        if (tl > VAL_MAX) {
            bad = true;
        } else {
            memcpy(val, t, tl);
            n = tl;
        }
    }
    val[n] = '\0';
    return bad ? -2 : (int)n;
}

/* Window bits: a decimal 8..15 without leading zeros (RFC 7692 section 7.1.2). */
static int window_bits(const char *v)
{
    if (v[0] == '8' && v[1] == '\0') return 8;
    if (v[0] == '9' && v[1] == '\0') return 9;
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0') return 10 + (v[1] - '0');
    return -1;
}

/* Parses the parameters of one permessage-deflate offer (s at the first ';' or the
 * end of the offer). Returns 1 when acceptable (p filled), 0 when not, -1 on bad
 * syntax (the caller skips the rest). */
static int offer_params(struct scan *s, struct ws_deflate_params *p)
{
    unsigned seen = 0;
    int smwb = 0, cmwb = 0; /* 0: absent; -1: client_max_window_bits with no value */
    bool ok = true;
    for (;;) {
        skip_ows(s);
        if (s->p >= s->end || *s->p == ',') break;
        if (*s->p != ';') return -1;
        s->p++;
        skip_ows(s);
        const char *name;
        size_t nl = token(s, &name);
        if (nl == 0) return -1;
        skip_ows(s);
        char val[VAL_MAX + 1];
        int vl = 0;
        if (s->p < s->end && *s->p == '=') {
            s->p++;
            skip_ows(s);
            vl = value(s, val);
            if (vl == -1) return -1;
            if (vl == -2) {
                ok = false;
                vl = 1;
                val[0] = '\0';
            }
        }
        unsigned bit;
        if (name_is(name, nl, "server_no_context_takeover")) {
            bit = P_SNCT;
            ok = ok && vl == 0;
        } else if (name_is(name, nl, "client_no_context_takeover")) {
            bit = P_CNCT;
            ok = ok && vl == 0;
        } else if (name_is(name, nl, "server_max_window_bits")) {
            bit = P_SMWB;
            smwb = vl ? window_bits(val) : -1;
            /* A value is required here, and zlib has no raw 8-bit window. */
            ok = ok && smwb >= 9;
        } else if (name_is(name, nl, "client_max_window_bits")) {
            bit = P_CMWB;
            cmwb = vl ? window_bits(val) : -1;
            ok = ok && (vl == 0 || cmwb >= 8);
        } else {
            bit = 0;
            ok = false; /* unknown parameter: RFC 7692 section 7.1 */
        }
        if (seen & bit) ok = false; /* repeated parameter */
        seen |= bit;
    }
    if (!ok) return 0;

    memset(p, 0, sizeof *p);
    p->flags = WS_DEFLATE_ON;
    p->server_wbits = 15;
    p->client_wbits = 15;
    if (seen & P_SNCT) p->flags |= WS_DEFLATE_SERVER_NCT;
    if (seen & P_SMWB) {
        p->flags |= WS_DEFLATE_SERVER_BITS;
        p->server_wbits = (uint8_t)smwb;
    }
    if (seen & P_CNCT) {
        /* The shared per-thread inflater takes any window: no need to limit it. */
        p->flags |= WS_DEFLATE_CLIENT_NCT;
        if (cmwb > 0) p->client_wbits = (uint8_t)cmwb;
    } else if (seen & P_CMWB) {
        /* This connection will own an inflater: ask for a smaller window. */
        int bits = cmwb > 0 ? cmwb : 15;
        if (bits > WS_DEFLATE_CLIENT_WBITS) bits = WS_DEFLATE_CLIENT_WBITS;
        p->flags |= WS_DEFLATE_CLIENT_BITS;
        p->client_wbits = (uint8_t)bits;
    }
    return 1;
}

int ws_deflate_negotiate_value(const char *v, size_t len, struct ws_deflate_params *p)
{
    struct scan s = {v, v + len};
    memset(p, 0, sizeof *p);
    while (s.p < s.end) {
        skip_ows(&s);
        if (s.p < s.end && *s.p == ',') { /* empty list elements are allowed */
            s.p++;
            continue;
        }
        if (s.p >= s.end) break;
        const char *name;
        size_t nl = token(&s, &name);
        int rc = -1;
        if (nl > 0) {
            struct ws_deflate_params cand;
            rc = offer_params(&s, &cand);
            if (rc == 1 && name_is(name, nl, "permessage-deflate")) {
                *p = cand;
                return 1;
            }
        }
        if (rc < 0) skip_offer(&s);
    }
    return 0;
}

int ws_deflate_negotiate(const struct http_request *req, struct ws_deflate_params *p)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!name_is(h->name, h->name_len, "sec-websocket-extensions")) continue;
        if (ws_deflate_negotiate_value(h->value, h->value_len, p)) return 1;
    }
    return 0;
}

size_t ws_deflate_response(const struct ws_deflate_params *p, char *buf, size_t cap)
{
    if (!(p->flags & WS_DEFLATE_ON) || cap == 0) return 0;
    char sbits[32] = "", cbits[32] = "";
    if (p->flags & WS_DEFLATE_SERVER_BITS)
        snprintf(sbits, sizeof sbits, "; server_max_window_bits=%u", p->server_wbits);
    if (p->flags & WS_DEFLATE_CLIENT_BITS)
        snprintf(cbits, sizeof cbits, "; client_max_window_bits=%u", p->client_wbits);
    int n = snprintf(buf, cap,
                     "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"
                     "%s%s%s\r\n",
                     (p->flags & WS_DEFLATE_CLIENT_NCT) ? "; client_no_context_takeover" : "",
                     sbits, cbits);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}
