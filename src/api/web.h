/* The web page served at GET / (and its CSS, scripts and the JS client): files
 * embedded in the binary at build time (cmake/embed_web.cmake writes the table), or
 * read from a folder given with --web-root. Every answer carries an ETag (FNV-1a 64
 * of the content) and Cache-Control: no-cache, so a browser revalidates each time and
 * gets 304 while the file is unchanged. Paths from --web-root are resolved and must
 * stay inside the folder (no "..", no symlink out of it).
 *
 * Ownership: struct web is filled once at start-up and shared read-only by every
 * worker; the embedded table is static. */
#ifndef WSHUB_API_WEB_H
#define WSHUB_API_WEB_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "http/server.h"

struct web_file {
    const char *path; /* URL path, "/index.html" */
    const unsigned char *data;
    size_t len;
};

/* Written by the build (web_assets.c): the embedded files and their count. */
extern const struct web_file web_embedded[];
extern const size_t web_embedded_count;

#define WEB_MAX_FILES 32

struct web {
    char root[PATH_MAX]; /* --web-root, resolved; empty: the embedded files */
    size_t n;
    char etags[WEB_MAX_FILES][19]; /* "\"%016llx\"" per embedded file */
};

/* Prepares w for serving root (NULL: embedded). Returns 0, or -1 when root cannot be
 * resolved to a folder. */
int web_init(struct web *w, const char *root);

/* The Content-Type for a path's extension. */
const char *web_content_type(const char *path, size_t len);

/* FNV-1a 64 of data, as a quoted ETag value written into out[19]. */
void web_etag(const void *data, size_t len, char out[19]);

/* HTTP handler (any method) for every path no other route took; ud is struct web. */
void web_route(struct http_ctx *ctx, void *ud);

#endif
