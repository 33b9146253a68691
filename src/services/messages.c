/* Shape checks for the chat, notification and data messages (see messages.h). */
#include "services/messages.h"

#include <string.h>

#include "proto/envelope.h"

static int opt_string(json_t *p, const char *k)
{
    json_t *v = json_object_get(p, k);
    return !v || json_is_string(v);
}

int service_check(const char *type, json_t *payload, const char **why)
{
    if (strcmp(type, "chat_message") == 0) {
        if (!json_is_string(json_object_get(payload, "content"))) {
            *why = "chat_message needs a string content";
            return -1;
        }
        /* The author, and a room_id written into the payload, are ids like any other:
         * the rule of /ws (proto_name_check). */
        if (proto_name_check(json_object_get(payload, "user_id")) != PE_NONE) {
            *why = "chat_message needs a string user_id (the author) of 1-128 bytes without "
                   "control characters";
            return -1;
        }
        json_t *room = json_object_get(payload, "room_id");
        if (room && proto_name_check(room) != PE_NONE) {
            *why = "chat_message room_id must be a string of 1-128 bytes without control "
                   "characters";
            return -1;
        }
        return 0;
    }
    if (strcmp(type, "notification") == 0) {
        if (!json_is_string(json_object_get(payload, "title"))) {
            *why = "notification needs a string title";
            return -1;
        }
        if (!opt_string(payload, "body") || !opt_string(payload, "link")) {
            *why = "notification body and link must be strings";
            return -1;
        }
        json_t *pr = json_object_get(payload, "priority");
        if (!pr) {
            json_object_set_new(payload, "priority", json_string("normal"));
        } else {
            const char *s = json_string_value(pr);
            if (!s || (strcmp(s, "low") && strcmp(s, "normal") && strcmp(s, "high"))) {
                *why = "notification priority must be low, normal or high";
                return -1;
            }
        }
        return 0;
    }
    if (strcmp(type, "data_update") == 0) {
        if (!json_object_get(payload, "data")) {
            *why = "data_update needs data";
            return -1;
        }
        return 0;
    }
    return 0;
}
