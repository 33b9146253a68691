/* The guide's three server-pushed message kinds, as a backend sends them through
 * POST /api/publish, checked for shape before they go out:
 *   chat_message  (to a room): payload {room_id?, user_id, content: string}, the ids
 *                  as on /ws (proto_name_check)
 *   notification  (to a user): payload {title: string, body?: string, link?: string,
 *                  priority?: "low"|"normal"|"high"}; priority defaults to "normal"
 *   data_update   (to a room): payload {data: any JSON}
 * Any other type passes unchecked (the hub relays application types as they are). */
#ifndef WSHUB_SERVICES_MESSAGES_H
#define WSHUB_SERVICES_MESSAGES_H

#include <jansson.h>

/* Returns 0, or -1 with *why set to a static explanation. May add defaults to
 * payload (notification priority). */
int service_check(const char *type, json_t *payload, const char **why);

#endif
