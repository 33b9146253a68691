/* Unit tests for token authentication: finding the token in an upgrade request and
 * verifying it. Tokens are made here, with libjwt's encoder for the ordinary ones and
 * by hand (base64url and HMAC from libcrypto) for those libjwt would never produce:
 * alg "none", odd headers, duplicate claims, bad encodings. The RSA keys are generated
 * once per run, so no key material lives in the repository. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/token.h"
#include "http/parser.h"

#define NOW    INT64_C(1700000000)
#define LEEWAY 30

static const char secret[] = "an HS256 test secret of 40 bytes........";
static char *rsa_priv, *rsa_pub, *other_priv; /* PEM text */
static char pub_file[64] = "";
static struct auth *hs, *rs, *none;
static struct auth_identity id;

/* ---- helpers ---- */

static char *pem_of(EVP_PKEY *pk, int private_key)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    int ok = private_key ? PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(b, pk);
    assert_int_equal(ok, 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

/* A temporary file holding text; its name goes into path (64 bytes). */
static void temp_file(char *path, const char *text)
{
    strcpy(path, "/tmp/wshub_auth_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static char *b64url(const unsigned char *data, size_t n)
{
    char *out = malloc(n / 3 * 4 + 8);
    assert_non_null(out);
    int m = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    int j = 0;
    for (int i = 0; i < m; i++) {
        char c = out[i];
        if (c == '=') continue;
        out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[j] = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* header.payload.sig from JSON texts and a ready-made signature segment. */
static char *raw_token(const char *header, const char *payload, const char *sig)
{
    char *h = b64url_str(header), *p = b64url_str(payload);
    size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
    char *t = malloc(n);
    assert_non_null(t);
    snprintf(t, n, "%s.%s.%s", h, p, sig);
    free(h);
    free(p);
    return t;
}

/* Signed by hand with HMAC-SHA256, whatever the header says. */
static char *hmac_token(const char *header, const char *payload, const char *key)
{
    char *unsigned_tok = raw_token(header, payload, "");
    size_t n = strlen(unsigned_tok) - 1; /* without the final '.' */
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mlen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)unsigned_tok, n, mac, &mlen));
    char *sig = b64url(mac, mlen);
    char *t = malloc(n + strlen(sig) + 2);
    assert_non_null(t);
    memcpy(t, unsigned_tok, n);
    t[n] = '.';
    strcpy(t + n + 1, sig);
    free(sig);
    free(unsigned_tok);
    return t;
}

/* libjwt's own encoder: claims as JSON, key a secret or a private key PEM. */
static char *lib_token(jwt_alg_t alg, const char *claims, const char *key)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, (int)strlen(key)), 0);
    char *t = jwt_encode_str(jwt);
    assert_non_null(t);
    jwt_free(jwt);
    return t;
}

static char *hs_token(const char *claims)
{
    return lib_token(JWT_ALG_HS256, claims, secret);
}

static char *rs_token(const char *claims)
{
    return lib_token(JWT_ALG_RS256, claims, rsa_priv);
}

/* Verifies and frees the token; id keeps the result until the next call. */
static enum auth_error check(const struct auth *a, char *tok)
{
    auth_identity_free(&id);
    enum auth_error e = auth_verify(a, tok, strlen(tok), NOW, &id);
    free(tok);
    return e;
}

/* Claims with the given extra members and a valid exp unless one is given. */
static char *claims(const char *extra)
{
    static char buf[4096];
    if (strstr(extra, "\"exp\""))
        snprintf(buf, sizeof buf, "{%s}", extra);
    else
        snprintf(buf, sizeof buf, "{\"exp\":%lld%s%s}", (long long)(NOW + 3600),
                 extra[0] ? "," : "", extra);
    return buf;
}

/* ---- fixtures ---- */

static int setup(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_RSA_gen(2048), *o = EVP_RSA_gen(2048);
    if (!k || !o) return -1;
    rsa_priv = pem_of(k, 1);
    rsa_pub = pem_of(k, 0);
    other_priv = pem_of(o, 1);
    EVP_PKEY_free(k);
    EVP_PKEY_free(o);
    temp_file(pub_file, rsa_pub);

    char err[256];
    struct auth_config c = {.mode = AUTH_HS256, .secret = secret, .leeway_s = LEEWAY};
    hs = auth_create(&c, err, sizeof err);
    c = (struct auth_config){.mode = AUTH_RS256, .public_key_file = pub_file, .leeway_s = LEEWAY};
    rs = auth_create(&c, err, sizeof err);
    c = (struct auth_config){.mode = AUTH_NONE};
    none = auth_create(&c, err, sizeof err);
    return hs && rs && none ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    auth_identity_free(&id);
    auth_destroy(hs);
    auth_destroy(rs);
    auth_destroy(none);
    if (pub_file[0]) unlink(pub_file);
    free(rsa_priv);
    free(rsa_pub);
    free(other_priv);
    return 0;
}

/* ---- HS256 and RS256 ---- */

static void test_valid_hs256(void **state)
{
    (void)state;
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"alice\""))), AUTH_OK);
    assert_string_equal(id.user, "alice");
    assert_false(id.has_rooms);
    assert_null(id.join);
    assert_int_equal(id.n_join, 0);
    /* libjwt always writes typ; a token from elsewhere may leave it out. */
    char *t = hmac_token("{\"alg\":\"HS256\"}", claims("\"sub\":\"bob\""), secret);
    assert_int_equal(check(hs, t), AUTH_OK);
    assert_string_equal(id.user, "bob");
    t = hmac_token("{\"typ\":\"jwt\",\"alg\":\"HS256\",\"kid\":\"k1\"}", claims("\"sub\":\"c\""),
                   secret);
    assert_int_equal(check(hs, t), AUTH_OK);
}

