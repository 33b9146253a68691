/* OTLP protobuf encoding (opentelemetry-proto, collector v1): ExportTraceServiceRequest
 * and ExportMetricsServiceRequest, written with pb.h. Field numbers are those of the
 * official .proto files (common/v1, resource/v1, trace/v1, metrics/v1).
 *
 * A request is written in three steps: otlp_*_begin (resource and instrumentation
 * scope), the items, otlp_*_end. The resource is encoded once at start-up into a
 * struct otlp_resource and copied into every request.
 *
 * Ownership: the caller owns the pb buffer; struct otlp_resource owns its bytes. */
#ifndef WSHUB_TELEMETRY_OTLP_H
#define WSHUB_TELEMETRY_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/pb.h"
#include "telemetry/trace.h"

#define OTLP_SCOPE_NAME "wshub"

struct otlp_resource {
    struct pb enc; /* the Resource message body (its attributes) */
    char service_name[128];
};

/* Builds the resource: service.name (OTEL_SERVICE_NAME, else service.name from
 * OTEL_RESOURCE_ATTRIBUTES, else "wshub"), service.version, host.name,
 * process.pid, telemetry.sdk.*, and every other key=value pair of
 * OTEL_RESOURCE_ATTRIBUTES (comma-separated, values percent-decoded). Either string
 * may be NULL. Returns 0, or -1 with err set when the attributes are malformed (the
 * spec says to ignore such a variable: the resource is still built, without them). */
int otlp_resource_init(struct otlp_resource *r, const char *service_name, const char *attrs,
                       char *err, size_t cap);
void otlp_resource_free(struct otlp_resource *r);

/* KeyValue helpers (field is the repeated KeyValue field of the enclosing message). */
void otlp_kv_str(struct pb *pb, uint32_t field, const char *key, const char *v, size_t n);
void otlp_kv_int(struct pb *pb, uint32_t field, const char *key, int64_t v);
void otlp_kv_bool(struct pb *pb, uint32_t field, const char *key, bool v);
void otlp_kv_double(struct pb *pb, uint32_t field, const char *key, double v);

/* ---- traces ---- */
struct otlp_marks {
    size_t rs, ss; /* open ResourceSpans/Metrics and ScopeSpans/Metrics */
};
void otlp_traces_begin(struct pb *pb, const struct otlp_resource *r, struct otlp_marks *m);
void otlp_span(struct pb *pb, const struct span *s);
void otlp_traces_end(struct pb *pb, struct otlp_marks *m);

/* ---- metrics ----
 * Between otlp_metrics_begin and _end, each metric is otlp_metric_begin (name,
 * description, unit and which data kind), its data points, otlp_metric_end. */
enum otlp_metric_kind { OTLP_GAUGE, OTLP_SUM_MONOTONIC, OTLP_SUM_UPDOWN, OTLP_HISTOGRAM };

struct otlp_metric {
    size_t metric, data;
    enum otlp_metric_kind kind;
};

void otlp_metrics_begin(struct pb *pb, const struct otlp_resource *r, struct otlp_marks *m);
void otlp_metric_begin(struct pb *pb, struct otlp_metric *om, const char *name, const char *desc,
                       const char *unit, enum otlp_metric_kind kind);
/* One NumberDataPoint; attrs is an optional list of n_attrs key/value string pairs
 * (keys[i], vals[i]). start/time: ns since the epoch (cumulative: start is the
 * process's start). */
void otlp_point_int(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                    uint64_t time_ns, int64_t v, const char *const *keys, const char *const *vals,
                    size_t n_attrs);
void otlp_point_double(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                       uint64_t time_ns, double v, const char *const *keys, const char *const *vals,
                       size_t n_attrs);
/* One HistogramDataPoint: counts has n_bounds + 1 entries. */
void otlp_point_histogram(struct pb *pb, const struct otlp_metric *om, uint64_t start_ns,
                          uint64_t time_ns, uint64_t count, double sum, const double *bounds,
                          size_t n_bounds, const uint64_t *counts, const char *const *keys,
                          const char *const *vals, size_t n_attrs);
void otlp_metric_end(struct pb *pb, struct otlp_metric *om);
void otlp_metrics_end(struct pb *pb, struct otlp_marks *m);

#endif
