/* Origin allow-list matching; see origin.h for the rules. */
#include "auth/origin.h"

#include <string.h>
#include <strings.h>

/* host[:port] of an origin "scheme://host[:port]"; NULL when it has no "://". */
static const char *origin_authority(const char *o, size_t len, size_t *alen)
{
    const char *sep = memchr(o, ':', len);
    if (!sep || (size_t)(o + len - sep) < 3 || sep[1] != '/' || sep[2] != '/') return NULL;
    const char *a = sep + 3;
    *alen = (size_t)(o + len - a);
    return a;
}

static bool pattern_match(const char *pat, const char *o, size_t len)
{
    if (strcmp(pat, "*") == 0) return true;
    const char *star = strstr(pat, "://*.");
    if (!star) return strlen(pat) == len && strncasecmp(pat, o, len) == 0;
    /* "scheme://" "*.suffix": same scheme, and the host ends in ".suffix" with at least
     * one label before it. */
    size_t scheme_len = (size_t)(star - pat) + 3;
    const char *suffix = star + 4; /* ".suffix" */
    size_t slen = strlen(suffix);
    if (len <= scheme_len + slen || strncasecmp(pat, o, scheme_len) != 0) return false;
    return strncasecmp(o + len - slen, suffix, slen) == 0;
}

bool origin_allowed(const struct http_request *req, const char *const *allow, bool tls)
{
    const struct http_header *oh = http_header_find(req, "Origin");
    if (!oh) return true;
    for (const char *const *p = allow; p && *p; p++)
        if (pattern_match(*p, oh->value, oh->value_len)) return true;
    static const char https[] = "https://";
    if (tls &&
        (oh->value_len < sizeof https - 1 || strncasecmp(oh->value, https, sizeof https - 1) != 0))
        return false;
    const struct http_header *host = http_header_find(req, "Host");
    size_t alen;
    const char *a = origin_authority(oh->value, oh->value_len, &alen);
    return host && a && alen == host->value_len && strncasecmp(a, host->value, alen) == 0;
}