static void test_valid_rs256(void **state)
{
    (void)state;
    assert_int_equal(check(rs, rs_token(claims("\"sub\":\"carol\""))), AUTH_OK);
    assert_string_equal(id.user, "carol");
    assert_false(id.has_rooms);
}

static void test_wrong_key(void **state)
{
    (void)state;
    char *t =
        lib_token(JWT_ALG_HS256, claims("\"sub\":\"alice\""), "another secret, also long enough!!");
    assert_int_equal(check(hs, t), AUTH_BAD_SIGNATURE);
    t = lib_token(JWT_ALG_RS256, claims("\"sub\":\"alice\""), other_priv);
    assert_int_equal(check(rs, t), AUTH_BAD_SIGNATURE);
}

static void test_tampered(void **state)
{
    (void)state;
    /* A signature changed in its first character (still canonical base64url). */
    char *t = hs_token(claims("\"sub\":\"alice\""));
    char *sig = strrchr(t, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    assert_int_equal(check(hs, t), AUTH_BAD_SIGNATURE);
    /* Another payload under the original signature. */
    char *good = rs_token(claims("\"sub\":\"alice\""));
    char *forged = raw_token("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", claims("\"sub\":\"admin\""),
                             strrchr(good, '.') + 1);
    free(good);
    assert_int_equal(check(rs, forged), AUTH_BAD_SIGNATURE);
    /* The right header, no signature at all. */
    t = raw_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims("\"sub\":\"alice\""), "");
    assert_int_equal(check(hs, t), AUTH_BAD_SIGNATURE);
}

static void test_alg_mismatch(void **state)
{
    (void)state;
    assert_int_equal(check(hs, rs_token(claims("\"sub\":\"alice\""))), AUTH_BAD_ALG);
    assert_int_equal(check(rs, hs_token(claims("\"sub\":\"alice\""))), AUTH_BAD_ALG);
    /* libjwt reads alg case-insensitively and would verify this one. */
    char *t = hmac_token("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", claims("\"sub\":\"a\""), secret);
    assert_int_equal(check(hs, t), AUTH_BAD_ALG);
    t = hmac_token("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims("\"sub\":\"a\""), secret);
    assert_int_equal(check(hs, t), AUTH_BAD_ALG);
}

/* The classic attack on RS256 verifiers: HMAC keyed with the server's public key,
 * which anyone can fetch. libjwt 1.10 itself accepts it. */
static void test_alg_confusion(void **state)
{
    (void)state;
    char *t = lib_token(JWT_ALG_HS256, claims("\"sub\":\"mallory\""), rsa_pub);
    assert_int_equal(check(rs, t), AUTH_BAD_ALG);
    assert_string_equal(id.user, "");
    t = hmac_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims("\"sub\":\"mallory\""), rsa_pub);
    assert_int_equal(check(rs, t), AUTH_BAD_ALG);
}

static void test_alg_none(void **state)
{
    (void)state;
    char tok[512];
    char *p = b64url_str(claims("\"sub\":\"mallory\""));
    snprintf(tok, sizeof tok, "eyJhbGciOiJub25lIn0.%s.", p);
    free(p);
    assert_int_equal(check(hs, strdup(tok)), AUTH_BAD_ALG);
    assert_int_equal(check(rs, strdup(tok)), AUTH_BAD_ALG);
    /* With a signature tacked on, and spelt otherwise. */
    char *t = hmac_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims("\"sub\":\"m\""), secret);
    assert_int_equal(check(hs, t), AUTH_BAD_ALG);
    t = raw_token("{\"alg\":\"None\"}", claims("\"sub\":\"m\""), "");
    assert_int_equal(check(hs, t), AUTH_BAD_ALG);
    /* No alg at all, or not a string: not a JWS header. */
    t = raw_token("{\"typ\":\"JWT\"}", claims("\"sub\":\"m\""), "");
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
    t = hmac_token("{\"alg\":null}", claims("\"sub\":\"m\""), secret);
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
}

static void test_header_params(void **state)
{
    (void)state;
    char *t = hmac_token("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", claims("\"sub\":\"a\""), secret);
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
    t = hmac_token("{\"alg\":\"HS256\",\"typ\":1}", claims("\"sub\":\"a\""), secret);
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
    t = hmac_token("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", claims("\"sub\":\"a\""),
                   secret);
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
    t = hmac_token("{\"alg\":\"none\",\"alg\":\"HS256\"}", claims("\"sub\":\"a\""), secret);
    assert_int_equal(check(hs, t), AUTH_MALFORMED);
}

/* ---- time ---- */

