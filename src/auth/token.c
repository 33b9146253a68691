/* Token authentication of the upgrade (see token.h for the rules). Finding the token
 * is plain slicing of the parsed request. Verifying a JWT is split in two: this file
 * first reads the header and payload itself, with a strict base64url decoder and
 * jansson, so that a token which is not a JWT, or which names the wrong alg, gets its
 * own answer instead of the single EINVAL of libjwt; then libjwt 1.10 checks the
 * signature over the very same bytes. libjwt is trusted for nothing else: it accepts
 * "hs256" for HS256, treats a PEM public key given as an HMAC secret as valid (the
 * alg-confusion attack), and checks neither exp nor nbf, so the alg is checked again
 * after it and every claim is read here from its verified grants. */
#include "auth/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define MIN_SECRET   32
#define MIN_RSA_BITS 2048
#define MAX_KEY_FILE (64 * 1024)
#define MAX_LEEWAY   3600
#define MAX_DECODED  (AUTH_MAX_TOKEN / 4 * 3 + 3)
#define BEARER_PROTO "bearer."

struct auth {
    enum auth_mode mode;
    int64_t leeway;
    const char *alg; /* the header's alg for this mode */
    jwt_alg_t jwt_alg;
    unsigned char *key; /* HS256 secret, or the RS256 key as canonical PEM text */
    size_t key_len;
};

static void set_err(char *err, size_t cap, const char *msg)
{
    if (err && cap) snprintf(err, cap, "%s", msg);
}

/* The key is re-encoded by OpenSSL rather than handed to libjwt as read: libjwt parses
 * it again on every verification with no passphrase callback, so a PEM block with
 * encryption headers would make it prompt on the terminal, and a file holding several
 * blocks would be read in ways nobody checked. */
static unsigned char *load_public_key(const char *path, size_t *len, char *err, size_t cap)
{
    char msg[256];
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(msg, sizeof msg, "cannot open public key file %s: %s", path, strerror(errno));
        set_err(err, cap, msg);
        return NULL;
    }
    char *text = malloc(MAX_KEY_FILE + 1);
    size_t n = text ? fread(text, 1, MAX_KEY_FILE + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!text || rerr || n > MAX_KEY_FILE) {
        free(text);
        set_err(err, cap,
                !text  ? "out of memory"
                : rerr ? "cannot read the public key file"
                       : "public key file over 64 KiB");
        return NULL;
    }

    unsigned char *out = NULL;
    BIO *in = BIO_new_mem_buf(text, (int)n);
    /* An empty passphrase instead of none, so OpenSSL never prompts for one. */
    EVP_PKEY *pk = in ? PEM_read_bio_PUBKEY(in, NULL, NULL, (void *)"") : NULL;
    BIO_free(in);
    free(text);
    if (!pk) {
        set_err(err, cap, "no PEM public key (BEGIN PUBLIC KEY) in the public key file");
        return NULL;
    }
    if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
        set_err(err, cap, "the public key is not an RSA key (RS256 needs one)");
    } else if (EVP_PKEY_get_bits(pk) < MIN_RSA_BITS) {
        set_err(err, cap, "the RSA public key is shorter than 2048 bits");
    } else {
        BIO *mem = BIO_new(BIO_s_mem());
        char *pem;
        long plen;
        if (mem && PEM_write_bio_PUBKEY(mem, pk) == 1 && (plen = BIO_get_mem_data(mem, &pem)) > 0 &&
            (out = malloc((size_t)plen + 1)) != NULL) {
            memcpy(out, pem, (size_t)plen);
            out[plen] = '\0';
            *len = (size_t)plen;
        } else {
            set_err(err, cap, "cannot re-encode the public key");
        }
        BIO_free(mem);
    }
    EVP_PKEY_free(pk);
    return out;
}

