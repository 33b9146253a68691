/* redis:// URL parsing and formatting; see redis_url.h for the grammar. */
#include "cluster/redis_url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Bytes that must be percent-escaped inside the userinfo (they delimit the URL or are
 * invisible); everything else passes through as is, UTF-8 included. */
static bool userinfo_byte_ok(unsigned char c)
{
    return c > 0x20 && c != 0x7f && !strchr("@:/?#[]%", c);
}

/* Decodes [s, s+len) into out (at most REDIS_URL_MAX_CRED bytes plus NUL). */
static int decode_cred(const char *s, size_t len, char *out, const char **why)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3 || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                *why = "bad percent escape in the user or password";
                return -1;
            }
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            if (c == 0) {
                *why = "the user or password contains %00";
                return -1;
            }
            i += 2;
        } else if (!userinfo_byte_ok(c)) {
            *why = "a character of the user or password must be percent-escaped";
            return -1;
        }
        if (o >= REDIS_URL_MAX_CRED) {
            *why = "the user or password is too long";
            return -1;
        }
        out[o++] = (char)c;
    }
    out[o] = 0;
    return 0;
}

static int parse_userinfo(const char *s, size_t len, struct redis_url *u, const char **why)
{
    const char *colon = memchr(s, ':', len);
    if (!colon) {
        *why = "a user without a password (write redis://user:password@host)";
        return -1;
    }
    size_t ulen = (size_t)(colon - s);
    if (decode_cred(s, ulen, u->user, why) < 0) return -1;
    if (decode_cred(colon + 1, len - ulen - 1, u->password, why) < 0) return -1;
    if (!u->password[0]) {
        *why = "empty password";
        return -1;
    }
    u->has_password = true;
    return 0;
}

static int parse_host(const char *s, size_t len, struct redis_url *u, const char **why)
{
    if (len == 0) {
        *why = "no host";
        return -1;
    }
    if (s[0] == '[') {
        char tmp[INET6_ADDRSTRLEN + 1];
        struct in6_addr a;
        if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof tmp) {
            *why = "bad IPv6 literal (write [::1])";
            return -1;
        }
        memcpy(tmp, s + 1, len - 2);
        tmp[len - 2] = 0;
        if (strchr(tmp, '%') || inet_pton(AF_INET6, tmp, &a) != 1) {
            *why = "bad IPv6 literal (write [::1])";
            return -1;
        }
        memcpy(u->host, tmp, len - 1);
        u->ipv6 = true;
        return 0;
    }
    if (len > REDIS_URL_MAX_HOST) {
        *why = "host name too long";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            *why = "bad character in the host";
            return -1;
        }
    }
    memcpy(u->host, s, len);
    u->host[len] = 0;
    return 0;
}

static int parse_port(const char *s, size_t len, struct redis_url *u, const char **why)
{
    unsigned long v = 0;
    if (len == 0 || len > 5) {
        *why = "bad port (1-65535)";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "bad port (1-65535)";
            return -1;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535) {
        *why = "bad port (1-65535)";
        return -1;
    }
    u->port = (uint16_t)v;
    return 0;
}

static int parse_db(const char *s, size_t len, struct redis_url *u, const char **why)
{
    /* s starts after the '/'; empty means 0. */
    unsigned v = 0;
    if (len > 2) {
        *why = "bad database number (0-15)";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = "bad database number (0-15)";
            return -1;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > REDIS_URL_MAX_DB || (len == 2 && s[0] == '0')) {
        *why = "bad database number (0-15)";
        return -1;
    }
    u->db = (uint8_t)v;
    return 0;
}

int redis_url_parse(const char *s, size_t len, struct redis_url *out, const char **why)
{
    static const char scheme[] = "redis://";
    struct redis_url u = {.port = 6379};
    *why = NULL;
    if (len >= 9 && !strncasecmp(s, "rediss://", 9)) {
        *why = "rediss:// (TLS to Redis) is not supported yet";
        return -1;
    }
    if (len < sizeof scheme - 1 || strncasecmp(s, scheme, sizeof scheme - 1)) {
        *why = "not a redis:// URL";
        return -1;
    }
    if (memchr(s, 0, len)) {
        *why = "NUL byte in the URL";
        return -1;
    }
    const char *p = s + sizeof scheme - 1, *end = s + len;
    if (memchr(p, '?', (size_t)(end - p)) || memchr(p, '#', (size_t)(end - p))) {
        *why = "query strings and fragments are not supported";
        return -1;
    }
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    const char *at = memchr(p, '@', (size_t)(auth_end - p));
    if (at) {
        if (memchr(at + 1, '@', (size_t)(auth_end - at - 1))) {
            *why = "'@' in the user or password must be written %40";
            return -1;
        }
        if (parse_userinfo(p, (size_t)(at - p), &u, why) < 0) return -1;
        p = at + 1;
    }
    /* host[:port]; the host may be a bracketed IPv6 literal that contains ':'. */
    const char *host_end;
    if (p < auth_end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        if (!close) {
            *why = "bad IPv6 literal (write [::1])";
            return -1;
        }
        host_end = close + 1;
        if (host_end < auth_end && *host_end != ':') {
            *why = "junk after the IPv6 literal";
            return -1;
        }
    } else {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        host_end = colon ? colon : auth_end;
    }
    if (parse_host(p, (size_t)(host_end - p), &u, why) < 0) return -1;
    if (host_end < auth_end &&
        parse_port(host_end + 1, (size_t)(auth_end - host_end - 1), &u, why) < 0)
        return -1;
    if (slash && parse_db(slash + 1, (size_t)(end - slash - 1), &u, why) < 0) return -1;
    *out = u;
    return 0;
}

static size_t encode_cred(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (userinfo_byte_ok(c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
    return o;
}

int redis_url_format(const struct redis_url *u, bool redact, char *buf, size_t n)
{
    char user[3 * REDIS_URL_MAX_CRED + 1], pass[3 * REDIS_URL_MAX_CRED + 1];
    int w;
    if (u->has_password) {
        encode_cred(u->user, user);
        if (redact)
            strcpy(pass, "***");
        else
            encode_cred(u->password, pass);
        w = snprintf(buf, n, "redis://%s:%s@%s%s%s:%u/%u", user, pass, u->ipv6 ? "[" : "", u->host,
                     u->ipv6 ? "]" : "", u->port, u->db);
    } else {
        w = snprintf(buf, n, "redis://%s%s%s:%u/%u", u->ipv6 ? "[" : "", u->host,
                     u->ipv6 ? "]" : "", u->port, u->db);
    }
    return w < 0 || (size_t)w >= n ? -1 : w;
}

bool redis_url_equal(const struct redis_url *a, const struct redis_url *b)
{
    return !strcmp(a->host, b->host) && a->ipv6 == b->ipv6 && a->port == b->port &&
           a->db == b->db && a->has_password == b->has_password && !strcmp(a->user, b->user) &&
           !strcmp(a->password, b->password);
}