static void test_expiry(void **state)
{
    (void)state;
    char c[128];
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)(NOW - 100));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_EXPIRED);
    /* Within the leeway, up to its last second (valid while now < exp + leeway). */
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)(NOW - 10));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_OK);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)(NOW - LEEWAY + 1));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_OK);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)(NOW - LEEWAY));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_EXPIRED);
    /* The largest exp must not overflow into the past. */
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":9223372036854775807"))),
                     AUTH_OK);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":-9223372036854775807"))),
                     AUTH_EXPIRED);
    /* With no leeway at all. */
    char err[128];
    struct auth_config cfg = {.mode = AUTH_HS256, .secret = secret};
    struct auth *strict = auth_create(&cfg, err, sizeof err);
    assert_non_null(strict);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)NOW);
    assert_int_equal(check(strict, hs_token(claims(c))), AUTH_EXPIRED);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"exp\":%lld", (long long)NOW + 1);
    assert_int_equal(check(strict, hs_token(claims(c))), AUTH_OK);
    auth_destroy(strict);
}

static void test_exp_missing_or_wrong(void **state)
{
    (void)state;
    assert_int_equal(check(hs, hs_token("{\"sub\":\"a\"}")), AUTH_EXPIRED);
    assert_int_equal(check(rs, rs_token("{\"sub\":\"a\"}")), AUTH_EXPIRED);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":\"2000000000\""))),
                     AUTH_EXPIRED);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":2000000000.5"))),
                     AUTH_EXPIRED);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":true"))), AUTH_EXPIRED);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"exp\":null"))), AUTH_EXPIRED);
}

static void test_nbf(void **state)
{
    (void)state;
    char c[128];
    snprintf(c, sizeof c, "\"sub\":\"a\",\"nbf\":%lld", (long long)(NOW + 100));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_NOT_YET_VALID);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"nbf\":%lld", (long long)(NOW + LEEWAY));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_OK);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"nbf\":%lld", (long long)(NOW + LEEWAY + 1));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_NOT_YET_VALID);
    snprintf(c, sizeof c, "\"sub\":\"a\",\"nbf\":%lld", (long long)(NOW - 100));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_OK);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"nbf\":-9223372036854775807"))),
                     AUTH_OK);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"nbf\":\"yesterday\""))),
                     AUTH_BAD_CLAIMS);
    /* Time is checked before the subject. */
    snprintf(c, sizeof c, "\"nbf\":%lld", (long long)(NOW + 100));
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_NOT_YET_VALID);
}

/* ---- sub ---- */

static void test_subject(void **state)
{
    (void)state;
    char c[512], user[201];
    assert_int_equal(check(hs, hs_token(claims("\"iss\":\"x\""))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":42"))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"\""))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":null"))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":[\"a\"]"))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\\\"b\""))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\\\\b\""))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\\nb\""))), AUTH_BAD_SUBJECT);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"caf\\u00e9\""))), AUTH_BAD_SUBJECT);
    memset(user, 'u', 200);
    user[200] = '\0';
    snprintf(c, sizeof c, "\"sub\":\"%s\"", user);
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_BAD_SUBJECT);
    user[AUTH_MAX_USER + 1] = '\0';
    snprintf(c, sizeof c, "\"sub\":\"%s\"", user);
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_BAD_SUBJECT);
    user[AUTH_MAX_USER] = '\0';
    snprintf(c, sizeof c, "\"sub\":\"%s\"", user);
    assert_int_equal(check(hs, hs_token(claims(c))), AUTH_OK);
    assert_string_equal(id.user, user);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"user 1/x@y~\""))), AUTH_OK);
    assert_string_equal(id.user, "user 1/x@y~");
}

/* ---- rooms ---- */

static void test_rooms_valid(void **state)
{
    (void)state;
    char *t = hs_token(claims(
        "\"sub\":\"a\",\"rooms\":{\"join\":[\"lobby\",\"team-*\"],\"publish\":[\"lobby\"]}"));
    assert_int_equal(check(hs, t), AUTH_OK);
    assert_true(id.has_rooms);
    assert_int_equal(id.n_join, 2);
    assert_string_equal(id.join[0], "lobby");
    assert_string_equal(id.join[1], "team-*");
    assert_int_equal(id.n_publish, 1);
    assert_true(auth_room_match(id.join, id.n_join, "team-red"));
    assert_true(auth_room_match(id.join, id.n_join, "lobby"));
    assert_false(auth_room_match(id.join, id.n_join, "lobby2"));
    assert_false(auth_room_match(id.publish, id.n_publish, "team-red"));

    /* A missing list is an empty one: this token may join anything, publish nothing. */
    t = rs_token(claims("\"sub\":\"a\",\"rooms\":{\"join\":[\"*\"]}"));
    assert_int_equal(check(rs, t), AUTH_OK);
    assert_true(id.has_rooms);
    assert_int_equal(id.n_join, 1);
    assert_int_equal(id.n_publish, 0);
    assert_null(id.publish);
    assert_true(auth_room_match(id.join, id.n_join, "anything"));
    assert_false(auth_room_match(id.publish, id.n_publish, "anything"));

    t = hs_token(claims("\"sub\":\"a\",\"rooms\":{}"));
    assert_int_equal(check(hs, t), AUTH_OK);
    assert_true(id.has_rooms);
    assert_int_equal(id.n_join + id.n_publish, 0);

    t = hs_token(claims("\"sub\":\"a\",\"rooms\":{\"join\":[],\"publish\":[\"a*b\",\"x y\"]}"));
    assert_int_equal(check(hs, t), AUTH_OK);
    assert_true(auth_room_match(id.publish, id.n_publish, "a*b")); /* '*' inside is literal */
    assert_false(auth_room_match(id.publish, id.n_publish, "axb"));
}

