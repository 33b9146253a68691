/* Origin parsing and matching; see origin.h for the rules. Everything is checked
 * byte by byte against the grammar, so that nothing a string compare could be fooled
 * by (a '/', '?', '@' or '#' with a suffix after it) survives to the compare. */
#include "auth/origin.h"

#include <string.h>

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c | 0x20) : c;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'f');
}

static const struct {
    const char *name;
    uint16_t port;
} schemes[] = {{"http", 80}, {"https", 443}, {"ws", 80}, {"wss", 443}};

/* The scheme at s[0..*n) up to "://"; sets o->scheme and the default port. */
static int parse_scheme(const char *s, size_t len, size_t *used, struct origin *o)
{
    const char *sep = memchr(s, ':', len);
    if (!sep) return -1;
    size_t n = (size_t)(sep - s);
    if (len - n < 3 || sep[1] != '/' || sep[2] != '/') return -1;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        const char *name = schemes[i].name;
        if (strlen(name) != n) continue;
        size_t k = 0;
        while (k < n && lower(s[k]) == name[k])
            k++;
        if (k < n) continue;
        memcpy(o->scheme, name, n + 1);
        o->port = schemes[i].port;
        *used = n + 3;
        return 0;
    }
    return -1;
}

/* host [":" port] filling the whole of s[0..len): the host lower-cased into o->host,
 * one trailing dot dropped; the port, when present, replaces o->port. With
 * `wildcard`, a first label "*" is taken off and o->wildcard set. */
static int parse_authority(const char *s, size_t len, struct origin *o, bool wildcard)
{
    const char *p = s, *end = s + len;
    size_t n = 0;
    o->wildcard = false;
    if (p < end && *p == '[') {
        const char *close = memchr(p, ']', len);
        if (!close || close - p < 3 || (size_t)(close - p) + 1 > ORIGIN_MAX_HOST) return -1;
        for (const char *q = p + 1; q < close; q++)
            if (!is_hex(*q) && *q != ':' && *q != '.') return -1;
        for (; p <= close; p++)
            o->host[n++] = lower(*p);
    } else {
        if (wildcard && end - p >= 2 && p[0] == '*' && p[1] == '.') {
            o->wildcard = true;
            p += 2;
        }
        size_t label = 0;
        for (; p < end && *p != ':'; p++) {
            char c = *p;
            if (c == '.') {
                if (label == 0) return -1; /* empty label: "..", a leading dot */
                label = 0;
            } else if (is_alnum(c) || c == '-' || c == '_') {
                if (++label > 63) return -1;
            } else {
                return -1; /* '/', '?', '#', '@', '%', space, non-ASCII, ... */
            }
            if (n == ORIGIN_MAX_HOST + 1) return -1;
            o->host[n++] = lower(c);
        }
        if (n > 0 && o->host[n - 1] == '.') n--; /* the root: same host */
        if (n == 0 || o->host[n - 1] == '.') return -1;
        if (n > ORIGIN_MAX_HOST) return -1;
    }
    o->host[n] = '\0';
    o->host_len = n;
    if (p == end) return 0;
    if (*p++ != ':' || p == end || end - p > 5) return -1;
    unsigned port = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return -1;
        port = port * 10 + (unsigned)(*p - '0');
    }
    if (port == 0 || port > 65535) return -1;
    o->port = (uint16_t)port;
    return 0;
}

int origin_parse(const char *s, size_t len, struct origin *o)
{
    size_t used;
    memset(o, 0, sizeof *o);
    if (parse_scheme(s, len, &used, o) < 0) return -1;
    return parse_authority(s + used, len - used, o, false);
}

int origin_pattern_parse(const char *s, struct origin *p, const char **why)
{
    size_t len = strlen(s), used;
    memset(p, 0, sizeof *p);
    if (parse_scheme(s, len, &used, p) < 0) {
        *why = "not an origin: give scheme://host[:port] with scheme http, https, ws or wss";
        return -1;
    }
    if (parse_authority(s + used, len - used, p, true) < 0) {
        *why = "not an origin: the host must be a DNS name in ASCII (punycode for international "
               "names) or [IPv6], a wildcard only as a first label \"*.\", an optional port "
               "1-65535, and no path, query or userinfo";
        return -1;
    }
    return 0;
}

bool origin_pattern_match(const struct origin *p, const struct origin *o)
{
    if (strcmp(p->scheme, o->scheme) != 0 || p->port != o->port) return false;
    if (!p->wildcard)
        return p->host_len == o->host_len && memcmp(p->host, o->host, o->host_len) == 0;
    /* One or more whole labels, then "." and the suffix: o->host is a checked name. */
    return o->host_len > p->host_len + 1 && o->host[o->host_len - p->host_len - 1] == '.' &&
           memcmp(o->host + o->host_len - p->host_len, p->host, p->host_len) == 0;
}

int origin_list_check(const char *const *allow, const char **bad, const char **why)
{
    struct origin p;
    for (const char *const *a = allow; a && *a; a++) {
        if (strcmp(*a, "*") == 0) continue;
        if (origin_pattern_parse(*a, &p, why) < 0) {
            *bad = *a;
            return -1;
        }
    }
    return 0;
}

/* Same origin: the listener's scheme, and the Host header's host and port. */
static bool same_origin(const struct http_request *req, const struct origin *o, bool tls)
{
    const char *scheme = tls ? "https" : "http";
    if (strcmp(o->scheme, scheme) != 0) return false;
    const struct http_header *h = http_header_find(req, "Host");
    struct origin host = {.port = tls ? 443 : 80};
    if (!h || parse_authority(h->value, h->value_len, &host, false) < 0) return false;
    return host.port == o->port && host.host_len == o->host_len &&
           memcmp(host.host, o->host, o->host_len) == 0;
}

bool origin_allowed(const struct http_request *req, const char *const *allow, bool tls)
{
    const struct http_header *oh = http_header_find(req, "Origin");
    if (!oh) return true;
    for (const char *const *a = allow; a && *a; a++)
        if (strcmp(*a, "*") == 0) return true;
    struct origin o, p;
    if (http_header_count(req, "Origin") != 1 || origin_parse(oh->value, oh->value_len, &o) < 0)
        return false;
    const char *why;
    for (const char *const *a = allow; a && *a; a++)
        if (origin_pattern_parse(*a, &p, &why) == 0 && origin_pattern_match(&p, &o)) return true;
    return same_origin(req, &o, tls);
}
