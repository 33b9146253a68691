/* Authentication of the WebSocket upgrade: finds the client's token and turns it into
 * a user id (and optional room permissions).
 *
 * Where the token may be (first found wins, in this order):
 *   1. `Authorization: Bearer <token>` header;
 *   2. `?token=<token>` query parameter (percent-decoded);
 *   3. `Sec-WebSocket-Protocol`: an offered subprotocol of the form
 *      `bearer.<token>` (a browser cannot set headers on a WebSocket, and a query
 *      string ends up in access logs). Clients should offer "wshub" beside it, which
 *      the server then chooses; a browser that offered only `bearer.<token>` fails the
 *      connection unless some offered entry is chosen, so the server answers with
 *      that entry in that case (the token then appears in the response header).
 *      auth_token_find reports its position;
 *   4. AUTH_NONE mode only, and only through auth_token_find_for: the guide's
 *      `?user_id=<id>` (percent-decoded).
 * A location counts as found when its syntax is there even if the token is empty or
 * unusable (`Bearer` with nothing after it, `?token=` empty or badly encoded, a bare
 * `bearer.`): the search stops and auth_verify refuses the empty token, rather than
 * silently falling through to a later location. An Authorization header with another
 * scheme (Basic, ...) is not a token and is skipped. The scheme compares
 * case-insensitively (RFC 9110 11.1), the `bearer.` prefix case-sensitively (like
 * every subprotocol name).
 *
 * Modes:
 *   AUTH_NONE  — development only: the token is taken as the user id verbatim
 *                (1..128 bytes of printable ASCII, 0x20-0x7e, other than '"' and
 *                '\\'; anything else is AUTH_BAD_SUBJECT). The guide's `?user_id=`
 *                is accepted as well (see auth_token_find_for).
 *   AUTH_HS256 — JWT signed with HMAC-SHA256 and a shared secret.
 *   AUTH_RS256 — JWT signed with RSA-SHA256; the server holds the public key (PEM).
 * A JWT must carry alg equal to the configured one (a token that names another alg,
 * including "none", is refused whatever its signature), a string `sub` (the user id,
 * same character rules as above), and an integer `exp` in the future; `nbf`, when
 * present, must be in the past (both with `leeway_s` of tolerance). Optional claim
 * `rooms`: an object {"join": [patterns], "publish": [patterns]} where a pattern is
 * an exact room id, a prefix ending in '*', or "*". Absent `rooms` means no
 * restriction from the token (the server's policy still applies).
 *
 * The finer points, checked in this order (the first failure is the answer):
 *   - the token: at most AUTH_MAX_TOKEN bytes, exactly three dot-separated segments
 *     of unpadded, canonical base64url (RFC 7515), header and payload non-empty JSON
 *     objects with no duplicate member names and no NUL bytes; else AUTH_MALFORMED.
 *     The header's `alg` must be a string (else AUTH_MALFORMED) equal byte for byte to
 *     "HS256" or "RS256" as configured (else AUTH_BAD_ALG: alg names are
 *     case-sensitive, RFC 7515 4.1.1). `typ`, if present, must be "JWT" in any case
 *     (libjwt refuses other values), and a `crit` header is refused since no
 *     extension is understood (RFC 7515 4.1.11); both AUTH_MALFORMED;
 *   - the signature (AUTH_BAD_SIGNATURE, also when it is empty or when an internal
 *     allocation fails: the token could not be verified);
 *   - exp: absent or not an integer is AUTH_EXPIRED; valid while now < exp + leeway
 *     (RFC 7519 4.1.4). nbf: not an integer is AUTH_BAD_CLAIMS; not yet valid while
 *     now < nbf - leeway (AUTH_NOT_YET_VALID);
 *   - sub (AUTH_BAD_SUBJECT);
 *   - rooms (AUTH_BAD_CLAIMS): an object whose only members are "join" and/or
 *     "publish", each an array of at most AUTH_MAX_PATTERNS strings; a pattern is
 *     1..AUTH_MAX_USER bytes, plus an optional final '*', with no control characters
 *     (a room id is 1..128 bytes without them). A '*' is special only as the last
 *     byte; elsewhere it is literal. When `rooms` is present, a missing list means
 *     an empty one: the token then allows nothing of that kind (fail closed);
 *   - broadcast (AUTH_BAD_CLAIMS unless a boolean): true sets can_broadcast.
 * Other claims (iat, iss, aud, jti, ...) are ignored: a deployment that shares the
 * secret or key between several services must give each its own, since `aud` is not
 * checked.
 *
 * Ownership: struct auth is created once at start-up and shared read-only by all
 * threads (auth_verify is thread-safe). struct auth_identity is caller-owned and
 * freed with auth_identity_free. */
#ifndef WSHUB_AUTH_TOKEN_H
#define WSHUB_AUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parser.h"

