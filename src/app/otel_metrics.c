/* Server metrics for the OTLP exporter (see otel_metrics.h). */
#include "app/otel_metrics.h"

#include <stddef.h>

#include "app/server.h"
#include "telemetry/otlp.h"

struct instrument {
    const char *name, *desc, *unit;
    enum otlp_metric_kind kind;
    size_t off; /* into struct wh_stats */
};

static const struct instrument instruments[] = {
    {"websocket.active_connections", "Active WebSocket connections", "{connection}",
     OTLP_SUM_UPDOWN, offsetof(struct wh_stats, ws_open)},
    {"websocket.messages.received", "WebSocket messages received", "{message}", OTLP_SUM_MONOTONIC,
     offsetof(struct wh_stats, ws_msgs_in)},
    {"websocket.messages.sent", "WebSocket messages sent", "{message}", OTLP_SUM_MONOTONIC,
     offsetof(struct wh_stats, ws_msgs_out)},
    {"websocket.bytes.received", "WebSocket payload bytes received", "By", OTLP_SUM_MONOTONIC,
     offsetof(struct wh_stats, ws_bytes_in)},
    {"websocket.bytes.sent", "WebSocket payload bytes sent", "By", OTLP_SUM_MONOTONIC,
     offsetof(struct wh_stats, ws_bytes_out)},
    {"hub.messages.published", "Messages serialised once and posted to the shards", "{message}",
     OTLP_SUM_MONOTONIC, offsetof(struct wh_stats, hub_published)},
    {"hub.deliveries", "Frames queued to recipients", "{message}", OTLP_SUM_MONOTONIC,
     offsetof(struct wh_stats, hub_deliveries)},
};

void otel_server_metrics(void *ud, struct pb *pb, uint64_t start_ns, uint64_t now_ns)
{
    struct wh_stats st;
    server_stats(ud, &st);
    for (size_t i = 0; i < sizeof instruments / sizeof instruments[0]; i++) {
        const struct instrument *in = &instruments[i];
        uint64_t v = *(const uint64_t *)((const char *)&st + in->off);
        struct otlp_metric om;
        otlp_metric_begin(pb, &om, in->name, in->desc, in->unit, in->kind);
        otlp_point_int(pb, &om, start_ns, now_ns, (int64_t)v, NULL, NULL, 0);
        otlp_metric_end(pb, &om);
    }
}
