/* TLS configuration and certificate reload; see tls.h. */
#include "net/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

/* TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only (no CBC, whose padding
 * oracles keep coming back). TLS 1.3 suites are all AEAD and forward-secret, so
 * OpenSSL's default list is kept for them. */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_server {
    char *cert_file, *key_file;
    pthread_mutex_t lock; /* orders the swap in reload against SSL_new */
    SSL_CTX *ctx;
    atomic_uint_fast64_t reloads, reload_failures;
};

/* The only protocol spoken over a wshub connection is HTTP/1.1 (the WebSocket upgrade
 * is an HTTP/1.1 request, RFC 6455 section 4.1). RFC 7301 section 3.2: a server that
 * supports none of the protocols a client offers answers with a fatal
 * no_application_protocol alert; a client that offers no ALPN is served as usual. */
static const unsigned char alpn_ours[] = "\x08http/1.1";

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, alpn_ours, sizeof alpn_ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = sel;
    *outlen = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL's reason for the most recent failure, and an empty error queue after. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "unknown error");
    ERR_clear_error();
    return buf;
}

/* Checks up front that the file can be opened, so that the message says so plainly
 * instead of in OpenSSL's words. */
static int readable(const char *what, const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, cap, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
    (void)buf, (void)size, (void)rwflag, (void)ud;
    return 0;
}

/* True when the PEM file holds an encrypted private key (PKCS#8 or the legacy
 * "Proc-Type: 4,ENCRYPTED" form), to name that mistake plainly. */
static bool key_is_encrypted(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[256];
    bool enc = false;
    while (!enc && fgets(line, sizeof line, f))
        enc = strstr(line, "ENCRYPTED") != NULL;
    fclose(f);
    return enc;
}

static SSL_CTX *build_ctx(const char *cert, const char *key, char *err, size_t cap)
{
    char why[256];
    if (readable("--tls-cert", cert, err, cap) < 0 || readable("--tls-key", key, err, cap) < 0)
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, cap, "cannot create a TLS context: %s", ssl_reason(why, sizeof why));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes: one record per SSL_write, so a full socket costs at most one
     * record's retry. Moving buffer: a retried write may come from a new address.
     * Release buffers: an idle connection gives back its 2 x ~17 KiB record buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read ahead: one read(2) takes in as many records as the socket holds, instead of
     * a header read and a body read per record. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* Resumption through stateless tickets only: the server-side session cache would
     * hold up to 20,480 TLS 1.2 sessions in memory for whoever connects. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid_ctx[] = "wshub";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        snprintf(err, cap, "cannot set the TLS 1.2 cipher list: %s", ssl_reason(why, sizeof why));
        goto fail;
    }
    /* An encrypted key would make OpenSSL prompt on the terminal, from the main
     * thread that also handles SIGTERM (a reload on SIGHUP would hang there): no
     * passphrase is ever given, so such a key fails to load, with a clear reason. */
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, cap, "--tls-cert %s: not a usable PEM certificate chain: %s", cert,
                 ssl_reason(why, sizeof why));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL checks the pair while loading: say which mistake it is. */
        unsigned long e = ERR_peek_last_error();
        bool mismatch =
            ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        if (!mismatch && key_is_encrypted(key)) {
            snprintf(err, cap,
                     "--tls-key %s is encrypted: wshub takes no passphrase; decrypt it "
                     "(openssl pkey -in KEY -out KEY.plain) and protect the file instead",
                     key);
            goto fail;
        }
        snprintf(err, cap,
                 mismatch ? "--tls-key %s does not match the certificate in --tls-cert %s: %s"
                          : "--tls-key %s: not a usable PEM private key for %s: %s",
                 key, cert, ssl_reason(why, sizeof why));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, cap, "--tls-key %s does not match the certificate in --tls-cert %s: %s", key,
                 cert, ssl_reason(why, sizeof why));
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls_server *tls_server_create(const char *cert_file, const char *key_file, char *err,
                                     size_t cap)
{
    SSL_CTX *ctx = build_ctx(cert_file, key_file, err, cap);
    if (!ctx) return NULL;
    struct tls_server *t = calloc(1, sizeof *t);
    if (t) {
        t->cert_file = strdup(cert_file);
        t->key_file = strdup(key_file);
    }
    if (!t || !t->cert_file || !t->key_file) {
        snprintf(err, cap, "out of memory");
        if (t) {
            free(t->cert_file);
            free(t->key_file);
            free(t);
        }
        SSL_CTX_free(ctx);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->ctx = ctx;
    return t;
}

int tls_server_reload(struct tls_server *t, char *err, size_t cap)
{
    SSL_CTX *ctx = build_ctx(t->cert_file, t->key_file, err, cap);
    if (!ctx) {
        atomic_fetch_add(&t->reload_failures, 1);
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(old); /* only our reference: open connections hold their own */
    atomic_fetch_add(&t->reloads, 1);
    return 0;
}

SSL *tls_server_new_ssl(struct tls_server *t, int fd)
{
    pthread_mutex_lock(&t->lock);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->lock);
    if (!ssl) {
        ERR_clear_error();
        return NULL;
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

uint64_t tls_server_reloads(const struct tls_server *t)
{
    return atomic_load(&((struct tls_server *)t)->reloads);
}

uint64_t tls_server_reload_failures(const struct tls_server *t)
{
    return atomic_load(&((struct tls_server *)t)->reload_failures);
}

const char *tls_server_subject(struct tls_server *t, char *out, size_t cap)
{
    out[0] = 0;
    pthread_mutex_lock(&t->lock);
    X509 *cert = SSL_CTX_get0_certificate(t->ctx);
    if (cert) X509_NAME_oneline(X509_get_subject_name(cert), out, (int)cap);
    pthread_mutex_unlock(&t->lock);
    return out;
}

void tls_server_destroy(struct tls_server *t)
{
    if (!t) return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    free(t->cert_file);
    free(t->key_file);
    free(t);
}
