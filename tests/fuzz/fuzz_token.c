/* libFuzzer target for token authentication. Each input is used three ways: as a
 * token for an HS256 verifier with a fixed secret and for the AUTH_NONE one; as a JWT
 * payload, which the harness signs with that secret, so that the claim checks behind
 * the signature are reached too; and as an HTTP request head, from which the token is
 * looked up and then verified. The input is copied to an exact-size heap block so that
 * ASan sees any read past its end. Checked invariants: a found token lies inside the
 * request or the query buffer, an identity is either fully valid or empty, and a
 * signed payload accepted by the verifier parses (here, independently) to an object
 * whose sub is the user reported. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/token.h"
#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

#define NOW INT64_C(1700000000)

static const char secret[] = "wshub fuzz secret, 32 bytes long";
static const char header_b64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; /* HS256, JWT */

static struct auth *hs, *none;

static void init(void)
{
    char err[128];
    struct auth_config c = {.mode = AUTH_HS256, .secret = secret, .leeway_s = 30};
    hs = auth_create(&c, err, sizeof err);
    c = (struct auth_config){.mode = AUTH_NONE};
    none = auth_create(&c, err, sizeof err);
    CHECK(hs && none);
}

static void check_identity(enum auth_error e, const struct auth_identity *id)
{
    CHECK(e >= AUTH_OK && e <= AUTH_BAD_CLAIMS);
    CHECK(auth_error_code(e) && auth_error_text(e));
    size_t ul = strnlen(id->user, sizeof id->user);
    CHECK(ul <= AUTH_MAX_USER);
    if (e != AUTH_OK) {
        CHECK(ul == 0 && !id->has_rooms && !id->join && !id->publish && !id->can_broadcast);
        CHECK(id->n_join == 0 && id->n_publish == 0);
        return;
    }
    CHECK(ul > 0);
    for (size_t i = 0; i < ul; i++)
        CHECK(id->user[i] >= 0x20 && id->user[i] <= 0x7e && id->user[i] != '"' &&
              id->user[i] != '\\');
    CHECK(id->has_rooms || (id->n_join == 0 && id->n_publish == 0));
    CHECK(id->n_join <= AUTH_MAX_PATTERNS && id->n_publish <= AUTH_MAX_PATTERNS);
    CHECK((id->join == NULL) == (id->n_join == 0));
    CHECK((id->publish == NULL) == (id->n_publish == 0));
    for (size_t i = 0; i < id->n_join; i++) {
        size_t n = strlen(id->join[i]);
        CHECK(n > 0 && n <= AUTH_MAX_USER + 1);
        CHECK(auth_room_match(id->join, id->n_join, id->join[i]));
    }
    for (size_t i = 0; i < id->n_publish; i++)
        CHECK(strlen(id->publish[i]) > 0);
}

static enum auth_error verify(const struct auth *a, const char *tok, size_t n, int64_t now,
                              struct auth_identity *id)
{
    enum auth_error e = auth_verify(a, tok, n, now, id);
    check_identity(e, id);
    return e;
}

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
    static const char sym[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = sym[v >> 18];
        out[o++] = sym[(v >> 12) & 63];
        out[o++] = sym[(v >> 6) & 63];
        out[o++] = sym[v & 63];
    }
    if (n - i == 1) {
        out[o++] = sym[in[i] >> 2];
        out[o++] = sym[(in[i] & 3) << 4];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
        out[o++] = sym[v >> 10];
        out[o++] = sym[(v >> 4) & 63];
        out[o++] = sym[(v & 15) << 2];
    }
    return o;
}

/* The input as the payload of a correctly signed HS256 token. */
static void signed_payload(const uint8_t *data, size_t size)
{
    if (size > AUTH_MAX_TOKEN) return;
    size_t cap = sizeof header_b64 + size / 3 * 4 + 4 + 64;
    char *tok = malloc(cap);
    if (!tok) return;
    size_t n = sizeof header_b64 - 1;
    memcpy(tok, header_b64, n);
    tok[n++] = '.';
    n += b64url(data, size, tok + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)tok, n, mac,
              &mlen)) {
        free(tok);
        return;
    }
    tok[n++] = '.';
    n += b64url(mac, mlen, tok + n);

    static const int64_t nows[] = {NOW, INT64_MAX, INT64_MIN, 0};
    for (size_t k = 0; k < sizeof nows / sizeof nows[0]; k++) {
        struct auth_identity id;
        enum auth_error e = verify(hs, tok, n, nows[k], &id);
        if (e == AUTH_OK) {
            json_t *js = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
            CHECK(json_is_object(js));
            json_t *sub = json_object_get(js, "sub");
            CHECK(json_is_string(sub) && strcmp(json_string_value(sub), id.user) == 0);
            CHECK(json_is_integer(json_object_get(js, "exp")));
            CHECK(id.has_rooms == (json_object_get(js, "rooms") != NULL));
            CHECK(id.can_broadcast == json_is_true(json_object_get(js, "broadcast")));
            json_decref(js);
        }
        auth_identity_free(&id);
    }
    free(tok);
}

static int inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && n <= len && (size_t)(p - base) <= len - n;
}

static void from_request(const char *buf, size_t size)
{
    static char qbuf[AUTH_MAX_TOKEN + 1];
    struct http_request req;
    if (http_parse_request(buf, size, &req, NULL) < 0) return;
    const struct auth *modes[] = {NULL, hs, none};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        const char *tok = NULL;
        size_t n = 0;
        int pi = -2;
        int r = modes[m] ? auth_token_find_for(modes[m], &req, qbuf, &tok, &n, &pi)
                         : auth_token_find(&req, qbuf, &tok, &n, &pi);
        CHECK(pi >= -1);
        if (r != 0) {
            CHECK(r == -1 && tok == NULL && n == 0);
            continue;
        }
        CHECK(tok != NULL);
        CHECK(inside(tok, n, buf, size) || (inside(tok, n, qbuf, sizeof qbuf - 1) && !tok[n]));
        struct auth_identity id;
        (void)verify(modes[m] ? modes[m] : hs, tok, n, NOW, &id);
        auth_identity_free(&id);
        (void)verify(none, tok, n, NOW, &id);
        auth_identity_free(&id);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!hs) init();
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);

    struct auth_identity id;
    (void)verify(hs, buf, size, NOW, &id);
    auth_identity_free(&id);
    (void)verify(none, buf, size, NOW, &id);
    auth_identity_free(&id);

    signed_payload(data, size);
    from_request(buf, size);
    free(buf);
    return 0;
}