/* n patterns of `len` bytes each (the last optionally '*'), as a claims text. */
static char *many_patterns(size_t n, size_t len, int star)
{
    static char buf[4000];
    size_t o = (size_t)snprintf(buf, sizeof buf, "\"sub\":\"a\",\"rooms\":{\"join\":[");
    for (size_t i = 0; i < n; i++) {
        buf[o++] = '"';
        for (size_t j = 0; j < len; j++)
            buf[o++] = (char)('a' + (i + j) % 26);
        if (star) buf[o++] = '*';
        buf[o++] = '"';
        if (i + 1 < n) buf[o++] = ',';
    }
    snprintf(buf + o, sizeof buf - o, "]}");
    return claims(buf);
}

static void test_rooms_limits(void **state)
{
    (void)state;
    assert_int_equal(check(hs, hs_token(many_patterns(AUTH_MAX_PATTERNS, 8, 0))), AUTH_OK);
    assert_int_equal(id.n_join, AUTH_MAX_PATTERNS);
    assert_int_equal(check(hs, hs_token(many_patterns(AUTH_MAX_PATTERNS + 1, 8, 0))),
                     AUTH_BAD_CLAIMS);
    assert_int_equal(check(hs, hs_token(many_patterns(1, AUTH_MAX_USER, 1))), AUTH_OK);
    assert_int_equal(check(hs, hs_token(many_patterns(1, AUTH_MAX_USER + 1, 0))), AUTH_BAD_CLAIMS);
    assert_int_equal(check(hs, hs_token(many_patterns(1, AUTH_MAX_USER + 1, 1))), AUTH_BAD_CLAIMS);
}

static void test_rooms_wrong_shape(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"rooms\":\"lobby\"",
        "\"rooms\":[\"lobby\"]",
        "\"rooms\":null",
        "\"rooms\":true",
        "\"rooms\":{\"join\":\"lobby\"}",
        "\"rooms\":{\"join\":[1,2]}",
        "\"rooms\":{\"join\":[\"a\",null]}",
        "\"rooms\":{\"join\":[[\"a\"]]}",
        "\"rooms\":{\"join\":null}",
        "\"rooms\":{\"publish\":{}}",
        "\"rooms\":{\"join\":[\"a\"],\"publsh\":[\"a\"]}",
        "\"rooms\":{\"admin\":true}",
        "\"rooms\":{\"join\":[\"\"]}",
        "\"rooms\":{\"join\":[\"a\\u0001b\"]}",
        "\"rooms\":{\"join\":[\"a\\u007f\"]}",
    };
    char c[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(c, sizeof c, "\"sub\":\"a\",%s", bad[i]);
        if (check(hs, hs_token(claims(c))) != AUTH_BAD_CLAIMS) fail_msg("accepted: %s", bad[i]);
        assert_string_equal(id.user, ""); /* sub was read, then dropped */
        assert_false(id.has_rooms);
        assert_null(id.join);
    }
    /* Claims are checked after the subject. */
    assert_int_equal(check(hs, hs_token(claims("\"rooms\":7"))), AUTH_BAD_SUBJECT);
}

static void test_broadcast_claim(void **state)
{
    (void)state;
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"broadcast\":true"))), AUTH_OK);
    assert_true(id.can_broadcast);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"broadcast\":false"))), AUTH_OK);
    assert_false(id.can_broadcast);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\""))), AUTH_OK);
    assert_false(id.can_broadcast);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"broadcast\":\"true\""))),
                     AUTH_BAD_CLAIMS);
    assert_false(id.can_broadcast);
    assert_int_equal(check(hs, hs_token(claims("\"sub\":\"a\",\"broadcast\":1"))), AUTH_BAD_CLAIMS);
    assert_int_equal(auth_verify(none, "a", 1, NOW, &id), AUTH_OK);
    assert_false(id.can_broadcast);
}

/* ---- malformed ---- */

