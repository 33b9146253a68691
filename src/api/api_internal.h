/* Shared between the API's handler files (api.c, history_api.c). Not for other
 * modules. */
#ifndef WSHUB_API_API_INTERNAL_H
#define WSHUB_API_API_INTERNAL_H

#include <stdbool.h>

#include "api/api.h"

/* The request carries the API key (X-API-Key or Authorization: Bearer), compared in
 * constant time. a->api_key must be set. */
int api_key_ok(const struct api *a, const struct http_request *req);

/* GET /api/rooms/{id}/history or /api/users/{id}/history, id already decoded. */
void api_history(struct http_ctx *ctx, struct api *a, bool user, const char *id);

#endif
