/* The bodies of spans.h's entry points: names, kinds and attributes of the guide's
 * spans, with the OpenTelemetry HTTP and messaging semantic conventions where they
 * apply (messaging.system is "wshub": the hub is the messaging system). */
#include "telemetry/spans.h"

#include <string.h>

static _Thread_local struct msg_trace *cur_mt;

static const char *header(const struct http_request *req, const char *name, size_t *len)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == n && strncasecmp(h->name, name, n) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

bool upgrade_trace_begin_slow(struct upgrade_trace *t, const struct http_request *req,
                              const char *peer)
{
    struct trace_ctx parent = {0};
    size_t n = 0;
    const char *tp = header(req, "traceparent", &n);
    /* A malformed traceparent starts a new trace, as W3C Trace Context says. */
    if (tp) traceparent_parse(tp, n, &parent);
    /* Whatever is decided, the connection's messages inherit it through the ctx. */
    t->on = true;
    if (!span_start(&t->span, "websocket.upgrade", SPAN_SERVER, parent.valid ? &parent : NULL)) {
        t->span.recording = false;
        return true;
    }
    trace_hex(t->span.ctx.trace_id, TRACE_ID_LEN, t->trace_hex);
    struct span *s = &t->span;
    span_attr_str(s, "http.request.method", req->method, req->method_len);
    span_attr_str(s, "url.path", req->path, req->path_len);
    span_attr_cstr(s, "url.scheme", "http");
    span_attr_cstr(s, "http.route", "/ws");
    span_attr_cstr(s, "network.protocol.version", req->minor_version ? "1.1" : "1.0");
    span_attr_cstr(s, "client.address", peer);
    const char *ua = header(req, "user-agent", &n);
    if (ua) span_attr_str(s, "user_agent.original", ua, n);
    return true;
}

void upgrade_trace_client(struct upgrade_trace *t, const char *user, const char *client_id)
{
    span_attr_cstr(&t->span, "user.id", user);
    span_attr_cstr(&t->span, "client.id", client_id);
}

void upgrade_trace_end_slow(struct upgrade_trace *t, int status)
{
    struct span *s = &t->span;
    if (!s->recording) return;
    span_attr_int(s, "http.response.status_code", status);
    if (status == 101)
        span_set_status(s, SPAN_OK, NULL);
    else
        span_set_status(s, SPAN_ERROR, status == 401 ? "unauthorized" : "upgrade failed");
    span_end(s);
}

/* The parent a message names: traceparent, else the guide's trace_id + span_id. */
static bool message_parent(json_t *root, struct trace_ctx *out)
{
    if (!root) return false;
    json_t *tp = json_object_get(root, "traceparent");
    if (json_is_string(tp))
        return traceparent_parse(json_string_value(tp), json_string_length(tp), out) == 0;
    json_t *tid = json_object_get(root, "trace_id"), *sid = json_object_get(root, "span_id");
    if (json_is_string(tid) && json_is_string(sid))
        return trace_ids_parse(json_string_value(tid), json_string_length(tid),
                               json_string_value(sid), json_string_length(sid), out) == 0;
    return false;
}

static void messaging_attrs(struct span *s, const char *op)
{
    span_attr_cstr(s, "messaging.system", "wshub");
    span_attr_cstr(s, "messaging.operation.type", op);
}

bool msg_trace_begin_slow(struct msg_trace *t, const struct trace_ctx *conn, json_t *root,
                          const char *type, const char *client_id, const char *user, size_t len)
{
    struct trace_ctx remote;
    const struct trace_ctx *parent = message_parent(root, &remote) ? &remote : conn;
    if (!span_start(&t->rx, "websocket.receive", SPAN_CONSUMER, parent)) return false;
    struct span *s = &t->rx;
    span_attr_cstr(s, "client.id", client_id);
    span_attr_cstr(s, "user.id", user);
    span_attr_cstr(s, "message.type", type ? type : "");
    messaging_attrs(s, "receive");
    span_attr_int(s, "messaging.message.body.size", (int64_t)len);
    json_t *room = root ? json_object_get(json_object_get(root, "payload"), "room_id") : NULL;
    if (json_is_string(room)) {
        span_attr_cstr(s, "room.id", json_string_value(room));
        span_attr_cstr(s, "messaging.destination.name", json_string_value(room));
    }
    json_t *id = root ? json_object_get(root, "id") : NULL;
    if (json_is_string(id)) span_attr_cstr(s, "messaging.message.id", json_string_value(id));
    if (json_is_integer(id)) span_attr_int(s, "messaging.message.id", json_integer_value(id));
    span_start_at(&t->proc, "hub.process_message", SPAN_INTERNAL, &t->rx.ctx, t->rx.start_ns);
    span_attr_cstr(&t->proc, "message.type", type ? type : "");
    if (json_is_string(room)) span_attr_cstr(&t->proc, "room.id", json_string_value(room));
    t->prev = span_activate(&t->proc);
    t->prev_mt = cur_mt;
    cur_mt = t;
    t->on = true;
    return true;
}

