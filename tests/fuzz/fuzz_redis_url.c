/* Fuzzes the redis:// URL parser (cluster/redis_url.h): any input is refused with a
 * reason, or parses to a checked URL (a non-empty host of allowed bytes, a port
 * 1-65535, a database 0-15, credentials without NUL) that formats and parses back to
 * the same struct, and whose redacted form replaces the password, and only it, with "***". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct redis_url u, again;
    const char *why = NULL;
    if (redis_url_parse((const char *)data, size, &u, &why) != 0) {
        CHECK(why != NULL);
        return 0;
    }
    CHECK(u.host[0] && strlen(u.host) <= REDIS_URL_MAX_HOST);
    CHECK(u.port != 0 && u.db <= REDIS_URL_MAX_DB);
    CHECK(!u.has_password || u.password[0]);
    CHECK(u.has_password || (!u.user[0] && !u.password[0]));
    char buf[2048];
    int n = redis_url_format(&u, false, buf, sizeof buf);
    CHECK(n > 0);
    CHECK(redis_url_parse(buf, (size_t)n, &again, &why) == 0);
    CHECK(redis_url_equal(&u, &again));
    /* Redacted: exactly the URL of the same struct with the password "***". */
    n = redis_url_format(&u, true, buf, sizeof buf);
    CHECK(n > 0);
    char masked[2048];
    if (u.has_password) strcpy(u.password, "***");
    CHECK(redis_url_format(&u, false, masked, sizeof masked) == n && !strcmp(buf, masked));
    return 0;
}
