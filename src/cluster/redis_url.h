/* The address of a Redis server, as given to --redis (issue 12, not wired yet):
 *
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *
 * - the scheme is "redis" (any case); "rediss" (TLS) is refused: not supported yet;
 * - USER and PASSWORD are percent-decoded (%XX; a raw '@', ':', '/', '?', '#', '[',
 *   ']', space or control byte must be escaped, and no escape may decode to NUL). With
 *   a password alone (":secret@") the connection sends AUTH secret, with both AUTH user
 *   secret (Redis 6 ACL). A user without a password is refused (nothing to send);
 * - HOST is a name or IPv4 address (letters, digits, '-', '_', '.', at most 253 bytes)
 *   or an IPv6 literal in brackets ("[::1]", checked with inet_pton, no zone id);
 * - PORT is 1-65535, 6379 when absent; an empty port (":" then nothing) is refused;
 * - DB is 0-15 (Redis' default `databases 16`), 0 when absent or "/"; no query string
 *   and no fragment.
 * Anything else is refused with a one-line reason for the operator. Pure: no I/O, no
 * allocation; a parsed URL lives in the caller's struct. */
#ifndef WSHUB_CLUSTER_REDIS_URL_H
#define WSHUB_CLUSTER_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REDIS_URL_MAX_HOST 253
#define REDIS_URL_MAX_CRED 255 /* decoded user or password, bytes */
#define REDIS_URL_MAX_DB   15

struct redis_url {
    char host[REDIS_URL_MAX_HOST + 1]; /* without the brackets of an IPv6 literal */
    bool ipv6;
    uint16_t port;
    uint8_t db;
    bool has_password; /* AUTH is sent when set; user is "" for password-only AUTH */
    char user[REDIS_URL_MAX_CRED + 1];
    char password[REDIS_URL_MAX_CRED + 1];
};

/* Parses the len bytes at s. Returns 0, or -1 with *why set to a static reason. */
int redis_url_parse(const char *s, size_t len, struct redis_url *out, const char **why);

/* Field by field (the structs may differ in padding and after the strings' NULs). */
bool redis_url_equal(const struct redis_url *a, const struct redis_url *b);

/* Writes u back as a URL that parses to the same struct (credentials percent-encoded),
 * or with the password replaced by "***" when redact (for logs and /readyz). Returns the
 * length, or -1 when it does not fit in n bytes (NUL included). */
int redis_url_format(const struct redis_url *u, bool redact, char *buf, size_t n);

#endif