struct auth *auth_create(const struct auth_config *cfg, char *err, size_t cap)
{
    if (!cfg) {
        set_err(err, cap, "no auth configuration");
        return NULL;
    }
    if (cfg->leeway_s > MAX_LEEWAY) {
        set_err(err, cap, "token leeway over 3600 seconds");
        return NULL;
    }
    struct auth *a = calloc(1, sizeof *a);
    if (!a) {
        set_err(err, cap, "out of memory");
        return NULL;
    }
    a->mode = cfg->mode;
    a->leeway = cfg->leeway_s;
    switch (cfg->mode) {
    case AUTH_NONE:
        return a;
    case AUTH_HS256:
        a->alg = "HS256";
        a->jwt_alg = JWT_ALG_HS256;
        if (!cfg->secret || strlen(cfg->secret) < MIN_SECRET) {
            set_err(err, cap,
                    cfg->secret && cfg->secret[0] ? "HS256 secret shorter than 32 bytes"
                                                  : "HS256 needs a secret");
            break;
        }
        a->key_len = strlen(cfg->secret);
        a->key = malloc(a->key_len + 1);
        if (!a->key) {
            set_err(err, cap, "out of memory");
            break;
        }
        memcpy(a->key, cfg->secret, a->key_len + 1);
        return a;
    case AUTH_RS256:
        a->alg = "RS256";
        a->jwt_alg = JWT_ALG_RS256;
        if (!cfg->public_key_file || !cfg->public_key_file[0]) {
            set_err(err, cap, "RS256 needs a public key file");
            break;
        }
        a->key = load_public_key(cfg->public_key_file, &a->key_len, err, cap);
        if (a->key) return a;
        break;
    default:
        set_err(err, cap, "unknown auth mode");
        break;
    }
    auth_destroy(a);
    return NULL;
}

void auth_destroy(struct auth *a)
{
    if (!a) return;
    if (a->key) {
        /* The secret should not outlive its use in freed heap memory. */
        OPENSSL_cleanse(a->key, a->key_len);
        free(a->key);
    }
    free(a);
}

/* ---- finding the token ---- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int found(const char *t, size_t n, const char **tok, size_t *tok_len)
{
    *tok = t;
    *tok_len = n;
    return 0;
}

/* The token of `Authorization: Bearer <token>`: 1 when the scheme is Bearer. */
static int bearer_header(const struct http_header *h, const char **t, size_t *n)
{
    static const char scheme[] = "bearer";
    const size_t sl = sizeof scheme - 1;
    if (h->value_len < sl || strncasecmp(h->value, scheme, sl) != 0) return 0;
    if (h->value_len > sl && !is_ows(h->value[sl])) return 0; /* "Bearerish" */
    const char *p = h->value + sl, *end = h->value + h->value_len;
    while (p < end && is_ows(*p))
        p++;
    *t = p;
    *n = (size_t)(end - p);
    return 1;
}

/* Walks the offered subprotocols the way the handshake does (every field in order,
 * entries trimmed, empty ones not counted) to find the first `bearer.` entry. */
static int bearer_proto(const struct http_request *req, const char **t, size_t *n)
{
    const size_t pl = sizeof BEARER_PROTO - 1;
    int index = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!http_slice_eq(h->name, h->name_len, "sec-websocket-protocol")) continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end, *s = p;
            while (s < e && is_ows(*s))
                s++;
            while (e > s && is_ows(e[-1]))
                e--;
            if (e > s) {
                if ((size_t)(e - s) >= pl && memcmp(s, BEARER_PROTO, pl) == 0) {
                    *t = s + pl;
                    *n = (size_t)(e - s) - pl;
                    return index;
                }
                index++; /* cannot overflow: entries are fewer than head bytes */
            }
            if (!comma) break;
            p = comma + 1;
        }
    }
    return -1;
}

/* ?key=: 1 when present. A bad encoding still counts as present, with an empty
 * value, so that it is refused rather than skipped. */
static int query_token(const struct http_request *req, const char *key, char *qbuf, const char **t,
                       size_t *n)
{
    if (!qbuf) return 0;
    int r = http_query_param(req->query, req->query_len, key, qbuf, AUTH_MAX_TOKEN + 1);
    if (r == -1) return 0;
    if (r < 0) {
        qbuf[0] = '\0';
        r = 0;
    }
    *t = qbuf;
    *n = (size_t)r;
    return 1;
}

