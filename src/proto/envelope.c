/* Envelope parsing and message building with jansson. Outgoing JSON is dumped once
 * into a per-thread scratch buffer and copied once into the frame, behind its ws
 * header: one serialisation per message, however many recipients share the frame. */
#include "proto/envelope.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    env->root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
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
    if (!json_is_string(type) || json_string_length(type) == 0) {
        *detail = "type must be a non-empty string";
        return PE_BAD_ENVELOPE;
    }
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

enum proto_err envelope_name(const struct envelope *env, const char *field, const char **out)
{
    json_t *v = json_object_get(env->payload, field);
    if (!v || json_is_null(v)) return PE_MISSING_FIELD;
    if (!json_is_string(v)) return PE_BAD_FIELD;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n == 0 || n > PROTO_MAX_NAME) return PE_BAD_FIELD;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return PE_BAD_FIELD;
    *out = s;
    return PE_NONE;
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

static struct wh_msg *dump_frame(json_t *obj)
{
    scratch.len = 0;
    if (json_dump_callback(obj, scratch_put, &scratch, JSON_COMPACT) != 0) return NULL;
    struct wh_msg *m = proto_text_frame(scratch.buf, scratch.len);
    /* Keep a modest buffer for the next message; give back a big one. */
    if (scratch.cap > 64 * 1024) {
        free(scratch.buf);
        scratch = (struct scratch){0};
    }
    return m;
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

struct wh_msg *proto_frame(const char *type, json_t *payload, const char *from, const char *room,
                           uint64_t seq, json_t *id)
{
    char ts[40];
    proto_timestamp(ts, sizeof ts);
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "type", json_string(type));
    if (payload)
        json_object_set(o, "payload", payload);
    else
        json_object_set_new(o, "payload", json_object());
    json_object_set_new(o, "timestamp", json_string(ts));
    if (from) json_object_set_new(o, "from", json_string(from));
    if (room) json_object_set_new(o, "room_id", json_string(room));
    if (seq) json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    if (id) json_object_set(o, "id", id);
    struct wh_msg *m = dump_frame(o);
    json_decref(o);
    return m;
}

struct wh_msg *proto_error_frame(enum proto_err e, const char *message, json_t *id)
{
    json_t *p = json_pack("{s:s, s:s}", "code", proto_err_code(e), "message", message);
    if (!p) return NULL;
    if (id) json_object_set(p, "id", id);
    struct wh_msg *m = proto_frame("error", p, NULL, NULL, 0, NULL);
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
    struct wh_msg *m = proto_frame("ack", p, NULL, NULL, 0, NULL);
    json_decref(p);
    return m;
}
