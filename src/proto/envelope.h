/* The JSON envelope on the wire (docs/protocol.md): parsing what clients send and
 * building what the server sends.
 *
 * In:  {"type": "...", "payload": {...}, "timestamp": "...", "id": "..."}
 *      type is required (a string); payload, when present, must be an object (the
 *      guide's Payload is map[string]interface{}); id is optional (a string of at
 *      most 64 bytes or an integer) and is echoed in the ack and in errors; every
 *      other member is ignored here (traceparent, or the guide's trace_id/span_id,
 *      are read by the tracing, telemetry/spans.h).
 * Out: every message the server sends is an object with "type", "payload" and a
 *      server "timestamp" (RFC 3339 UTC, milliseconds), plus where they apply "from"
 *      (the sender's authenticated user id), "room_id", "seq", "id", and when the
 *      message is traced the guide's "trace_id" and "span_id" (of its send span).
 *
 * Ownership: struct envelope holds a reference to the parsed jansson tree; release it
 * with envelope_free. Frames built here are ws frames (base/msg.h) with one
 * reference for the caller. */
#ifndef WSHUB_PROTO_ENVELOPE_H
#define WSHUB_PROTO_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/msg.h"

#define PROTO_MAX_ID   64
#define PROTO_MAX_NAME 128 /* room and user ids */
#define PROTO_MAX_TYPE 64  /* message types */

/* Machine-readable error codes of `error` messages (and of the API's JSON errors). */
enum proto_err {
    PE_NONE = 0,
    PE_BAD_JSON,      /* not JSON text */
    PE_BAD_ENVELOPE,  /* not an object; type missing or not a string; payload not an
                         object; id of the wrong kind */
    PE_UNKNOWN_TYPE,  /* a type the server does not handle */
    PE_MISSING_FIELD, /* a required payload field is absent */
    PE_BAD_FIELD,     /* a field of the wrong kind, empty, too long or not allowed */
    PE_NOT_MEMBER,    /* sending to a room one has not joined, under the member policy */
    PE_FORBIDDEN,     /* the token or the server's policy does not allow it */
    PE_RATE_LIMITED,
    PE_TOO_LARGE, /* too many rooms joined, or similar size limits */
    PE_BINARY,    /* binary frames carry no envelope on /ws */
    PE_INTERNAL,
    PE_SHUTTING_DOWN, /* the server is shutting down: the message was not taken */
    PE_LIMIT_REACHED, /* a node-wide or per-address limit (rooms) is used up */
    PE_UNAVAILABLE,   /* cluster mode: Redis cannot be reached; the message was not taken */
    PE_COUNT
};

const char *proto_err_code(enum proto_err e);

enum msg_type {
    MT_UNKNOWN = 0,
    MT_JOIN_ROOM,
    MT_LEAVE_ROOM,
    MT_SEND_TO_ROOM,
    MT_SEND_TO_USER,
    MT_BROADCAST,
    MT_CHAT_MESSAGE,
    MT_ONLINE_USERS,
    MT_ROOM_MEMBERS,
    MT_LIST_ROOMS,
    MT_PING,
    MT_REFRESH, /* a fresh token for the open connection (hub/client.c) */
};

/* A payload to send: its JSON text as the client wrote it (relayed byte for byte, so
 * numbers keep their spelling: jansson would print 3.14159 as 3.1415899999999999),
 * or else a jansson value to serialise. */
struct proto_payload {
    json_t *json;    /* used when raw is NULL; NULL too means {} */
    const char *raw; /* exact JSON text of an object, or NULL */
    size_t raw_len;
};

struct envelope {
    json_t *root;
    enum msg_type type;
    const char *type_str;     /* points into root */
    json_t *payload;          /* borrowed from root; an empty object when absent */
    json_t *id;               /* borrowed; NULL when absent */
    struct proto_payload out; /* the payload to relay: raw text when it could be found */
};

/* Parses a client's text message. Returns PE_NONE, or the error (with *detail set to
 * a static human-readable text). On error env->id is still set when the id could
 * be read, so the error can name it. */
enum proto_err envelope_parse(const char *data, size_t len, struct envelope *env,
                              const char **detail);
void envelope_free(struct envelope *env);

/* A payload string field that must be a valid name (room or user id), by
 * proto_name_check. Returns PE_NONE with *out set, PE_MISSING_FIELD or PE_BAD_FIELD. */
enum proto_err envelope_name(const struct envelope *env, const char *field, const char **out);

/* The one rule for room and user ids, whatever the entry point (/ws payloads, the HTTP
 * API): a string of 1..PROTO_MAX_NAME bytes without control characters (0x00-0x1f,
 * 0x7f). PE_NONE; PE_MISSING_FIELD when v is NULL or JSON null; else PE_BAD_FIELD. */
enum proto_err proto_name_check(json_t *v);

/* The one rule for message types, whatever the entry point: a string of
 * 1..PROTO_MAX_TYPE bytes without control characters. PE_NONE or PE_BAD_ENVELOPE
 * (with *detail set). Whether the type is one the entry point handles is its own
 * business (/ws: unknown_type; the API takes any type but the server's own). */
enum proto_err proto_type_check(json_t *v, const char **detail);

/* Builds the outgoing JSON text of a message and wraps it in a ws text frame:
 * {"type","payload","timestamp"[,"from"][,"room_id"][,"seq"][,"id"]}. payload may be
 * NULL ({}); from, room, id optional; seq 0 means absent. NULL on allocation failure. */
struct wh_msg *proto_frame(const char *type, const struct proto_payload *payload, const char *from,
                           const char *room, uint64_t seq, json_t *id);

/* The same JSON text, unframed and cut where the seq's digits go: a malloc'd text
 * whose first *split bytes end with "seq": and whose rest follows the number (the
 * cluster's publish script splices the position Redis assigns in between). NULL on
 * allocation failure. */
char *proto_text_split(const char *type, const struct proto_payload *payload, const char *from,
                       const char *room, size_t *len, size_t *split);

/* Shorthand for a payload held as a jansson value. */
static inline struct proto_payload proto_json(json_t *j)
{
    struct proto_payload p = {j, NULL, 0};
    return p;
}

/* In the JSON object text[0..len) (already known to be valid JSON), finds the value of
 * the top-level member `key`: 1 with *val and *val_len set, 0 when absent, -1 when it
 * cannot tell (a key written with escapes). Allocates nothing; never reads past len. */
int proto_find_member(const char *text, size_t len, const char *key, const char **val,
                      size_t *val_len);

/* {"type":"error","payload":{"code":..,"message":..,"id"?:..}} */
struct wh_msg *proto_error_frame(enum proto_err e, const char *message, json_t *id);

/* {"type":"ack","payload":{"id":..,"seq"?:..,"room_id"?:..}} */
struct wh_msg *proto_ack_frame(json_t *id, const char *room, uint64_t seq);

/* Current time as RFC 3339 UTC with milliseconds, into out (>= 32 bytes). */
void proto_timestamp(char *out, size_t cap);

/* Frees this thread's serialisation buffer (call when a worker thread ends). */
void proto_thread_cleanup(void);

/* Wraps text in a ws text frame (copying it). */
struct wh_msg *proto_text_frame(const char *text, size_t len);

#endif
