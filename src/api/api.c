/* HTTP API handlers (see api.h). Reads go to the hub's registry; publishing goes
 * through the hub like a client's message, so a backend's chat, notification and
 * data messages reach members exactly as a client's would. */
#include "api/api.h"
#include "api/api_internal.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/stats.h"
#include "net/conn.h"
#include "proto/envelope.h"
#include "services/messages.h"
#include "telemetry/prometheus.h"

static void respond_json(struct http_ctx *ctx, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        http_respond_error(ctx, 500, "internal", "cannot encode the response", NULL);
    } else {
        size_t n = strlen(text);
        text[n] = '\n'; /* replaces the NUL: the length is passed explicitly */
        http_respond(ctx, status, "application/json", NULL, text, n + 1);
        free(text);
    }
    json_decref(body);
}

/* Cluster mode: how long a request waits for Redis's answer before 504. Longer than
 * the Redis command timeout (5 s), so that Redis's own failure answers first (503). */
#define API_CLUSTER_WAIT_MS 10000

/* respond_json through a deferred request's handle (which it frees). */
static void deferred_json(struct http_deferred *d, int status, json_t *body)
{
    char *text = body && !http_deferred_gone(d) ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        http_deferred_respond_error(d, 500, "internal", "cannot encode the response", NULL);
    } else {
        size_t n = strlen(text);
        text[n] = '\n';
        http_deferred_respond(d, status, "application/json", NULL, text, n + 1);
        free(text);
    }
    json_decref(body);
}

static void deferred_unavailable(struct http_deferred *d)
{
    http_deferred_respond_error(d, 503, "unavailable", "the cluster's Redis cannot be reached",
                                "Retry-After: 1\r\n");
}

/* Cluster mode: a listing waiting for Redis's page (hub_list_async), answered with
 * the single-node shape. */
struct list_wait {
    struct api *a;
    struct http_deferred *d;
    enum hub_listing kind;
    char room[PROTO_MAX_NAME + 1];
};

static void list_back(void *arg, int status, struct hub_page *pg)
{
    struct list_wait *w = arg;
    if (status == HUB_LIST_FAILED) {
        deferred_unavailable(w->d);
    } else if (status == HUB_LIST_NOT_FOUND) {
        http_deferred_respond_error(w->d, 404, "not_found", "no such room (no members)", NULL);
    } else {
        json_t *body = hub_page_json(pg, w->kind == HUB_LIST_ONLINE  ? "online_users"
                                         : w->kind == HUB_LIST_ROOMS ? "rooms"
                                                                     : "members");
        /* "connections" stays this node's own count: Redis keeps users, not sockets. */
        if (body && w->kind == HUB_LIST_ONLINE)
            json_object_set_new(body, "connections",
                                json_integer((json_int_t)hub_connection_count(w->a->hub)));
        if (body && w->kind == HUB_LIST_MEMBERS)
            json_object_set_new(body, "room_id", json_string(w->room));
        deferred_json(w->d, 200, body);
    }
    free(w);
}

/* Cluster mode: defers the request and asks Redis for the page. */
static void list_cluster(struct http_ctx *ctx, struct api *a, enum hub_listing kind,
                         const char *room, const char *after, size_t limit)
{
    struct list_wait *w = calloc(1, sizeof *w);
    if (!w) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    w->a = a;
    w->kind = kind;
    if (room) snprintf(w->room, sizeof w->room, "%s", room);
    if (!(w->d = http_defer(ctx, API_CLUSTER_WAIT_MS))) {
        free(w);
        return;
    }
    /* The answer is posted to this worker's loop, so it cannot run before this returns. */
    if (hub_list_async(a->hub, kind, room, after, limit, conn_loop(ctx->conn), list_back, w) != 0) {
        deferred_unavailable(w->d);
        free(w);
    }
}

/* The per-address listing budget (hub_query_take): false (and 429 answered) when it
 * is used up. */