int auth_token_find(const struct http_request *req, char *qbuf, const char **tok, size_t *tok_len,
                    int *proto_index)
{
    const char *t = NULL;
    size_t n = 0;
    *tok = NULL;
    *tok_len = 0;
    *proto_index = -1;

    const struct http_header *h = http_header_find(req, "authorization");
    if (h && bearer_header(h, &t, &n)) return found(t, n, tok, tok_len);
    if (query_token(req, "token", qbuf, &t, &n)) return found(t, n, tok, tok_len);
    *proto_index = bearer_proto(req, &t, &n);
    if (*proto_index >= 0) return found(t, n, tok, tok_len);
    return -1;
}

int auth_token_find_for(const struct auth *a, const struct http_request *req, char *qbuf,
                        const char **tok, size_t *tok_len, int *proto_index)
{
    const char *t;
    size_t n;
    if (auth_token_find(req, qbuf, tok, tok_len, proto_index) == 0) return 0;
    if (a && a->mode == AUTH_NONE && query_token(req, "user_id", qbuf, &t, &n))
        return found(t, n, tok, tok_len);
    return -1;
}

/* ---- verification ---- */

static bool valid_user(const char *s, size_t n)
{
    if (n == 0 || n > AUTH_MAX_USER) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
    }
    return true;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Unpadded base64url into out; -1 unless canonical. Refusing non-zero leftover bits
 * and impossible lengths means one byte string has one encoding, so the bytes read
 * here are the bytes libjwt's laxer decoder reads and signs. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    if (n % 4 == 1) return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = ((acc << 6) | (uint32_t)v) & 0xffffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) return -1;
    return (long)o;
}

/* A segment as a JSON object, or NULL. Duplicate names are refused because libjwt's
 * parser keeps the last one: two readers of one token must not disagree on its sub. */
static json_t *segment_json(const char *s, size_t n, unsigned char *buf)
{
    long len = b64url_decode(s, n, buf);
    if (len <= 0 || memchr(buf, '\0', (size_t)len)) return NULL;
    json_t *js = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (js && !json_is_object(js)) {
        json_decref(js);
        js = NULL;
    }
    return js;
}

/* Everything that can be said of the token before checking its signature. */
static enum auth_error precheck(const struct auth *a, const char *tok, size_t n)
{
    unsigned char buf[MAX_DECODED];
    const char *d1 = memchr(tok, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok))) return AUTH_MALFORMED;
    const char *sig = d2 + 1;
    size_t sig_len = n - (size_t)(sig - tok);
    if (b64url_decode(sig, sig_len, buf) < 0) return AUTH_MALFORMED;

    json_t *payload = segment_json(d1 + 1, (size_t)(d2 - d1 - 1), buf);
    if (!payload) return AUTH_MALFORMED;
    json_decref(payload);

    json_t *head = segment_json(tok, (size_t)(d1 - tok), buf);
    if (!head) return AUTH_MALFORMED;
    enum auth_error e = AUTH_OK;
    json_t *alg = json_object_get(head, "alg");
    json_t *typ = json_object_get(head, "typ");
    if (!json_is_string(alg) || json_object_get(head, "crit") ||
        (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)))
        e = AUTH_MALFORMED;
    else if (strcmp(json_string_value(alg), a->alg) != 0 ||
             json_string_length(alg) != strlen(a->alg))
        e = AUTH_BAD_ALG;
    else if (sig_len == 0)
        e = AUTH_BAD_SIGNATURE;
    json_decref(head);
    return e;
}

