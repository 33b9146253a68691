/* The --history rules and the limits they give a stream (history.h): parsing
 * PATTERN:SIZE:TTL lists, and matching room ids against '*' patterns. Kept apart from
 * the store: it runs once at start-up and once per stream created, never per message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history/history.h"

static bool glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

struct hist_limits hist_limits_for(const struct hist_config *cfg, enum hist_kind kind,
                                   const char *name)
{
    if (kind == HIST_USER) return cfg->user;
    for (int i = 0; i < cfg->n_rules; i++)
        if (glob_match(cfg->rules[i].pattern, name)) return cfg->rules[i].lim;
    return cfg->room;
}

static int parse_ttl(const char *s, size_t n, uint64_t *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf || buf[0] == '-') return -1;
    uint64_t mul = 1000;
    if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mul = 1000;
    else if (strcmp(end, "m") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return -1;
    if (v > UINT64_MAX / mul / 2) return -1;
    *out = v * mul;
    return 0;
}

int hist_rules_parse(const char *spec, struct hist_config *cfg, char *err, size_t cap)
{
    const char *p = spec;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *c2 = NULL, *c1 = NULL; /* the last two ':' of the rule */
        for (size_t i = n; i-- > 0;) {
            if (p[i] != ':') continue;
            if (!c2)
                c2 = p + i;
            else {
                c1 = p + i;
                break;
            }
        }
        if (!c1 || c1 == p) {
            snprintf(err, cap, "'%.*s' is not PATTERN:SIZE:TTL", (int)n, p);
            return -1;
        }
        if (cfg->n_rules == HIST_MAX_RULES) {
            snprintf(err, cap, "at most %d history rules", HIST_MAX_RULES);
            return -1;
        }
        size_t plen = (size_t)(c1 - p);
        if (plen > HIST_MAX_PATTERN) {
            snprintf(err, cap, "pattern longer than %d bytes", HIST_MAX_PATTERN);
            return -1;
        }
        struct hist_rule *r = &cfg->rules[cfg->n_rules];
        char num[16];
        size_t slen = (size_t)(c2 - c1 - 1);
        char *e;
        if (slen == 0 || slen >= sizeof num) goto bad_size;
        memcpy(num, c1 + 1, slen);
        num[slen] = '\0';
        errno = 0;
        unsigned long sz = strtoul(num, &e, 10);
        if (errno || *e || num[0] == '-' || sz > 1000000) goto bad_size;
        if (parse_ttl(c2 + 1, n - (size_t)(c2 + 1 - p), &r->lim.ttl_ms) < 0) {
            snprintf(err, cap, "'%.*s': TTL is not a duration (e.g. 5m, 30s, 0)", (int)n, p);
            return -1;
        }
        memcpy(r->pattern, p, plen);
        r->pattern[plen] = '\0';
        r->lim.size = (uint32_t)sz;
        cfg->n_rules++;
        p = end ? end + 1 : NULL;
        continue;
    bad_size:
        snprintf(err, cap, "'%.*s': SIZE is not a whole number of messages (0..1000000)", (int)n,
                 p);
        return -1;
    }
    return 0;
}