static bool query_allowed(struct api *a, struct http_ctx *ctx, size_t limit)
{
    char ip[64];
    conn_peer(ctx->conn, ip, sizeof ip);
    if (hub_query_take(a->hub, ip, hub_query_cost(limit), ctx->start_ms)) return true;
    STAT_INC(hub_query_limited);
    http_respond_error(ctx, 429, "rate_limited", "too many listing queries: slow down",
                       "Retry-After: 1\r\n");
    return false;
}

/* Decodes a query value (%XX, '+' is a space) into out. Returns its length, or -1
 * when malformed, holding a control character, or too long for out. */
static int query_decode(const char *s, size_t n, char *out, size_t cap);

/* ?limit=&cursor= of a listing; other parameters are ignored. Answers 400 and returns
 * false when one is malformed or repeated. */
static bool page_query(struct http_ctx *ctx, char *cursor, size_t cap, const char **after,
                       size_t *limit)
{
    const struct http_request *req = ctx->req;
    *after = NULL;
    *limit = HUB_PAGE_DEFAULT;
    bool seen_limit = false, seen_cursor = false;
    const char *p = req->query, *end = req->query ? req->query + req->query_len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t klen = (size_t)((eq ? eq : e) - p);
        const char *v = eq ? eq + 1 : e;
        size_t vlen = (size_t)(e - v);
        if (klen == 5 && memcmp(p, "limit", 5) == 0) {
            char num[8];
            int n = query_decode(v, vlen, num, sizeof num);
            unsigned long lim = 0;
            bool ok = !seen_limit && n > 0 && n <= 4;
            for (int i = 0; ok && i < n; i++) {
                ok = num[i] >= '0' && num[i] <= '9';
                lim = lim * 10 + (unsigned long)(num[i] - '0');
            }
            if (!ok || lim < 1 || lim > HUB_PAGE_MAX) {
                http_respond_error(ctx, 400, "bad_field",
                                   "limit must be a whole number from 1 to 1000, given once", NULL);
                return false;
            }
            seen_limit = true;
            *limit = lim;
        } else if (klen == 6 && memcmp(p, "cursor", 6) == 0) {
            if (seen_cursor || query_decode(v, vlen, cursor, cap) <= 0) {
                http_respond_error(ctx, 400, "bad_field",
                                   "cursor must be a next_cursor value (1-128 bytes), given once",
                                   NULL);
                return false;
            }
            seen_cursor = true;
            *after = cursor;
        }
        p = amp ? amp + 1 : end;
    }
    return true;
}

static void online(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    char cursor[PROTO_MAX_NAME + 1];
    const char *after;
    size_t limit;
    if (!page_query(ctx, cursor, sizeof cursor, &after, &limit) || !query_allowed(a, ctx, limit))
        return;
    if (hub_cluster(a->hub)) {
        list_cluster(ctx, a, HUB_LIST_ONLINE, NULL, after, limit);
        return;
    }
    struct hub_page pg;
    hub_online_users(a->hub, after, limit, &pg);
    json_t *body = hub_page_json(&pg, "online_users");
    if (body)
        json_object_set_new(body, "connections",
                            json_integer((json_int_t)hub_connection_count(a->hub)));
    respond_json(ctx, 200, body);
}

static void rooms(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    char cursor[PROTO_MAX_NAME + 1];
    const char *after;
    size_t limit;
    if (!page_query(ctx, cursor, sizeof cursor, &after, &limit) || !query_allowed(a, ctx, limit))
        return;
    if (hub_cluster(a->hub)) {
        list_cluster(ctx, a, HUB_LIST_ROOMS, NULL, after, limit);
        return;
    }
    struct hub_page pg;
    hub_rooms(a->hub, after, limit, &pg);
    respond_json(ctx, 200, hub_page_json(&pg, "rooms"));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes a path segment ('+' stays '+', unlike in a query). Returns the
 * length, or -1 when malformed, holding %00, or too long for out. */
static int path_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) return -1; /* as room ids on /ws */
        if (k + 1 >= cap) return -1;
        out[k++] = c;
    }
    out[k] = 0;
    return (int)k;
}

static int query_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) return -1; /* as ids on /ws */
        if (k + 1 >= cap) return -1;
        out[k++] = c;
    }
    out[k] = 0;
    return (int)k;
}