void msg_trace_end_slow(struct msg_trace *t)
{
    span_deactivate(t->prev);
    cur_mt = t->prev_mt;
    if (t->proc.status == SPAN_UNSET) span_set_status(&t->proc, SPAN_OK, NULL);
    span_end_pair(&t->proc, &t->rx);
}

void msg_trace_error_slow(const char *code)
{
    struct msg_trace *t = cur_mt;
    if (!t) return;
    span_attr_cstr(&t->proc, "error.type", code);
    span_set_status(&t->proc, SPAN_ERROR, "message refused");
}

bool pub_trace_begin_slow(struct pub_trace *t, const char *type, const char *dest_kind,
                          const char *dest)
{
    if (!span_start(&t->bc, "hub.broadcast", SPAN_INTERNAL, NULL)) return false;
    span_attr_cstr(&t->bc, "message.type", type);
    span_attr_cstr(&t->bc, "destination.kind", dest_kind);
    if (dest) {
        span_attr_cstr(&t->bc, strcmp(dest_kind, "room") == 0 ? "room.id" : "user.id", dest);
    }
    span_start_at(&t->send, "websocket.send", SPAN_PRODUCER, &t->bc.ctx, t->bc.start_ns);
    span_attr_cstr(&t->send, "message.type", type);
    messaging_attrs(&t->send, "send");
    span_attr_cstr(&t->send, "messaging.destination.name", dest ? dest : "*");
    t->prev_active = span_activate(&t->bc);
    t->prev_out = trace_out;
    trace_out = &t->send.ctx;
    t->on = true;
    return true;
}

void pub_trace_end_slow(struct pub_trace *t, int64_t recipients)
{
    trace_out = t->prev_out;
    span_deactivate(t->prev_active);
    span_attr_int(&t->bc, "recipients.count", recipients);
    span_attr_int(&t->send, "recipients.count", recipients);
    span_set_status(&t->bc, SPAN_OK, NULL);
    span_end_pair(&t->send, &t->bc);
}

bool send_trace_begin_slow(struct send_trace *t, const char *type)
{
    if (!(trace_active->flags & TRACE_FLAG_SAMPLED)) return false;
    if (!span_start(&t->send, "websocket.send", SPAN_PRODUCER, NULL)) return false;
    span_attr_cstr(&t->send, "message.type", type);
    messaging_attrs(&t->send, "send");
    struct msg_trace *mt = cur_mt;
    if (mt) {
        /* A reply goes back to the sender: the receive span says who that is. */
        for (uint8_t i = 0; i < mt->rx.n_attrs; i++) {
            const struct span_attr *a = &mt->rx.attrs[i];
            if (strcmp(a->key, "client.id") == 0)
                span_attr_str(&t->send, "client.id", mt->rx.str + a->off, a->len);
        }
    }
    span_attr_int(&t->send, "recipients.count", 1);
    t->prev_out = trace_out;
    trace_out = &t->send.ctx;
    return true;
}

void send_trace_end_slow(struct send_trace *t)
{
    trace_out = t->prev_out;
    span_end(&t->send);
}

bool recover_trace_begin_slow(struct recover_trace *t, const struct trace_ctx *parent,
                              const char *dest_kind, const char *dest, uint64_t since)
{
    const struct trace_ctx *p = parent ? parent : trace_active;
    if (!p || !p->valid || !(p->flags & TRACE_FLAG_SAMPLED)) return false;
    if (!span_start(&t->span, "hub.recover", SPAN_INTERNAL, p)) return false;
    span_attr_cstr(&t->span, "messaging.destination.kind", dest_kind);
    span_attr_cstr(&t->span, "messaging.destination.name", dest);
    span_attr_int(&t->span, "recovery.since", (int64_t)since);
    return true;
}

void recover_trace_end_slow(struct recover_trace *t, bool recovered, uint64_t replayed)
{
    span_attr_bool(&t->span, "recovery.recovered", recovered);
    span_attr_int(&t->span, "recovery.replayed", (int64_t)replayed);
    span_end(&t->span);
}

const char *trace_log_id(char *buf33)
{
    if (!trace_on() || !trace_active || !(trace_active->flags & TRACE_FLAG_SAMPLED)) return NULL;
    trace_hex(trace_active->trace_id, TRACE_ID_LEN, buf33);
    return buf33;
}
