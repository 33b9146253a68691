/* GET /echo: every message comes back as it was sent (text as text, binary as
 * binary): the conformance and benchmark target. A client that sends faster than it
 * reads is slowed down rather than buffered without bound: when its queue passes the
 * send-queue limits the server stops reading from it until the queue drains, and TCP
 * flow control pushes back on the client. */
#ifndef WSHUB_APP_ECHO_H
#define WSHUB_APP_ECHO_H

#include "http/server.h"

/* Route handler; ud is the struct routes_ctx. */
void echo_route(struct http_ctx *ctx, void *ud);

struct ws_handler;
extern const struct ws_handler echo_ws_handler; /* the endpoint's callbacks */

#endif