static bool ends_with(const struct http_request *req, size_t pl, const char *suffix)
{
    size_t sl = strlen(suffix);
    return req->path_len > pl + sl && memcmp(req->path + req->path_len - sl, suffix, sl) == 0;
}

/* /api/rooms/{id}/members and /api/rooms/{id}/history, /api/users/{id}/history, with
 * {id} percent-decoded. */
static void room_members(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    const struct http_request *req = ctx->req;
    bool user = req->path_len > 11 && memcmp(req->path, "/api/users/", 11) == 0;
    size_t pl = 11; /* strlen("/api/rooms/") == strlen("/api/users/") */
    bool history = ends_with(req, pl, "/history");
    if (!history && (user || !ends_with(req, pl, "/members"))) {
        http_respond_error(ctx, 404, "not_found", "no such endpoint", NULL);
        return;
    }
    size_t sl = 8; /* strlen("/history") == strlen("/members") */
    size_t seg_len = req->path_len - pl - sl;
    char room[PROTO_MAX_NAME + 1];
    if (memchr(req->path + pl, '/', seg_len)) {
        http_respond_error(ctx, 404, "not_found", "no such room", NULL);
        return;
    }
    if (path_decode(req->path + pl, seg_len, room, sizeof room) <= 0) {
        http_respond_error(ctx, 400, "bad_field", "room id is empty, too long or badly encoded",
                           NULL);
        return;
    }
    if (history) {
        api_history(ctx, a, user, room);
        return;
    }
    char cursor[PROTO_MAX_NAME + 1];
    const char *after;
    size_t limit;
    if (!page_query(ctx, cursor, sizeof cursor, &after, &limit) || !query_allowed(a, ctx, limit))
        return;
    if (hub_cluster(a->hub)) {
        list_cluster(ctx, a, HUB_LIST_MEMBERS, room, after, limit);
        return;
    }
    struct hub_page pg;
    if (hub_room_members(a->hub, room, after, limit, &pg) < 0) {
        http_respond_error(ctx, 404, "not_found", "no such room (no members)", NULL);
        return;
    }
    json_t *body = hub_page_json(&pg, "members");
    if (body) json_object_set_new(body, "room_id", json_string(room));
    respond_json(ctx, 200, body);
}

int api_key_ok(const struct api *a, const struct http_request *req)
{
    const char *given = NULL;
    size_t glen = 0;
    const struct http_header *h = http_header_find(req, "X-API-Key");
    if (h) {
        given = h->value;
        glen = h->value_len;
    } else if ((h = http_header_find(req, "Authorization")) && h->value_len > 7 &&
               strncasecmp(h->value, "Bearer ", 7) == 0) {
        given = h->value + 7;
        glen = h->value_len - 7;
    }
    size_t klen = strlen(a->api_key);
    /* Constant time over the key's length: timing must not reveal a prefix. */
    return given && glen == klen && CRYPTO_memcmp(given, a->api_key, klen) == 0;
}

/* 400 with the error code a /ws client would get for the same fault, counted by code
 * (wshub_api_publish_refused_total). why is a constant string: no escaping needed. */
static void refuse(struct http_ctx *ctx, enum proto_err e, const char *why)
{
    STAT_INC(api_publish_refused[e]);
    http_respond_error(ctx, 400, proto_err_code(e), why, NULL);
}

/* The body's envelope: type, payload, one target. Types and ids follow the rules of
 * /ws (proto/envelope.h), with its error codes. */
static enum proto_err envelope_check(json_t *type, json_t *payload, json_t *room, json_t *user,
                                     int targets, const char **why)
{
    if (proto_type_check(type, why) != PE_NONE) return PE_BAD_ENVELOPE;
    if (payload && !json_is_object(payload)) {
        *why = "payload must be an object";
        return PE_BAD_ENVELOPE;
    }
    if (targets != 1) {
        *why = "give exactly one target: room_id, user_id, or broadcast: true";
        return PE_BAD_ENVELOPE;
    }
    if ((room && proto_name_check(room) != PE_NONE) ||
        (user && proto_name_check(user) != PE_NONE)) {
        *why = "room_id and user_id must be strings of 1-128 bytes without control characters";
        return PE_BAD_FIELD;
    }
    return PE_NONE;
}