#define AUTH_MAX_USER     128
#define AUTH_MAX_TOKEN    8192
#define AUTH_MAX_PATTERNS 64

enum auth_mode { AUTH_NONE = 0, AUTH_HS256 = 1, AUTH_RS256 = 2 };

/* Why a token was refused: the HTTP body carries the text, metrics the code. */
enum auth_error {
    AUTH_OK = 0,
    AUTH_MISSING,   /* no token anywhere */
    AUTH_MALFORMED, /* not a JWT (segments, base64url, JSON) */
    AUTH_BAD_ALG,   /* alg differs from the configured one */
    AUTH_BAD_SIGNATURE,
    AUTH_EXPIRED,       /* exp missing, not an integer, or passed */
    AUTH_NOT_YET_VALID, /* nbf in the future */
    AUTH_BAD_SUBJECT,   /* sub missing, not a string, or not a valid user id */
    AUTH_BAD_CLAIMS,    /* rooms (or nbf, broadcast) claim of the wrong shape */
};

struct auth_config {
    enum auth_mode mode;
    const char *secret;          /* HS256: the shared secret (bytes, NUL-terminated), at
                                  * least 32 bytes (RFC 7518 3.2: no shorter than the
                                  * hash) */
    const char *public_key_file; /* RS256: PEM file with an RSA public key ("BEGIN PUBLIC
                                  * KEY", SubjectPublicKeyInfo) of 2048 bits or more */
    uint32_t leeway_s;           /* clock skew tolerated on exp/nbf (the config's default
                                  * is 30; 0 here means none); at most 3600 */
};

struct auth;

struct auth_identity {
    char user[AUTH_MAX_USER + 1];
    bool has_rooms; /* the token restricts rooms */
    char **join;    /* patterns (heap), n_join of them */
    size_t n_join;
    char **publish;
    size_t n_publish;
    bool can_broadcast; /* claim "broadcast": true (set by auth_verify, read by the hub) */
    uint32_t exp;       /* the JWT's exp, Unix seconds, clamped to 1..UINT32_MAX (2106: as
                         * good as never); 0 with --auth none: never expires. 32 bits fit
                         * the struct's padding */
};

/* Builds the verifier (reads the key file for RS256). Returns NULL and writes a
 * message to err (cap bytes) on failure: unknown mode, secret missing or shorter than
 * 32 bytes, key file unreadable or over 64 KiB, no PEM public key in it, a key that
 * is not RSA or under 2048 bits, leeway over 3600 s. */
struct auth *auth_create(const struct auth_config *cfg, char *err, size_t cap);
void auth_destroy(struct auth *a);

/* Where the token is in req: points into the request (valid while it is). For the
 * query parameter the token is percent-decoded into qbuf (AUTH_MAX_TOKEN+1 bytes;
 * NULL skips the query); a malformed or oversized encoding gives an empty token
 * there. *proto_index is the position of the `bearer.` entry the token was taken
 * from among the offered subprotocols (0-based, counting the non-empty comma-separated
 * entries of every Sec-WebSocket-Protocol field in order; the first such entry is
 * used), or -1 when the token came from elsewhere or was not found. Returns 0, or -1
 * when there is none (then *tok is NULL and *tok_len 0). */
int auth_token_find(const struct http_request *req, char *qbuf, const char **tok, size_t *tok_len,
                    int *proto_index);

/* auth_token_find, then, when a is in AUTH_NONE mode and nothing was found, the
 * guide's `?user_id=` (decoded into qbuf as ?token= is). In the JWT modes it is
 * exactly auth_token_find, so a `?user_id=` can never stand in for a token. This is
 * the one the upgrade handler calls. */
int auth_token_find_for(const struct auth *a, const struct http_request *req, char *qbuf,
                        const char **tok, size_t *tok_len, int *proto_index);

/* Verifies a token at time now (Unix seconds) and fills id. id is always
 * initialised (the user empty and no lists on failure), so auth_identity_free is safe
 * after any result; a NULL tok is AUTH_MISSING. Uses about 10 KiB of stack. */
enum auth_error auth_verify(const struct auth *a, const char *tok, size_t tok_len, int64_t now,
                            struct auth_identity *id);

/* The tolerance on exp/nbf, seconds: a connection is closed this long after exp. */
int64_t auth_leeway(const struct auth *a);

/* Human-readable reason, and a short machine code ("expired", ...). */
const char *auth_error_text(enum auth_error e);
const char *auth_error_code(enum auth_error e);

/* True when room matches one of the patterns: equal to an exact one, or starting
 * with the part of a prefix pattern before its final '*' (so "a*" matches "a" as well
 * as "ab"; "*" matches everything). False for an empty list or a NULL room. */
bool auth_room_match(char *const *patterns, size_t n, const char *room);

void auth_identity_free(struct auth_identity *id);

#endif