static void test_malformed(void **state)
{
    (void)state;
    char *good = hs_token(claims("\"sub\":\"alice\""));
    size_t n = strlen(good);
    char *d1 = strchr(good, '.'), *d2 = strrchr(good, '.');
    char t[AUTH_MAX_TOKEN + 64];

#define EXPECT(a, tokstr, len, want)                                                               \
    do {                                                                                           \
        auth_identity_free(&id);                                                                   \
        assert_int_equal(auth_verify((a), (tokstr), (len), NOW, &id), (want));                     \
    } while (0)

    EXPECT(hs, good, n, AUTH_OK);
    /* The 43-symbol signature cut to 40 symbols (whole bytes: still canonical) and to
     * 41 (a length no encoding has). */
    EXPECT(hs, good, n - 3, AUTH_BAD_SIGNATURE);
    EXPECT(hs, good, n - 2, AUTH_MALFORMED);
    EXPECT(hs, good, (size_t)(d2 - good), AUTH_MALFORMED);      /* two segments */
    EXPECT(hs, good, (size_t)(d1 - good) + 10, AUTH_MALFORMED); /* cut in the payload */
    EXPECT(hs, good, 0, AUTH_MALFORMED);
    EXPECT(hs, "", 0, AUTH_MALFORMED);
    EXPECT(hs, "...", 3, AUTH_MALFORMED);
    EXPECT(hs, "a.b.c", 5, AUTH_MALFORMED);

    snprintf(t, sizeof t, "%s.AAAA", good); /* extra segment */
    EXPECT(hs, t, strlen(t), AUTH_MALFORMED);
    snprintf(t, sizeof t, "%s=", good); /* padding */
    EXPECT(hs, t, strlen(t), AUTH_MALFORMED);
    snprintf(t, sizeof t, "%s", good);
    t[3] = '+'; /* base64, not base64url */
    EXPECT(hs, t, n, AUTH_MALFORMED);
    snprintf(t, sizeof t, "%s", good);
    t[d2 - good + 5] = '*';
    EXPECT(hs, t, n, AUTH_MALFORMED);
    snprintf(t, sizeof t, "%s", good);
    t[d1 - good + 2] = '\0'; /* an embedded NUL within tok_len */
    EXPECT(hs, t, n, AUTH_MALFORMED);
    snprintf(t, sizeof t, " %s", good);
    EXPECT(hs, t, n + 1, AUTH_MALFORMED);
    snprintf(t, sizeof t, "Bearer %s", good);
    EXPECT(hs, t, strlen(t), AUTH_MALFORMED);

    /* Non-zero leftover bits: "e31" decodes to "{}" like "e30" does, and the last
     * symbol of a 43-symbol signature carries 2 such bits. */
    char *p = b64url_str(claims("\"sub\":\"a\""));
    snprintf(t, sizeof t, "e31.%s.sig", p);
    EXPECT(hs, t, strlen(t), AUTH_MALFORMED);
    free(p);
    snprintf(t, sizeof t, "%s", good);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    t[n - 1] = alphabet[(strchr(alphabet, t[n - 1]) - alphabet) | 1];
    EXPECT(hs, t, n, AUTH_MALFORMED);

    /* Segments that are not JSON objects, and JSON with traps. */
    static const char *const heads[] = {"not json", "[\"alg\",\"HS256\"]", "\"HS256\"",
                                        "{\"alg\":\"HS256\"", "{\"alg\":\"HS256\"} x"};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        char *x = hmac_token(heads[i], claims("\"sub\":\"a\""), secret);
        if (check(hs, x) != AUTH_MALFORMED) fail_msg("header accepted: %s", heads[i]);
    }
    static const char *const bodies[] = {"not json",
                                         "[1]",
                                         "42",
                                         "{\"sub\":\"a\"",
                                         "{\"sub\":\"a\",\"sub\":\"admin\",\"exp\":9999999999}",
                                         "{\"sub\":\"a\\u0000b\",\"exp\":9999999999}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *x = hmac_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", bodies[i], secret);
        if (check(hs, x) != AUTH_MALFORMED) fail_msg("payload accepted: %s", bodies[i]);
    }
    /* A raw NUL byte inside the decoded payload: libjwt would read up to it only. */
    {
        static const char payload[] = "{\"sub\":\"a\",\"exp\":9999999999}\0{\"x\":1}";
        char *h = b64url_str("{\"alg\":\"HS256\"}");
        char *pl = b64url((const unsigned char *)payload, sizeof payload - 1);
        snprintf(t, sizeof t, "%s.%s.AAAA", h, pl);
        EXPECT(hs, t, strlen(t), AUTH_MALFORMED);
        free(h);
        free(pl);
    }

    /* Length: one over the limit is refused before anything is read. */
    memset(t, 'A', AUTH_MAX_TOKEN + 1);
    t[10] = '.';
    t[20] = '.';
    EXPECT(hs, t, AUTH_MAX_TOKEN + 1, AUTH_MALFORMED);
    EXPECT(rs, t, AUTH_MAX_TOKEN, AUTH_MALFORMED);
    /* A big but acceptable token. */
    char big[7000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *bc = malloc(sizeof big + 64);
    snprintf(bc, sizeof big + 64, "{\"sub\":\"a\",\"exp\":9999999999,\"pad\":\"%.*s\"}", 5900, big);
    char *bt = hs_token(bc);
    free(bc);
    assert_true(strlen(bt) <= AUTH_MAX_TOKEN);
    assert_int_equal(check(hs, bt), AUTH_OK);
    /* The same, validly signed but over the limit. */
    bc = malloc(sizeof big + 64);
    snprintf(bc, sizeof big + 64, "{\"sub\":\"a\",\"exp\":9999999999,\"pad\":\"%.*s\"}", 6200, big);
    bt = hs_token(bc);
    free(bc);
    assert_true(strlen(bt) > AUTH_MAX_TOKEN);
    assert_int_equal(check(hs, bt), AUTH_MALFORMED);
    free(good);
#undef EXPECT
}

/* ---- AUTH_NONE ---- */

static void test_none_mode(void **state)
{
    (void)state;
    char u[AUTH_MAX_USER + 2];
    assert_int_equal(auth_verify(none, "alice", 5, NOW, &id), AUTH_OK);
    assert_string_equal(id.user, "alice");
    assert_false(id.has_rooms);
    assert_int_equal(auth_verify(none, "alice!bob", 5, NOW, &id), AUTH_OK); /* tok_len rules */
    assert_string_equal(id.user, "alice");
    assert_int_equal(auth_verify(none, "user 1", 6, NOW, &id), AUTH_OK);
    assert_int_equal(auth_verify(none, "", 0, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, "a\"b", 3, NOW, &id), AUTH_BAD_SUBJECT);
    assert_string_equal(id.user, "");
    assert_int_equal(auth_verify(none, "a\\b", 3, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, "a\nb", 3, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, "a\0b", 3, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, "caf\xc3\xa9", 5, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, "a\x7f", 2, NOW, &id), AUTH_BAD_SUBJECT);
    memset(u, 'x', sizeof u);
    assert_int_equal(auth_verify(none, u, AUTH_MAX_USER, NOW, &id), AUTH_OK);
    assert_int_equal(strlen(id.user), AUTH_MAX_USER);
    assert_int_equal(auth_verify(none, u, AUTH_MAX_USER + 1, NOW, &id), AUTH_BAD_SUBJECT);
    assert_int_equal(auth_verify(none, NULL, 0, NOW, &id), AUTH_MISSING);
    assert_int_equal(auth_verify(hs, NULL, 0, NOW, &id), AUTH_MISSING);
    /* Whatever looks like a JWT is a user name here: nothing is verified. */
    assert_int_equal(auth_verify(none, "a.b.c", 5, NOW, &id), AUTH_OK);
    assert_string_equal(id.user, "a.b.c");
}

