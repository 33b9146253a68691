/* Prometheus text exposition format (version 0.0.4) generated from the metrics
 * registry: HELP and TYPE for every metric, one sample per point, histograms as
 * cumulative _bucket{le=...} samples with _sum and _count. Label values and HELP text
 * are escaped as the format requires.
 *
 * Ownership: prom_render returns a malloc'd buffer the caller frees (NULL when out of
 * memory); it reads only *src, so any thread may call it. */
#ifndef WSHUB_TELEMETRY_PROMETHEUS_H
#define WSHUB_TELEMETRY_PROMETHEUS_H

#include <stdbool.h>
#include <stddef.h>

#include "telemetry/metrics.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

char *prom_render(const struct metrics_source *src, size_t *len);

/* Escapes s as a label value (label_value) or as HELP text into buf, snprintf-style:
 * returns the escaped length; buf is NUL-terminated and truncated to cap. */
size_t prom_escape(char *buf, size_t cap, const char *s, bool label_value);

/* Writes v as the shortest decimal that reads back as v ("+Inf", "-Inf", "NaN" for
 * those); returns the length, as snprintf. */
int prom_format_double(char *buf, size_t cap, double v);

#endif
