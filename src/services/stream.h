/* The live data stream (the guide's section 6.3, with real figures): for each
 * configured room, a timer samples the host (services/hoststats.h) and, while the
 * room has members, publishes a `data_update` message to it:
 *   {"type":"data_update","payload":{"room_id":R,"source":"host","data":{...}}}
 * The streams run on one worker's loop; publishing goes through the hub like any
 * other room message (one serialisation, every shard delivers).
 *
 * Ownership: streams_start returns an object owned by the caller, stopped and freed
 * with streams_stop on the same thread. */
#ifndef WSHUB_SERVICES_STREAM_H
#define WSHUB_SERVICES_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "hub/hub.h"
#include "loop/loop.h"

#define STREAMS_MAX 16

struct stream_spec {
    char room[129];
    uint32_t interval_ms;
};

struct streams;
struct streams *streams_start(struct hub *h, struct loop *loop, const struct stream_spec *specs,
                              int n);
void streams_stop(struct streams *s);

/* Published messages so far (for tests and logs). */
uint64_t streams_published(const struct streams *s);

#endif