/* Cluster mode: a publish waiting for the position Redis assigns. */
struct pub_wait {
    struct http_deferred *d;
    int target;
    char id[PROTO_MAX_NAME + 1];
};

static void publish_back(void *arg, int ok, uint64_t seq)
{
    struct pub_wait *w = arg;
    if (!ok) {
        STAT_INC(api_publish_refused[PE_UNAVAILABLE]);
        deferred_unavailable(w->d);
    } else {
        json_t *resp = w->target == HUB_TARGET_ROOM
                           ? json_pack("{s:s, s:s, s:I}", "status", "published", "room_id", w->id,
                                       "seq", (json_int_t)seq)
                       : w->target == HUB_TARGET_USER
                           ? json_pack("{s:s, s:s, s:I}", "status", "published", "user_id", w->id,
                                       "seq", (json_int_t)seq)
                           : json_pack("{s:s, s:b}", "status", "published", "broadcast", 1);
        deferred_json(w->d, 202, resp);
    }
    free(w);
}

/* Cluster mode: defers the request until Redis has placed the message in its stream
 * (its seq is then the one every member receives), or 503 when Redis is unreachable.
 * The payload is copied by hub_publish_async before it returns. */
static void publish_cluster(struct http_ctx *ctx, int target, const char *id, const char *type,
                            const struct proto_payload *pp, struct api *a)
{
    struct pub_wait *w = calloc(1, sizeof *w);
    if (!w) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    w->target = target;
    if (id) snprintf(w->id, sizeof w->id, "%s", id);
    if (!(w->d = http_defer(ctx, API_CLUSTER_WAIT_MS))) {
        free(w); /* the client is gone: nothing is published */
        return;
    }
    if (hub_publish_async(a->hub, target, id, type, pp, conn_loop(ctx->conn), publish_back, w) !=
        0) {
        STAT_INC(api_publish_refused[PE_UNAVAILABLE]);
        deferred_unavailable(w->d);
        free(w);
    }
}

