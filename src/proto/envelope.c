/* Envelope parsing and message building with jansson. Outgoing JSON is dumped once
 * into a per-thread scratch buffer and copied once into the frame, behind its ws
 * header: one serialisation per message, however many recipients share the frame. */
#include "proto/envelope.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "telemetry/trace.h"
#include "ws/frame.h"

static const char *const err_codes[PE_COUNT] = {
    [PE_NONE] = "none",
    [PE_BAD_JSON] = "bad_json",
    [PE_BAD_ENVELOPE] = "bad_envelope",
    [PE_UNKNOWN_TYPE] = "unknown_type",
    [PE_MISSING_FIELD] = "missing_field",
    [PE_BAD_FIELD] = "bad_field",
    [PE_NOT_MEMBER] = "not_member",
    [PE_FORBIDDEN] = "forbidden",
    [PE_RATE_LIMITED] = "rate_limited",
    [PE_TOO_LARGE] = "too_large",
    [PE_BINARY] = "binary_not_supported",
    [PE_INTERNAL] = "internal",
    [PE_SHUTTING_DOWN] = "shutting_down",
    [PE_LIMIT_REACHED] = "limit_reached",
    [PE_UNAVAILABLE] = "unavailable",
};

const char *proto_err_code(enum proto_err e)
{
    return e > PE_NONE && e < PE_COUNT ? err_codes[e] : "internal";
}

static const struct {
    const char *name;
    enum msg_type type;
} types[] = {
    {"join_room", MT_JOIN_ROOM},       {"leave_room", MT_LEAVE_ROOM},
    {"send_to_room", MT_SEND_TO_ROOM}, {"send_to_user", MT_SEND_TO_USER},
    {"broadcast", MT_BROADCAST},       {"chat_message", MT_CHAT_MESSAGE},
    {"online_users", MT_ONLINE_USERS}, {"room_members", MT_ROOM_MEMBERS},
    {"list_rooms", MT_LIST_ROOMS},     {"ping", MT_PING},
    {"refresh", MT_REFRESH},
};

static bool id_ok(json_t *id)
{
    if (json_is_integer(id)) return true;
    return json_is_string(id) && json_string_length(id) <= PROTO_MAX_ID;
}

enum proto_err envelope_parse(const char *data, size_t len, struct envelope *env,
                              const char **detail)
{
    memset(env, 0, sizeof *env);
    json_error_t jerr;
    env->root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!env->root) {
        *detail = "message is not valid JSON";
        return PE_BAD_JSON;
    }
    if (!json_is_object(env->root)) {
        *detail = "message must be a JSON object";
        return PE_BAD_ENVELOPE;
    }
    json_t *id = json_object_get(env->root, "id");
    if (id && !json_is_null(id)) {
        if (!id_ok(id)) {
            *detail = "id must be a string of at most 64 bytes or an integer";
            return PE_BAD_ENVELOPE;
        }
        env->id = id;
    }
    json_t *type = json_object_get(env->root, "type");
    if (proto_type_check(type, detail) != PE_NONE) return PE_BAD_ENVELOPE;
    env->type_str = json_string_value(type);
    json_t *payload = json_object_get(env->root, "payload");
    if (payload && !json_is_null(payload)) {
        if (!json_is_object(payload)) {
            *detail = "payload must be a JSON object";
            return PE_BAD_ENVELOPE;
        }
        env->payload = payload;
    } else {
        /* Owned by root from now on, so envelope_free releases it. */
        env->payload = json_object();
        json_object_set_new(env->root, "payload", env->payload);
    }
    /* Relay the client's own payload text when it can be found (see proto_payload). */
    env->out = proto_json(env->payload);
    const char *raw;
    size_t raw_len;
    if (json_object_get(env->root, "payload") == env->payload && json_is_object(env->payload) &&
        proto_find_member(data, len, "payload", &raw, &raw_len) == 1 && raw_len && raw[0] == '{') {
        env->out.raw = raw;
        env->out.raw_len = raw_len;
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(env->type_str, types[i].name) == 0) env->type = types[i].type;
    if (env->type == MT_UNKNOWN) {
        *detail = "unknown message type";
        return PE_UNKNOWN_TYPE;
    }
    return PE_NONE;
}

void envelope_free(struct envelope *env)
{
    json_decref(env->root);
    env->root = NULL;
}

