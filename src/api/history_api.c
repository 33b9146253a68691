/* GET /api/rooms/{id}/history and GET /api/users/{id}/history (api.h): a stream's
 * kept messages, as the very JSON text that was delivered, with the stream's
 * position and epoch. The response is built by concatenating the kept frames'
 * payloads: nothing is re-encoded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"

/* The payload of a server text frame (unmasked; RFC 6455 5.2). */
static void frame_text(const struct wh_msg *m, const char **p, size_t *n)
{
    uint8_t l = m->data[1] & 0x7f;
    size_t off = l < 126 ? 2 : l == 126 ? 4 : 10;
    *p = (const char *)m->data + off;
    *n = m->len - off;
}

static int query_u64(const struct http_request *req, const char *key, uint64_t *out)
{
    char buf[24];
    int n = http_query_param(req->query, req->query_len, key, buf, sizeof buf);
    if (n == -1) return 0;
    if (n <= 0 || n > 20) return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (buf[i] < '0' || buf[i] > '9' || v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(buf[i] - '0');
    }
    *out = v;
    return 1;
}

void api_history(struct http_ctx *ctx, struct api *a, bool user, const char *id)
{
    /* Users' streams are private: the API key, always. Rooms' whenever one is set. */
    if (user && !a->api_key) {
        http_respond_error(ctx, 403, "forbidden",
                           "user history needs the API key: start wshub with --api-key", NULL);
        return;
    }
    if (a->api_key && !api_key_ok(a, ctx->req)) {
        http_respond_error(ctx, 401, "unauthorized", "missing or wrong API key",
                           "WWW-Authenticate: Bearer\r\n");
        return;
    }
    uint64_t since = 0, limit = 100;
    if (query_u64(ctx->req, "since", &since) < 0 || query_u64(ctx->req, "limit", &limit) < 0 ||
        limit < 1 || limit > HUB_HISTORY_MAX) {
        http_respond_error(ctx, 400, "bad_field",
                           "since must be a whole number, limit 1-1000 (default 100)", NULL);
        return;
    }
    struct hub_history *h = malloc(sizeof *h);
    if (!h) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    h->n = (int)limit;
    if (hub_history(a->hub, user, id, since, h) < 0) {
        free(h);
        http_respond_error(ctx, 404, "not_found", "no stream by that name (never used, or expired)",
                           NULL);
        return;
    }
    json_t *head = json_pack("{s:s, s:s, s:I, s:I, s:b}", user ? "user_id" : "room_id", id, "epoch",
                             h->epoch, "seq", (json_int_t)h->top, "first_seq", (json_int_t)h->first,
                             "complete", h->from == since + 1);
    char *ht = head ? json_dumps(head, JSON_COMPACT) : NULL;
    json_decref(head);
    size_t cap = (ht ? strlen(ht) : 0) + 32, len = 0;
    for (int i = 0; i < h->n; i++)
        cap += h->frames[i]->len + 1;
    char *out = ht ? malloc(cap) : NULL;
    if (out) {
        /* {head..., "messages":[frame,frame,...]}\n */
        len = strlen(ht) - 1; /* without the closing brace */
        memcpy(out, ht, len);
        len += (size_t)sprintf(out + len, ",\"messages\":[");
        for (int i = 0; i < h->n; i++) {
            const char *p;
            size_t n;
            frame_text(h->frames[i], &p, &n);
            if (i) out[len++] = ',';
            memcpy(out + len, p, n);
            len += n;
        }
        len += (size_t)sprintf(out + len, "]}\n");
    }
    for (int i = 0; i < h->n; i++)
        msg_unref(h->frames[i]);
    free(h);
    free(ht);
    if (!out) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    http_respond(ctx, 200, "application/json", NULL, out, len);
    free(out);
}
