/* The OTLP/HTTP exporter: background threads (one per signal, so that one signal's
 * retries never hold back the other) that batch finished spans (from spanq) and
 * collect metrics, encode them as protobuf (otlp.h) and POST them with libcurl.
 * Nothing here runs on a worker thread except the lock-free span hand-over.
 *
 * Configuration is the OpenTelemetry SDK's environment (otel_config_load): with no
 * endpoint, with OTEL_SDK_DISABLED=true, or with both signals' exporters set to
 * "none", nothing starts and trace_enabled stays false.
 *
 * Delivery: spans are exported when a batch fills or every OTEL_BSP_SCHEDULE_DELAY;
 * metrics every OTEL_METRIC_EXPORT_INTERVAL (cumulative temporality). A failed POST
 * is retried with exponential backoff and jitter on connection failures and on
 * 429/502/503/504 (honouring Retry-After), a bounded number of times; then the batch
 * is dropped and counted. While the exporter waits, producers keep filling their
 * bounded rings and drop (counted) when full: memory never grows with an outage.
 *
 * Threads: telemetry_start before the workers start, telemetry_stop after they have
 * all stopped; the counters may be read from any thread. */
#ifndef WSHUB_TELEMETRY_EXPORT_H
#define WSHUB_TELEMETRY_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "telemetry/metrics.h"
#include "telemetry/pb.h"
#include "telemetry/trace.h"

#define OTEL_URL_MAX 1024

struct otel_signal {
    bool on;
    char url[OTEL_URL_MAX];
    const char *headers; /* "k=v,k2=v2" (values percent-encoded), or NULL */
    uint32_t timeout_ms;
    bool gzip; /* OTEL_EXPORTER_OTLP_COMPRESSION=gzip */
};

struct otel_config {
    struct otel_signal traces, metrics;
    uint32_t bsp_delay_ms, bsp_queue, bsp_batch;
    uint32_t metric_interval_ms;
    struct sampler sampler;
    const char *service_name;   /* OTEL_SERVICE_NAME or NULL */
    const char *resource_attrs; /* OTEL_RESOURCE_ATTRIBUTES or NULL */
};

/* Reads the OTEL_* variables through get (getenv, or a test's table). Returns 0, or
 * -1 with err set for a value that cannot be used (an unknown sampler, a number out
 * of range): the server refuses to start rather than run with telemetry it was not
 * asked for. Strings in c point into what get returned. */
int otel_config_load(struct otel_config *c, const char *(*get)(const char *name), char *err,
                     size_t cap);

/* Starts the exporter for n_threads producing threads; metrics are gathered with
 * gather(gather_ud) on the exporter's thread and encoded from the registry
 * (telemetry/metrics.h). Returns 0 when started, 1 when there is nothing to export
 * (disabled), -1 on failure (logged). */
int telemetry_start(const struct otel_config *c, int n_threads, metrics_gather_fn gather,
                    void *gather_ud);
/* Exports what is left, within deadline_ms, and stops the thread. Idempotent. */
void telemetry_stop(uint32_t deadline_ms);

struct telemetry_counters {
    uint64_t spans_exported;
    uint64_t spans_dropped; /* queue full, or a batch given up after its retries */
    uint64_t export_requests, export_failures, export_retries;
    uint64_t metric_exports;
    uint64_t queue_pending;
};
void telemetry_counters(struct telemetry_counters *out);

/* Writes every metric of the registry, as collected from src, into pb (between
 * otlp_metrics_begin and otlp_metrics_end). */
void otlp_write_registry(struct pb *pb, const struct metrics_source *src);

#endif