/* ---- finding the token ---- */

static char *g_req; /* the parsed copy; slices point into it */
static struct http_request req;

static void parse(const char *head)
{
    free(g_req);
    g_req = strdup(head);
    assert_non_null(g_req);
    int r = http_parse_request(g_req, strlen(g_req), &req, NULL);
    if (r != (int)strlen(g_req)) fail_msg("parse %d: %s", r, head);
}

/* Finds the token (through auth_token_find_for with a when a is set) and returns it
 * as a NUL-terminated copy in a static buffer, or NULL. */
static const char *find(const struct auth *a, int *pi)
{
    static char qbuf[AUTH_MAX_TOKEN + 1], out[AUTH_MAX_TOKEN + 1];
    const char *t = (const char *)1;
    size_t n = 99;
    int r = a ? auth_token_find_for(a, &req, qbuf, &t, &n, pi)
              : auth_token_find(&req, qbuf, &t, &n, pi);
    if (r < 0) {
        assert_int_equal(r, -1);
        assert_null(t);
        assert_int_equal(n, 0);
        return NULL;
    }
    assert_int_equal(r, 0);
    assert_true(n <= AUTH_MAX_TOKEN);
    memcpy(out, t, n);
    out[n] = '\0';
    return out;
}

#define GET "GET /ws HTTP/1.1\r\nHost: x\r\n"

