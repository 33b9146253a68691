/* The web page: embedded files or a --web-root folder, with ETag revalidation.
 * Reading a --web-root file happens on the worker's loop (a blocking read of a small
 * local file): that option is for developing the page, not for serving big files. */
#include "api/web.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WEB_MAX_FILE (8u << 20)

void web_etag(const void *data, size_t len, char out[19])
{
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    snprintf(out, 19, "\"%016llx\"", (unsigned long long)h);
}

int web_init(struct web *w, const char *root)
{
    memset(w, 0, sizeof *w);
    if (root) {
        struct stat st;
        if (!realpath(root, w->root) || stat(w->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
            w->root[0] = 0;
            return -1;
        }
        return 0;
    }
    w->n = web_embedded_count < WEB_MAX_FILES ? web_embedded_count : WEB_MAX_FILES;
    for (size_t i = 0; i < w->n; i++)
        web_etag(web_embedded[i].data, web_embedded[i].len, w->etags[i]);
    return 0;
}

static bool ends_with(const char *p, size_t n, const char *ext)
{
    size_t e = strlen(ext);
    return n >= e && memcmp(p + n - e, ext, e) == 0;
}

const char *web_content_type(const char *p, size_t n)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".ts", "text/plain; charset=utf-8"},
        {".map", "application/json"},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (ends_with(p, n, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

/* A URL path we are willing to map to a file: starts with '/', only unreserved
 * characters and '/', no empty, "." or ".." segment (so it cannot climb out of the
 * folder). Percent escapes are not decoded: a path with '%' is not served. */
static bool path_ok(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/' || n > 512) return false;
    size_t seg = 1;
    for (size_t i = 1; i <= n; i++) {
        if (i == n || p[i] == '/') {
            size_t len = i - seg;
            if (i < n && len == 0) return false;
            if ((len == 1 && p[seg] == '.') || (len == 2 && p[seg] == '.' && p[seg + 1] == '.'))
                return false;
            seg = i + 1;
            continue;
        }
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == '~';
        if (!ok) return false;
    }
    return true;
}

/* Does If-None-Match name etag (or "*")? */
static bool not_modified(const struct http_request *req, const char *etag)
{
    const struct http_header *h = http_header_find(req, "If-None-Match");
    if (!h) return false;
    if (h->value_len == 1 && h->value[0] == '*') return true;
    size_t el = strlen(etag);
    for (size_t i = 0; i + el <= h->value_len; i++)
        if (memcmp(h->value + i, etag, el) == 0) return true;
    return false;
}

static void serve(struct http_ctx *ctx, const char *path, size_t plen, const char *etag,
                  const void *data, size_t len)
{
    const struct http_request *req = ctx->req;
    bool get = (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0) ||
               (req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0);
    if (!get) {
        http_respond_error(ctx, 405, "method_not_allowed", "method not allowed for this path",
                           "Allow: GET, HEAD\r\n");
        return;
    }
    char extra[160];
    snprintf(extra, sizeof extra,
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n", etag);
    if (not_modified(req, etag)) {
        /* No body; Content-Length stays the one a 200 would carry (RFC 9110 8.6). */
        bool head = ctx->head;
        ctx->head = true;
        http_respond(ctx, 304, NULL, extra, data, len);
        ctx->head = head;
        return;
    }
    http_respond(ctx, 200, web_content_type(path, plen), extra, data, len);
}

static void not_found(struct http_ctx *ctx)
{
    http_respond_error(ctx, 404, "not_found", "no such endpoint", NULL);
}

static void serve_root(struct http_ctx *ctx, const struct web *w, const char *path, size_t plen)
{
    char full[PATH_MAX], real[PATH_MAX];
    int n = snprintf(full, sizeof full, "%s%.*s", w->root, (int)plen, path);
    if (n < 0 || (size_t)n >= sizeof full || !realpath(full, real)) {
        not_found(ctx);
        return;
    }
    size_t rl = strlen(w->root);
    /* A symlink inside the folder must not lead out of it. */
    if (strncmp(real, w->root, rl) != 0 || real[rl] != '/') {
        not_found(ctx);
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        not_found(ctx);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > WEB_MAX_FILE) {
        close(fd);
        not_found(ctx);
        return;
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len ? len : 1);
    size_t got = 0;
    while (buf && got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != len) {
        free(buf);
        http_respond_error(ctx, 500, "internal", "could not read the file", NULL);
        return;
    }
    char etag[19];
    web_etag(buf, len, etag);
    serve(ctx, path, plen, etag, buf, len);
    free(buf);
}

void web_route(struct http_ctx *ctx, void *ud)
{
    const struct web *w = ud;
    const char *p = ctx->req->path;
    size_t n = ctx->req->path_len;
    char path[600];
    if (!path_ok(p, n)) {
        not_found(ctx);
        return;
    }
    /* A folder's page is its index.html. */
    int pl = snprintf(path, sizeof path, "%.*s%s", (int)n, p, p[n - 1] == '/' ? "index.html" : "");
    if (pl < 0 || (size_t)pl >= sizeof path) {
        not_found(ctx);
        return;
    }
    if (w->root[0]) {
        serve_root(ctx, w, path, (size_t)pl);
        return;
    }
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(web_embedded[i].path, path) == 0) {
            serve(ctx, path, (size_t)pl, w->etags[i], web_embedded[i].data, web_embedded[i].len);
            return;
        }
    }
    not_found(ctx);
}