static void publish(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    if (hub_closing(a->hub)) {
        /* As on /ws: nothing is taken once shutdown began, so no 202 goes unkept. */
        STAT_INC(hub_shutdown_refused);
        http_respond_error(ctx, 503, "shutting_down", "the server is shutting down",
                           "Retry-After: 1\r\n");
        return;
    }
    if (!a->api_key) {
        http_respond_error(ctx, 403, "forbidden",
                           "the publish API is disabled: start wshub with --api-key", NULL);
        return;
    }
    if (!api_key_ok(a, ctx->req)) {
        http_respond_error(ctx, 401, "unauthorized", "missing or wrong API key",
                           "WWW-Authenticate: Bearer\r\n");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)ctx->body, ctx->body_len,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!json_is_object(body)) {
        /* As on /ws: bad_json for text that is not JSON, bad_envelope for JSON that is
         * not an object. */
        refuse(ctx, body ? PE_BAD_ENVELOPE : PE_BAD_JSON, "the body must be a JSON object");
        json_decref(body);
        return;
    }
    json_t *type = json_object_get(body, "type");
    json_t *payload = json_object_get(body, "payload");
    json_t *room = json_object_get(body, "room_id");
    json_t *user = json_object_get(body, "user_id");
    json_t *all = json_object_get(body, "broadcast");
    int targets = (room != NULL) + (user != NULL) + (all != NULL && json_is_true(all));
    const char *why = NULL;
    enum proto_err e = envelope_check(type, payload, room, user, targets, &why);
    if (e != PE_NONE) {
        json_decref(body);
        refuse(ctx, e, why);
        return;
    }
    if (!payload) {
        payload = json_object();
        json_object_set_new(body, "payload", payload);
    }
    const char *t = json_string_value(type);
    static const char *const reserved[] = {"presence",    "error",     "ack",  "dropped",
                                           "room_joined", "room_left", "pong", NULL};
    for (const char *const *r = reserved; *r; r++) {
        if (strcmp(t, *r) == 0) {
            json_decref(body);
            refuse(ctx, PE_BAD_FIELD, "that type is reserved for the server's own messages");
            return;
        }
    }
    if (room && strcmp(t, "chat_message") == 0 && !json_object_get(payload, "room_id"))
        json_object_set(payload, "room_id", room);
    if (service_check(t, payload, &why) != 0) {
        json_decref(body);
        refuse(ctx, PE_BAD_FIELD, why);
        return;
    }
    /* Relay the backend's payload text as written, unless the checks above may have
     * added to it (defaults of the guide's message kinds). */
    struct proto_payload pp = proto_json(payload);
    const char *raw;
    size_t raw_len;
    bool amended = strcmp(t, "notification") == 0 || strcmp(t, "chat_message") == 0;
    if (!amended &&
        proto_find_member((const char *)ctx->body, ctx->body_len, "payload", &raw, &raw_len) == 1 &&
        raw_len && raw[0] == '{') {
        pp.raw = raw;
        pp.raw_len = raw_len;
    }
    if (hub_cluster(a->hub)) {
        publish_cluster(ctx,
                        room   ? HUB_TARGET_ROOM
                        : user ? HUB_TARGET_USER
                               : HUB_TARGET_ALL,
                        json_string_value(room ? room : user), t, &pp, a);
        json_decref(body);
        return;
    }
    json_t *resp;
    if (room) {
        uint64_t seq = hub_publish_room(a->hub, json_string_value(room), t, &pp, NULL);
        resp = seq ? json_pack("{s:s, s:s, s:I}", "status", "published", "room_id",
                               json_string_value(room), "seq", (json_int_t)seq)
                   : json_pack("{s:s, s:s}", "status", "no_members", "room_id",
                               json_string_value(room));
    } else if (user) {
        uint64_t seq = hub_publish_user(a->hub, json_string_value(user), t, &pp, NULL);
        resp = json_pack("{s:s, s:s, s:I}", "status", "published", "user_id",
                         json_string_value(user), "seq", (json_int_t)seq);
    } else {
        hub_publish_all(a->hub, t, &pp, NULL);
        resp = json_pack("{s:s, s:b}", "status", "published", "broadcast", 1);
    }
    json_decref(body);
    respond_json(ctx, 202, resp);
}

static void readyz(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    if (atomic_load(&a->shutting_down))
        http_respond_error(ctx, 503, "shutting_down", "the server is shutting down", NULL);
    else if (!hub_ready(a->hub))
        http_respond_error(ctx, 503, "unavailable", "the cluster's Redis cannot be reached", NULL);
    else
        http_respond(ctx, 200, "application/json", NULL, "{\"status\":\"ready\"}\n", 19);
}

/* GET /metrics: the registry rendered as Prometheus text (telemetry/prometheus.h). */
static void metrics(struct http_ctx *ctx, void *ud)
{
    struct api *a = ud;
    struct metrics_source src;
    a->gather(a->gather_ud, &src);
    size_t n = 0;
    char *text = prom_render(&src, &n);
    if (!text) {
        http_respond_error(ctx, 500, "internal", "out of memory", NULL);
        return;
    }
    http_respond(ctx, 200, PROM_CONTENT_TYPE, NULL, text, n);
    free(text);
}

void api_add_routes(struct api *a, struct http_route *routes, size_t *n, size_t max)
{
    const struct http_route mine[] = {
        {"GET", "/api/online", online, a},        {"GET", "/api/rooms", rooms, a},
        {"GET", "/api/rooms/*", room_members, a}, {"GET", "/api/users/*", room_members, a},
        {"POST", "/api/publish", publish, a},     {"GET", "/readyz", readyz, a},
        {"GET", "/metrics", metrics, a},
    };
    for (size_t i = 0; i < sizeof mine / sizeof mine[0] && *n < max; i++)
        routes[(*n)++] = mine[i];
}