/* 1..max bytes, none of them a control character. (No NUL: without JSON_ALLOW_NUL
 * jansson refuses \u0000, so the text is bad_json before it gets here.) */
static bool printable_string(json_t *v, size_t max)
{
    if (!json_is_string(v)) return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

enum proto_err proto_name_check(json_t *v)
{
    if (!v || json_is_null(v)) return PE_MISSING_FIELD;
    return printable_string(v, PROTO_MAX_NAME) ? PE_NONE : PE_BAD_FIELD;
}

enum proto_err proto_type_check(json_t *v, const char **detail)
{
    if (printable_string(v, PROTO_MAX_TYPE)) return PE_NONE;
    *detail = "type must be a string of 1-64 bytes without control characters";
    return PE_BAD_ENVELOPE;
}

enum proto_err envelope_name(const struct envelope *env, const char *field, const char **out)
{
    json_t *v = json_object_get(env->payload, field);
    enum proto_err e = proto_name_check(v);
    if (e == PE_NONE) *out = json_string_value(v);
    return e;
}

void proto_timestamp(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n && n + 6 <= cap) snprintf(out + n, cap - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

/* ---- building ---- */

struct scratch {
    char *buf;
    size_t len, cap;
};

static _Thread_local struct scratch scratch;

void proto_thread_cleanup(void)
{
    free(scratch.buf);
    scratch = (struct scratch){0};
}

static int scratch_put(const char *data, size_t size, void *ud)
{
    struct scratch *s = ud;
    if (s->len + size > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + size)
            cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) return -1;
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, size);
    s->len += size;
    return 0;
}

struct wh_msg *proto_text_frame(const char *text, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER];
    size_t hl = ws_frame_header(hdr, WS_OP_TEXT, true, false, len, NULL);
    struct wh_msg *m = msg_new(hl + len);
    if (!m) return NULL;
    memcpy(m->data, hdr, hl);
    memcpy(m->data + hl, text, len);
    return m;
}

static int put_str(const char *s)
{
    /* JSON string escaping of our own fields (type, user and room ids: no control
     * characters reach here, but quotes and backslashes may). */
    if (scratch_put("\"", 1, &scratch)) return -1;
    for (const char *p = s; *p; p++) {
        const char *run = p;
        while (*p && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
            p++;
        if (p > run && scratch_put(run, (size_t)(p - run), &scratch)) return -1;
        if (!*p) break;
        char esc[8];
        int n = (unsigned char)*p < 0x20 ? snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*p)
                                         : snprintf(esc, sizeof esc, "\\%c", *p);
        if (scratch_put(esc, (size_t)n, &scratch)) return -1;
    }
    return scratch_put("\"", 1, &scratch);
}

static int put_lit(const char *s)
{
    return scratch_put(s, strlen(s), &scratch);
}

/* The guide's Message.TraceID and SpanID: the ids of the websocket.send span. */
static int put_trace_ids(const struct trace_ctx *t)
{
    char buf[96];
    memcpy(buf, ",\"trace_id\":\"", 13);
    trace_hex(t->trace_id, TRACE_ID_LEN, buf + 13);
    memcpy(buf + 45, "\",\"span_id\":\"", 13);
    trace_hex(t->span_id, SPAN_ID_LEN, buf + 58);
    buf[74] = '"';
    return scratch_put(buf, 75, &scratch);
}

/* The message's JSON text into the thread's scratch buffer. With split, the text
 * stops its seq member after "\"seq\":" and *split records that length (the digits
 * are the cluster's to put there). Returns 0, or -1 out of memory. */
