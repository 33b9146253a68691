/* The server's metrics as OTLP (an otel_metrics_fn for telemetry/export.h): the
 * guide's websocket.* instruments and the hub's counters, read from the workers'
 * stats blocks on the exporter thread, cumulative since start.
 *
 * Ownership: ud is the struct wh_server, which outlives the exporter. */
#ifndef WSHUB_APP_OTEL_METRICS_H
#define WSHUB_APP_OTEL_METRICS_H

#include <stdint.h>

#include "telemetry/pb.h"

void otel_server_metrics(void *ud, struct pb *pb, uint64_t start_ns, uint64_t now_ns);

#endif