static void test_find_authorization(void **state)
{
    (void)state;
    int pi = 7;
    parse(GET "Authorization: Bearer abc.def.ghi\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "abc.def.ghi");
    assert_int_equal(pi, -1);
    parse(GET "authorization: bEaReR \t abc\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "abc");
    /* Another scheme is not a token; nor is a scheme that merely starts with Bearer. */
    parse(GET "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n\r\n");
    assert_null(find(NULL, &pi));
    parse(GET "Authorization: Bearerabc\r\n\r\n");
    assert_null(find(NULL, &pi));
    parse(GET "Authorization: Basic xyz\r\nSec-WebSocket-Protocol: bearer.t1\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "t1");
    /* Bearer with nothing after it is found, and then refused. */
    parse("GET /ws?token=q HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "");
    assert_int_equal(auth_verify(hs, "", 0, NOW, &id), AUTH_MALFORMED);
    parse(GET "\r\n");
    assert_null(find(NULL, &pi));
    assert_int_equal(pi, -1);
}

static void test_find_query(void **state)
{
    (void)state;
    int pi;
    parse("GET /ws?a=1&token=abc%2Edef.g_h-i&b=2 HTTP/1.1\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "abc.def.g_h-i");
    assert_int_equal(pi, -1);
    parse("GET /ws?token=user+one%21 HTTP/1.1\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "user one!");
    /* A bad encoding is found (and empty), not skipped in favour of a later place. */
    parse("GET /ws?token=%zz HTTP/1.1\r\nSec-WebSocket-Protocol: bearer.p\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "");
    assert_int_equal(pi, -1);
    parse("GET /ws?token=a%00b HTTP/1.1\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "");
    parse("GET /ws?token= HTTP/1.1\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "");
    parse("GET /ws?tokens=abc&Token=abc HTTP/1.1\r\n\r\n");
    assert_null(find(NULL, &pi));

    /* Too long to decode into qbuf: found, empty. */
    size_t n = AUTH_MAX_TOKEN + 1;
    char *h = malloc(n + 64);
    assert_non_null(h);
    memcpy(h, "GET /ws?token=", 14);
    memset(h + 14, 'a', n);
    strcpy(h + 14 + n, " HTTP/1.1\r\n\r\n");
    free(g_req);
    g_req = h;
    struct http_limits lim = {16384, 16384, 64};
    assert_true(http_parse_request(g_req, strlen(g_req), &req, &lim) > 0);
    assert_string_equal(find(NULL, &pi), "");
    g_req[14 + n - 1] = ' '; /* exactly AUTH_MAX_TOKEN */
    memcpy(g_req + 14 + n, "HTTP/1.1\r\n\r\n", 13);
    assert_true(http_parse_request(g_req, strlen(g_req), &req, &lim) > 0);
    assert_int_equal(strlen(find(NULL, &pi)), AUTH_MAX_TOKEN);

    /* Without a qbuf the query is not looked at. */
    parse("GET /ws?token=abc HTTP/1.1\r\n\r\n");
    const char *t;
    size_t len;
    assert_int_equal(auth_token_find(&req, NULL, &t, &len, &pi), -1);
}

static void test_find_subprotocol(void **state)
{
    (void)state;
    int pi;
    parse(GET "Sec-WebSocket-Protocol: chat, bearer.abc\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "abc");
    assert_int_equal(pi, 1);
    parse(GET "Sec-WebSocket-Protocol: bearer.x.y.z\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "x.y.z");
    assert_int_equal(pi, 0);
    /* Several fields are one list; empty entries do not count. */
    parse(GET
          "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: ,v1 ,, bearer.t ,bearer.u\r\n"
          "\r\n");
    assert_string_equal(find(NULL, &pi), "t");
    assert_int_equal(pi, 2);
    parse(GET "Sec-WebSocket-Protocol: chat, Bearer.abc, bearerabc\r\n\r\n");
    assert_null(find(NULL, &pi));
    assert_int_equal(pi, -1);
    parse(GET "Sec-WebSocket-Protocol: chat, bearer.\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "");
    assert_int_equal(pi, 1);
}

static void test_find_precedence(void **state)
{
    (void)state;
    int pi;
    parse("GET /ws?token=from-query HTTP/1.1\r\nSec-WebSocket-Protocol: chat, bearer.from-proto\r\n"
          "Authorization: Bearer from-header\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "from-header");
    assert_int_equal(pi, -1); /* only set when the token came from there */
    parse("GET /ws?token=from-query HTTP/1.1\r\nSec-WebSocket-Protocol: bearer.from-proto\r\n\r\n");
    assert_string_equal(find(NULL, &pi), "from-query");
    assert_int_equal(pi, -1);
    parse("GET /ws?user_id=guide HTTP/1.1\r\nSec-WebSocket-Protocol: bearer.from-proto\r\n\r\n");
    assert_string_equal(find(none, &pi), "from-proto");
    assert_int_equal(pi, 0);
}

static void test_find_user_id(void **state)
{
    (void)state;
    int pi;
    parse("GET /ws?user_id=bob%20b HTTP/1.1\r\n\r\n");
    assert_null(find(NULL, &pi));
    assert_string_equal(find(none, &pi), "bob b");
    assert_int_equal(pi, -1);
    assert_null(find(hs, &pi)); /* only in AUTH_NONE */
    assert_null(find(rs, &pi));
    parse("GET /ws?user_id=bob&token=tok HTTP/1.1\r\n\r\n");
    assert_string_equal(find(none, &pi), "tok");
    parse("GET /ws?user_id=%zz HTTP/1.1\r\n\r\n");
    assert_string_equal(find(none, &pi), "");
    assert_null(find(NULL, &pi));
}

/* ---- room patterns ---- */

static void test_room_match(void **state)
{
    (void)state;
    /* The patterns are char * in struct auth_identity, hence arrays, not literals. */
    static char lobby[] = "lobby", team[] = "team-*", x[] = "x", star[] = "*", a[] = "a*";
    char *pats[] = {lobby, team, x};
    char *all[] = {star};
    char *holes[] = {NULL, a};
    assert_true(auth_room_match(pats, 3, "lobby"));
    assert_false(auth_room_match(pats, 3, "lobb"));
    assert_false(auth_room_match(pats, 3, "lobby-2"));
    assert_false(auth_room_match(pats, 3, "Lobby"));
    assert_true(auth_room_match(pats, 3, "team-red"));
    assert_true(auth_room_match(pats, 3, "team-"));
    assert_false(auth_room_match(pats, 3, "team"));
    assert_true(auth_room_match(pats, 3, "x"));
    assert_false(auth_room_match(pats, 2, "x")); /* n bounds the list */
    assert_false(auth_room_match(pats, 3, "y"));
    assert_true(auth_room_match(all, 1, "anything at all"));
    assert_true(auth_room_match(all, 1, ""));
    assert_false(auth_room_match(pats, 0, "lobby"));
    assert_false(auth_room_match(NULL, 0, "lobby"));
    assert_false(auth_room_match(pats, 3, NULL));
    assert_true(auth_room_match(holes, 2, "a"));
    assert_true(auth_room_match(holes, 2, "abc"));
}

/* ---- construction ---- */

static void expect_create_fails(const struct auth_config *c, const char *needle)
{
    char err[256] = "";
    struct auth *a = auth_create(c, err, sizeof err);
    assert_null(a);
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    assert_null(auth_create(c, NULL, 0)); /* no message wanted: no crash either */
    char tiny[4];
    assert_null(auth_create(c, tiny, sizeof tiny));
    assert_int_equal(strlen(tiny), 3);
}

static void test_create_errors(void **state)
{
    (void)state;
    char path[64], err[256];
    struct auth_config c = {.mode = AUTH_HS256};
    expect_create_fails(&c, "secret");
    c.secret = "";
    expect_create_fails(&c, "secret");
    c.secret = "0123456789abcdef0123456789abcde"; /* 31 bytes */
    expect_create_fails(&c, "32 bytes");
    c.secret = "0123456789abcdef0123456789abcdef";
    c.leeway_s = 3601;
    expect_create_fails(&c, "leeway");
    c.leeway_s = 3600;
    struct auth *a = auth_create(&c, err, sizeof err);
    assert_non_null(a);
    auth_destroy(a);
    auth_destroy(NULL);
    expect_create_fails(NULL, "configuration");
    c = (struct auth_config){.mode = (enum auth_mode)7};
    expect_create_fails(&c, "mode");

    c = (struct auth_config){.mode = AUTH_RS256};
    expect_create_fails(&c, "key file");
    c.public_key_file = "/nonexistent/wshub/key.pem";
    expect_create_fails(&c, "/nonexistent/wshub/key.pem");
    c.public_key_file = "/";
    expect_create_fails(&c, "public key");

    static const char *const junk[] = {
        "not a key at all\n",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\n",
        "",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        temp_file(path, junk[i]);
        c.public_key_file = path;
        expect_create_fails(&c, "no PEM public key");
        unlink(path);
    }
    /* A private key is not what is asked for. */
    temp_file(path, rsa_priv);
    c.public_key_file = path;
    expect_create_fails(&c, "no PEM public key");
    unlink(path);

    /* Not RSA, and RSA too short. */
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *small = EVP_RSA_gen(1024);
    assert_non_null(ec);
    assert_non_null(small);
    char *pem = pem_of(ec, 0);
    temp_file(path, pem);
    expect_create_fails(&c, "not an RSA key");
    unlink(path);
    free(pem);
    pem = pem_of(small, 0);
    temp_file(path, pem);
    expect_create_fails(&c, "2048");
    unlink(path);
    free(pem);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(small);

    /* Comments around the key and a second block are fine: only the first key is used. */
    size_t n = strlen(rsa_pub) * 2 + 64;
    char *text = malloc(n);
    assert_non_null(text);
    snprintf(text, n, "# wshub key\n%s\nsome trailer\n%s", rsa_pub, rsa_pub);
    temp_file(path, text);
    free(text);
    a = auth_create(&c, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(check(a, rs_token(claims("\"sub\":\"a\""))), AUTH_OK);
    auth_destroy(a);
    unlink(path);

    /* A key file over the size limit. */
    text = malloc(70000);
    assert_non_null(text);
    memset(text, '#', 69999);
    text[69999] = '\0';
    temp_file(path, text);
    free(text);
    expect_create_fails(&c, "64 KiB");
    unlink(path);
}

static void test_error_strings(void **state)
{
    (void)state;
    for (int e = AUTH_OK; e <= AUTH_BAD_CLAIMS; e++) {
        const char *code = auth_error_code((enum auth_error)e);
        assert_non_null(code);
        assert_true(strlen(auth_error_text((enum auth_error)e)) > 0);
        for (int f = AUTH_OK; f < e; f++)
            assert_string_not_equal(code, auth_error_code((enum auth_error)f));
    }
    assert_string_equal(auth_error_code(AUTH_EXPIRED), "expired");
    assert_non_null(auth_error_code((enum auth_error)99));
    assert_non_null(auth_error_text((enum auth_error)99));
}

static void test_identity_free(void **state)
{
    (void)state;
    struct auth_identity mine;
    char *t =
        hs_token(claims("\"sub\":\"a\",\"rooms\":{\"join\":[\"a\",\"b\"],\"publish\":[\"c\"]}"));
    assert_int_equal(auth_verify(hs, t, strlen(t), NOW, &mine), AUTH_OK);
    free(t);
    auth_identity_free(&mine);
    assert_null(mine.join);
    assert_int_equal(mine.n_join + mine.n_publish, 0);
    auth_identity_free(&mine); /* twice is harmless */
    auth_identity_free(NULL);
    /* A failed verification leaves nothing to free, even with garbage in id before. */
    memset(&mine, 0xa5, sizeof mine);
    assert_int_equal(auth_verify(hs, "x", 1, NOW, &mine), AUTH_MALFORMED);
    assert_null(mine.join);
    assert_string_equal(mine.user, "");
}

/* ---- concurrency: one struct auth shared by threads ---- */

struct worker {
    char *hs_tok, *rs_tok;
    int failures;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 200; i++) {
        struct auth_identity mine;
        if (auth_verify(hs, w->hs_tok, strlen(w->hs_tok), NOW, &mine) != AUTH_OK ||
            strcmp(mine.user, "t1") != 0 || mine.n_join != 1)
            w->failures++;
        auth_identity_free(&mine);
        if (i % 10 == 0) {
            if (auth_verify(rs, w->rs_tok, strlen(w->rs_tok), NOW, &mine) != AUTH_OK) w->failures++;
            auth_identity_free(&mine);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    enum { N = 4 };
    pthread_t th[N];
    struct worker w = {hs_token(claims("\"sub\":\"t1\",\"rooms\":{\"join\":[\"r\"]}")),
                       rs_token(claims("\"sub\":\"t2\"")), 0};
    struct worker ws[N];
    for (int i = 0; i < N; i++) {
        ws[i] = w;
        assert_int_equal(pthread_create(&th[i], NULL, worker_run, &ws[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ws[i].failures, 0);
    }
    free(w.hs_tok);
    free(w.rs_tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hs256),
        cmocka_unit_test(test_valid_rs256),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_alg_mismatch),
        cmocka_unit_test(test_alg_confusion),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_header_params),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_exp_missing_or_wrong),
        cmocka_unit_test(test_nbf),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_rooms_valid),
        cmocka_unit_test(test_rooms_limits),
        cmocka_unit_test(test_rooms_wrong_shape),
        cmocka_unit_test(test_broadcast_claim),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_none_mode),
        cmocka_unit_test(test_find_authorization),
        cmocka_unit_test(test_find_query),
        cmocka_unit_test(test_find_subprotocol),
        cmocka_unit_test(test_find_precedence),
        cmocka_unit_test(test_find_user_id),
        cmocka_unit_test(test_room_match),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_identity_free),
        cmocka_unit_test(test_threads),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    free(g_req);
    return r;
}