/* The verified claims, as libjwt parsed them, or NULL when the signature fails. */
static enum auth_error decode(const struct auth *a, const char *tok, size_t n, json_t **claims)
{
    char z[AUTH_MAX_TOKEN + 1];
    jwt_t *jwt = NULL;
    memcpy(z, tok, n);
    z[n] = '\0';
    /* Never a NULL key: libjwt then skips the signature and reports alg "none". */
    if (jwt_decode(&jwt, z, a->key, (int)a->key_len) != 0 || !jwt) return AUTH_BAD_SIGNATURE;
    /* The precheck saw the right alg, but libjwt parses the header again and compares
     * case-insensitively: what it verified with is what counts. */
    if (jwt_get_alg(jwt) != a->jwt_alg) {
        jwt_free(jwt);
        return AUTH_BAD_ALG;
    }
    char *text = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    if (!text) return AUTH_BAD_SIGNATURE;
    /* json_dumps allocated it with jansson's allocator, malloc unless changed. */
    *claims = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    free(text);
    return json_is_object(*claims) ? AUTH_OK : AUTH_BAD_SIGNATURE;
}

static enum auth_error check_times(const struct auth *a, json_t *claims, int64_t now)
{
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    if (!json_is_integer(exp)) return AUTH_EXPIRED;
    int64_t e = json_integer_value(exp);
    /* Sums are formed only when they cannot overflow: a huge exp never expires, a
     * hugely negative nbf is always past. */
    if (e <= INT64_MAX - a->leeway && now >= e + a->leeway) return AUTH_EXPIRED;
    if (nbf) {
        if (!json_is_integer(nbf)) return AUTH_BAD_CLAIMS;
        int64_t b = json_integer_value(nbf);
        if (b >= INT64_MIN + a->leeway && now < b - a->leeway) return AUTH_NOT_YET_VALID;
    }
    return AUTH_OK;
}

static bool valid_pattern(const char *s, size_t n)
{
    size_t body = n && s[n - 1] == '*' ? n - 1 : n;
    if (n == 0 || body > AUTH_MAX_USER) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}

/* One list of the rooms claim into freshly allocated strings. */
static enum auth_error read_patterns(json_t *list, char ***out, size_t *count)
{
    if (!list) return AUTH_OK;
    if (!json_is_array(list) || json_array_size(list) > AUTH_MAX_PATTERNS) return AUTH_BAD_CLAIMS;
    size_t n = json_array_size(list);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(list, i);
        if (!json_is_string(p) || !valid_pattern(json_string_value(p), json_string_length(p)))
            return AUTH_BAD_CLAIMS;
    }
    if (n == 0) return AUTH_OK;
    char **v = calloc(n, sizeof *v);
    if (!v) return AUTH_BAD_SIGNATURE;
    *out = v;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(json_string_value(json_array_get(list, i)));
        if (!v[i]) return AUTH_BAD_SIGNATURE; /* the caller frees what was made */
        *count = i + 1;
    }
    return AUTH_OK;
}

static enum auth_error read_rooms(json_t *claims, struct auth_identity *id)
{
    json_t *rooms = json_object_get(claims, "rooms");
    if (!rooms) return AUTH_OK;
    if (!json_is_object(rooms)) return AUTH_BAD_CLAIMS;
    const char *key;
    json_t *v;
    json_object_foreach(rooms, key, v)
    {
        /* An unknown member is most likely a misspelt list, which would otherwise
         * silently become an empty one. */
        if (strcmp(key, "join") != 0 && strcmp(key, "publish") != 0) return AUTH_BAD_CLAIMS;
    }
    id->has_rooms = true;
    enum auth_error e = read_patterns(json_object_get(rooms, "join"), &id->join, &id->n_join);
    if (e == AUTH_OK)
        e = read_patterns(json_object_get(rooms, "publish"), &id->publish, &id->n_publish);
    return e;
}

static enum auth_error verify_jwt(const struct auth *a, const char *tok, size_t n, int64_t now,
                                  struct auth_identity *id)
{
    if (n == 0 || n > AUTH_MAX_TOKEN) return AUTH_MALFORMED;
    enum auth_error e = precheck(a, tok, n);
    json_t *claims = NULL;
    if (e == AUTH_OK) e = decode(a, tok, n, &claims);
    if (e == AUTH_OK) e = check_times(a, claims, now);
    if (e == AUTH_OK) {
        int64_t x = json_integer_value(json_object_get(claims, "exp"));
        id->exp = x < 1 ? 1 : x > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)x;
        json_t *sub = json_object_get(claims, "sub");
        if (!json_is_string(sub) || !valid_user(json_string_value(sub), json_string_length(sub)))
            e = AUTH_BAD_SUBJECT;
        else
            memcpy(id->user, json_string_value(sub), json_string_length(sub) + 1);
    }
    if (e == AUTH_OK) e = read_rooms(claims, id);
    if (e == AUTH_OK) {
        json_t *bc = json_object_get(claims, "broadcast");
        if (bc && !json_is_boolean(bc)) e = AUTH_BAD_CLAIMS;
        id->can_broadcast = json_is_true(bc);
    }
    json_decref(claims);
    return e;
}

