/* Fuzzes the Origin parser (auth/origin.h): any input either is refused or parses to
 * a checked origin (a known scheme, a lower-case host of at most 253 bytes made of
 * name bytes only, no trailing dot, a port 1-65535) that serialises and parses back to
 * itself and matches itself; the same bytes as an allow-list entry parse to the same
 * parts, and a wildcard entry never matches a host that does not end in its suffix
 * after a dot. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/origin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static void check_parts(const struct origin *o)
{
    CHECK(!strcmp(o->scheme, "http") || !strcmp(o->scheme, "https") || !strcmp(o->scheme, "ws") ||
          !strcmp(o->scheme, "wss"));
    CHECK(o->host_len > 0 && o->host_len <= ORIGIN_MAX_HOST && strlen(o->host) == o->host_len);
    CHECK(o->host[o->host_len - 1] != '.' && o->port != 0);
    for (size_t i = 0; i < o->host_len; i++) {
        char c = o->host[i];
        CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-_.[]:", c));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    buf[size] = 0;
    struct origin o, again, p;
    if (origin_parse(buf, size, &o) == 0) {
        check_parts(&o);
        CHECK(!o.wildcard);
        char text[300];
        int n = snprintf(text, sizeof text, "%s://%s:%u", o.scheme, o.host, o.port);
        CHECK(n > 0 && (size_t)n < sizeof text);
        CHECK(origin_parse(text, (size_t)n, &again) == 0);
        CHECK(!strcmp(again.scheme, o.scheme) && !strcmp(again.host, o.host) &&
              again.port == o.port);
        CHECK(origin_pattern_match(&o, &o) && origin_pattern_match(&again, &o));
        /* No byte of the input that a string compare could be fooled by survives. */
        size_t slashes = 0;
        for (size_t i = 0; i < size; i++)
            slashes += buf[i] == '/';
        CHECK(slashes == 2); /* those of "://" */
        CHECK(!memchr(buf, '?', size) && !memchr(buf, '#', size) && !memchr(buf, '@', size));
    }
    const char *why;
    if (strlen(buf) == size && origin_pattern_parse(buf, &p, &why) == 0) {
        check_parts(&p);
        struct origin host = p;
        if (p.wildcard) {
            /* "x." + suffix matches; the bare suffix and "x" + suffix do not. */
            CHECK(!origin_pattern_match(&p, &p));
            if (p.host_len + 2 <= ORIGIN_MAX_HOST && p.host[0] != '[') {
                memmove(host.host + 2, p.host, p.host_len + 1);
                host.host[0] = 'x';
                host.host[1] = '.';
                host.host_len = p.host_len + 2;
                host.wildcard = false;
                CHECK(origin_pattern_match(&p, &host));
                host.host[1] = 'x';
                CHECK(!origin_pattern_match(&p, &host));
            }
        } else {
            CHECK(origin_parse(buf, size, &o) == 0 && origin_pattern_match(&p, &o));
        }
    }
    free(buf);
    return 0;
}