static int build_text(const char *type, const struct proto_payload *payload, const char *from,
                      const char *room, uint64_t seq, json_t *id, size_t *split)
{
    char ts[40], num[32];
    proto_timestamp(ts, sizeof ts);
    scratch.len = 0;
    int bad = put_lit("{\"type\":") || put_str(type) || put_lit(",\"payload\":");
    if (!bad) {
        if (payload && payload->raw)
            bad = scratch_put(payload->raw, payload->raw_len, &scratch);
        else if (payload && payload->json)
            bad = json_dump_callback(payload->json, scratch_put, &scratch, JSON_COMPACT) != 0;
        else
            bad = put_lit("{}");
    }
    bad = bad || put_lit(",\"timestamp\":\"") || put_lit(ts) || put_lit("\"");
    if (from) bad = bad || put_lit(",\"from\":") || put_str(from);
    if (room) bad = bad || put_lit(",\"room_id\":") || put_str(room);
    if (split) {
        bad = bad || put_lit(",\"seq\":");
        *split = scratch.len;
    } else if (seq) {
        snprintf(num, sizeof num, ",\"seq\":%llu", (unsigned long long)seq);
        bad = bad || put_lit(num);
    }
    if (id)
        bad = bad || put_lit(",\"id\":") ||
              json_dump_callback(id, scratch_put, &scratch, JSON_COMPACT | JSON_ENCODE_ANY) != 0;
    if (trace_on() && trace_out) bad = bad || put_trace_ids(trace_out);
    bad = bad || put_lit("}");
    return bad ? -1 : 0;
}

struct wh_msg *proto_frame(const char *type, const struct proto_payload *payload, const char *from,
                           const char *room, uint64_t seq, json_t *id)
{
    int bad = build_text(type, payload, from, room, seq, id, NULL);
    struct wh_msg *m = bad ? NULL : proto_text_frame(scratch.buf, scratch.len);
    /* Keep a modest buffer for the next message; give back a big one. */
    if (scratch.cap > 64 * 1024) proto_thread_cleanup();
    return m;
}

char *proto_text_split(const char *type, const struct proto_payload *payload, const char *from,
                       const char *room, size_t *len, size_t *split)
{
    char *out = NULL;
    if (build_text(type, payload, from, room, 0, NULL, split) == 0 &&
        (out = malloc(scratch.len ? scratch.len : 1))) {
        memcpy(out, scratch.buf, scratch.len);
        *len = scratch.len;
    }
    if (scratch.cap > 64 * 1024) proto_thread_cleanup();
    return out;
}

/* ---- locating a member in validated JSON text ---- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at an opening quote; returns just past the closing one (or e). */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return e;
}

static const char *skip_value(const char *p, const char *e)
{
    if (p >= e) return e;
    if (*p == '"') return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                p = skip_string(p, e);
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return e;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' &&
           *p != '\r')
        p++;
    return p;
}

int proto_find_member(const char *text, size_t len, const char *key, const char **val,
                      size_t *val_len)
{
    const char *p = text, *e = text + len;
    size_t klen = strlen(key);
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return 0;
    p++;
    for (;;) {
        p = skip_ws(p, e);
        if (p >= e || *p != '"') return 0; /* '}' or malformed: no such member */
        const char *ks = p + 1, *kend = skip_string(p, e);
        if (kend > e || kend - 1 < ks) return 0;
        size_t kl = (size_t)(kend - 1 - ks);
        bool escaped = memchr(ks, '\\', kl) != NULL;
        p = skip_ws(kend, e);
        if (p >= e || *p != ':') return 0;
        p = skip_ws(p + 1, e);
        const char *vs = p;
        p = skip_value(p, e);
        if (escaped) return -1;
        if (kl == klen && memcmp(ks, key, klen) == 0) {
            *val = vs;
            *val_len = (size_t)(p - vs);
            return 1;
        }
        p = skip_ws(p, e);
        if (p >= e || *p != ',') return 0;
        p++;
    }
}

struct wh_msg *proto_error_frame(enum proto_err e, const char *message, json_t *id)
{
    json_t *p = json_pack("{s:s, s:s}", "code", proto_err_code(e), "message", message);
    if (!p) return NULL;
    if (id) json_object_set(p, "id", id);
    struct proto_payload pp = proto_json(p);
    struct wh_msg *m = proto_frame("error", &pp, NULL, NULL, 0, NULL);
    json_decref(p);
    return m;
}

struct wh_msg *proto_ack_frame(json_t *id, const char *room, uint64_t seq)
{
    json_t *p = json_object();
    if (!p) return NULL;
    if (id) json_object_set(p, "id", id);
    if (room) json_object_set_new(p, "room_id", json_string(room));
    if (seq) json_object_set_new(p, "seq", json_integer((json_int_t)seq));
    struct proto_payload pp = proto_json(p);
    struct wh_msg *m = proto_frame("ack", &pp, NULL, NULL, 0, NULL);
    json_decref(p);
    return m;
}