enum auth_error auth_verify(const struct auth *a, const char *tok, size_t tok_len, int64_t now,
                            struct auth_identity *id)
{
    if (!id) return AUTH_MISSING;
    memset(id, 0, sizeof *id);
    if (!tok) return AUTH_MISSING;
    if (!a) return AUTH_BAD_SIGNATURE;
    enum auth_error e;
    if (a->mode == AUTH_NONE) {
        e = valid_user(tok, tok_len) ? AUTH_OK : AUTH_BAD_SUBJECT;
        if (e == AUTH_OK) memcpy(id->user, tok, tok_len);
    } else {
        e = verify_jwt(a, tok, tok_len, now, id);
    }
    if (e != AUTH_OK) {
        /* The sub may have been copied before a later check failed. */
        auth_identity_free(id);
        memset(id, 0, sizeof *id);
    }
    return e;
}

int64_t auth_leeway(const struct auth *a)
{
    return a ? a->leeway : 0;
}

const char *auth_error_text(enum auth_error e)
{
    switch (e) {
    case AUTH_OK:
        return "authenticated";
    case AUTH_MISSING:
        return "no token: send Authorization: Bearer, ?token= or a bearer.<token> subprotocol";
    case AUTH_MALFORMED:
        return "the token is not a well-formed JWT";
    case AUTH_BAD_ALG:
        return "the token's algorithm is not the one this server accepts";
    case AUTH_BAD_SIGNATURE:
        return "the token's signature is not valid";
    case AUTH_EXPIRED:
        return "the token has expired or carries no exp";
    case AUTH_NOT_YET_VALID:
        return "the token is not valid yet (nbf)";
    case AUTH_BAD_SUBJECT:
        return "the token's sub is missing or not a valid user id";
    case AUTH_BAD_CLAIMS:
        return "the token's claims have the wrong shape";
    }
    return "authentication failed";
}

const char *auth_error_code(enum auth_error e)
{
    switch (e) {
    case AUTH_OK:
        return "ok";
    case AUTH_MISSING:
        return "missing_token";
    case AUTH_MALFORMED:
        return "malformed_token";
    case AUTH_BAD_ALG:
        return "bad_alg";
    case AUTH_BAD_SIGNATURE:
        return "bad_signature";
    case AUTH_EXPIRED:
        return "expired";
    case AUTH_NOT_YET_VALID:
        return "not_yet_valid";
    case AUTH_BAD_SUBJECT:
        return "bad_subject";
    case AUTH_BAD_CLAIMS:
        return "bad_claims";
    }
    return "auth_failed";
}

bool auth_room_match(char *const *patterns, size_t n, const char *room)
{
    if (!patterns || !room) return false;
    size_t rlen = strlen(room);
    for (size_t i = 0; i < n; i++) {
        const char *p = patterns[i];
        if (!p) continue;
        size_t plen = strlen(p);
        if (plen && p[plen - 1] == '*') {
            if (rlen >= plen - 1 && memcmp(room, p, plen - 1) == 0) return true;
        } else if (plen == rlen && memcmp(room, p, rlen) == 0) {
            return true;
        }
    }
    return false;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void auth_identity_free(struct auth_identity *id)
{
    if (!id) return;
    free_list(id->join, id->n_join);
    free_list(id->publish, id->n_publish);
    id->join = id->publish = NULL;
    id->n_join = id->n_publish = 0;
    id->has_rooms = false;
}
