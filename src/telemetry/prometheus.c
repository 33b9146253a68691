/* The Prometheus text writer (see prometheus.h): a metrics visitor appending to a
 * growing buffer. Runs once per scrape, so plain malloc/realloc is fine here. */
#include "telemetry/prometheus.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    char *p;
    size_t n, cap;
    bool failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->failed) return;
    if (o->n + n + 1 > o->cap) {
        size_t cap = (o->cap ? o->cap * 2 : 4096) + n;
        char *np = realloc(o->p, cap);
        if (!np) {
            o->failed = true;
            return;
        }
        o->p = np;
        o->cap = cap;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
putf(struct out *o, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k > 0) put(o, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
}

/* HELP escapes backslash and newline; label values also escape the double quote.
 * Returns the escape sequence for c, or NULL when c stands for itself. */
static const char *escape_of(char c, bool label_value)
{
    if (c == '\\') return "\\\\";
    if (c == '\n') return "\\n";
    if (label_value && c == '"') return "\\\"";
    return NULL;
}

static void escaped(struct out *o, const char *s, bool label_value)
{
    for (; *s; s++) {
        const char *e = escape_of(*s, label_value);
        if (e)
            puts_(o, e);
        else
            put(o, s, 1);
    }
}

size_t prom_escape(char *buf, size_t cap, const char *s, bool label_value)
{
    size_t n = 0;
    for (; *s; s++) {
        const char *e = escape_of(*s, label_value);
        size_t k = e ? strlen(e) : 1;
        for (size_t i = 0; i < k; i++, n++)
            if (n + 1 < cap) buf[n] = e ? e[i] : *s;
    }
    if (cap) buf[n < cap ? n : cap - 1] = 0;
    return n;
}

int prom_format_double(char *buf, size_t cap, double v)
{
    if (isnan(v)) return snprintf(buf, cap, "NaN");
    if (isinf(v)) return snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    /* Whole numbers as integers ("5000", not the shorter "5e+03"). */
    if (v == floor(v) && fabs(v) < 1e15) return snprintf(buf, cap, "%.0f", v);
    int k = 0;
    for (int prec = 1; prec <= 17; prec++) {
        k = snprintf(buf, cap, "%.*g", prec, v);
        if (k < 0 || (size_t)k >= cap || strtod(buf, NULL) == v) break;
    }
    return k;
}

static void put_double(struct out *o, double v)
{
    char buf[40];
    int k = prom_format_double(buf, sizeof buf, v);
    if (k > 0 && (size_t)k < sizeof buf) put(o, buf, (size_t)k);
}

static const char *prom_type(enum metric_kind k)
{
    switch (k) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

/* The Prometheus base unit of a UCUM unit, NULL for none ("{message}" is a count). */
static const char *prom_unit(const char *ucum)
{
    if (strcmp(ucum, "By") == 0) return "bytes";
    if (strcmp(ucum, "s") == 0) return "seconds";
    return NULL;
}

/* In the 0.0.4 format a counter's HELP and TYPE name the sample, _total included.
 * UNIT is OpenMetrics' line: the 0.0.4 parser takes it for a comment (promtool
 * accepts it), and it is written only where the name carries the unit as its suffix,
 * as OpenMetrics requires. */
static void begin(void *ud, const struct metric_desc *d)
{
    struct out *o = ud;
    putf(o, "# HELP %s ", d->prom_name);
    escaped(o, d->description, false);
    putf(o, ".\n# TYPE %s %s\n", d->prom_name, prom_type(d->kind));
    const char *unit = prom_unit(d->unit);
    if (unit) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "_%s%s", unit, d->kind == METRIC_COUNTER ? "_total" : "");
        size_t n = strlen(d->prom_name), k = strlen(suffix);
        if (n > k && strcmp(d->prom_name + n - k, suffix) == 0)
            putf(o, "# UNIT %s %s\n", d->prom_name, unit);
    }
}

/* {k="v",...} with an optional extra le label; nothing when there are no labels. */
static void labels(struct out *o, const struct metric_point *p, const char *le)
{
    if (!p->n_attrs && !le) return;
    puts_(o, "{");
    for (size_t i = 0; i < p->n_attrs; i++) {
        putf(o, "%s%s=\"", i ? "," : "", p->attrs[i].key);
        escaped(o, p->attrs[i].value, true);
        puts_(o, "\"");
    }
    if (le) {
        putf(o, "%sle=\"%s\"", p->n_attrs ? "," : "", le);
    }
    puts_(o, "}");
}

static void point(void *ud, const struct metric_desc *d, const struct metric_point *p)
{
    struct out *o = ud;
    if (d->kind != METRIC_HISTOGRAM) {
        puts_(o, d->prom_name);
        labels(o, p, NULL);
        putf(o, " %lld\n", (long long)p->value);
        return;
    }
    uint64_t cum = 0;
    for (size_t i = 0; i <= p->n_bounds; i++) {
        char le[40];
        if (i < p->n_bounds)
            prom_format_double(le, sizeof le, p->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        cum += p->bucket_counts[i];
        putf(o, "%s_bucket", d->prom_name);
        labels(o, p, le);
        putf(o, " %llu\n", (unsigned long long)cum);
    }
    putf(o, "%s_sum", d->prom_name);
    labels(o, p, NULL);
    puts_(o, " ");
    put_double(o, p->sum);
    putf(o, "\n%s_count", d->prom_name);
    labels(o, p, NULL);
    putf(o, " %llu\n", (unsigned long long)p->count);
}

char *prom_render(const struct metrics_source *src, size_t *len)
{
    struct out o = {0};
    const struct metrics_visitor v = {.begin = begin, .point = point};
    metrics_collect(src, &v, &o);
    if (o.failed || !o.p) {
        free(o.p);
        return NULL;
    }
    *len = o.n;
    return o.p;
}
