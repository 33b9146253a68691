/* OTLP/HTTP exporter thread (see export.h). */
#include "telemetry/export.h"

#include <curl/curl.h>
#include <errno.h>
#include <zlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "telemetry/otlp.h"
#include "telemetry/spanq.h"

#define MAX_RETRIES      5
#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS   30000
#define RETRY_AFTER_MAX  60 /* seconds: a collector asking for longer is not waited for */

/* ---- configuration ---- */

static const char *env(const char *(*get)(const char *), const char *name)
{
    const char *v = get(name);
    return v && *v ? v : NULL;
}

static int env_ms(const char *(*get)(const char *), const char *name, uint32_t def, uint32_t min,
                  uint32_t *out, char *err, size_t cap)
{
    const char *v = env(get, name);
    *out = def;
    if (!v) return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || v[0] == '-' || n < min || n > UINT32_MAX) {
        snprintf(err, cap, "%s=\"%s\" is not a whole number of at least %u", name, v, min);
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

/* OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/<signal> appended; the per-signal variable is
 * used as it is. */
static int signal_load(struct otel_signal *s, const char *(*get)(const char *), const char *sig,
                       const char *path, uint32_t base_timeout, char *err, size_t cap)
{
    char name[96];
    snprintf(name, sizeof name, "OTEL_%s_EXPORTER", sig);
    const char *exporter = env(get, name);
    if (exporter && strcmp(exporter, "otlp") != 0 && strcmp(exporter, "none") != 0) {
        snprintf(err, cap, "%s=\"%s\": only otlp and none are supported", name, exporter);
        return -1;
    }
    snprintf(name, sizeof name, "OTEL_EXPORTER_OTLP_%s_ENDPOINT", sig);
    const char *url = env(get, name), *base = env(get, "OTEL_EXPORTER_OTLP_ENDPOINT");
    if (url) {
        snprintf(s->url, sizeof s->url, "%s", url);
    } else if (base) {
        size_t n = strlen(base);
        while (n && base[n - 1] == '/')
            n--;
        snprintf(s->url, sizeof s->url, "%.*s%s", (int)n, base, path);
    }
    s->on = s->url[0] && !(exporter && strcmp(exporter, "none") == 0);
    if (s->url[0] && strncmp(s->url, "http://", 7) != 0 && strncmp(s->url, "https://", 8) != 0) {
        snprintf(err, cap, "OTLP endpoint \"%s\" must start with http:// or https://", s->url);
        return -1;
    }
    snprintf(name, sizeof name, "OTEL_EXPORTER_OTLP_%s_HEADERS", sig);
    s->headers = env(get, name);
    if (!s->headers) s->headers = env(get, "OTEL_EXPORTER_OTLP_HEADERS");
    snprintf(name, sizeof name, "OTEL_EXPORTER_OTLP_%s_COMPRESSION", sig);
    const char *comp = env(get, name);
    if (!comp) comp = env(get, strcpy(name, "OTEL_EXPORTER_OTLP_COMPRESSION"));
    if (comp && strcmp(comp, "gzip") != 0 && strcmp(comp, "none") != 0) {
        snprintf(err, cap, "%s=\"%s\": gzip or none", name, comp);
        return -1;
    }
    s->gzip = comp && strcmp(comp, "gzip") == 0;
    snprintf(name, sizeof name, "OTEL_EXPORTER_OTLP_%s_TIMEOUT", sig);
    return env_ms(get, name, base_timeout, 1, &s->timeout_ms, err, cap);
}

int otel_config_load(struct otel_config *c, const char *(*get)(const char *), char *err, size_t cap)
{
    memset(c, 0, sizeof *c);
    uint32_t timeout;
    if (env_ms(get, "OTEL_EXPORTER_OTLP_TIMEOUT", 10000, 1, &timeout, err, cap) ||
        signal_load(&c->traces, get, "TRACES", "/v1/traces", timeout, err, cap) ||
        signal_load(&c->metrics, get, "METRICS", "/v1/metrics", timeout, err, cap) ||
        env_ms(get, "OTEL_BSP_SCHEDULE_DELAY", 5000, 1, &c->bsp_delay_ms, err, cap) ||
        env_ms(get, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1, &c->bsp_queue, err, cap) ||
        env_ms(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1, &c->bsp_batch, err, cap) ||
        env_ms(get, "OTEL_METRIC_EXPORT_INTERVAL", 60000, 1, &c->metric_interval_ms, err, cap))
        return -1;
    /* Each queued span holds a slot of about 1.2 KB, allocated per worker up front. */
    if (c->bsp_queue > 65536) {
        snprintf(err, cap, "OTEL_BSP_MAX_QUEUE_SIZE=%u is over the limit of 65536 spans",
                 c->bsp_queue);
        return -1;
    }
    if (c->bsp_batch > c->bsp_queue) c->bsp_batch = c->bsp_queue; /* as the spec says */
    const char *sampler = env(get, "OTEL_TRACES_SAMPLER"),
               *arg = env(get, "OTEL_TRACES_SAMPLER_ARG");
    if (sampler_parse(sampler, arg, &c->sampler) < 0) {
        snprintf(err, cap,
                 "OTEL_TRACES_SAMPLER=\"%s\" OTEL_TRACES_SAMPLER_ARG=\"%s\": unknown sampler or "
                 "a ratio outside [0, 1]",
                 sampler ? sampler : "", arg ? arg : "");
        return -1;
    }
    /* Only OTLP/HTTP with protobuf is spoken: refuse rather than send what the
     * collector on the other end was not told to expect. */
    static const char *const protocol_vars[] = {"OTEL_EXPORTER_OTLP_PROTOCOL",
                                                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"};
    for (size_t i = 0; i < sizeof protocol_vars / sizeof protocol_vars[0]; i++) {
        const char *proto = env(get, protocol_vars[i]);
        if (proto && strcmp(proto, "http/protobuf") != 0) {
            snprintf(err, cap, "%s=\"%s\": only http/protobuf is supported", protocol_vars[i],
                     proto);
            return -1;
        }
    }
    const char *disabled = env(get, "OTEL_SDK_DISABLED");
    if (disabled && strcasecmp(disabled, "true") == 0) c->traces.on = c->metrics.on = false;
    c->service_name = env(get, "OTEL_SERVICE_NAME");
    c->resource_attrs = env(get, "OTEL_RESOURCE_ATTRIBUTES");
    return 0;
}

/* ---- exporter state ----
 * One thread per signal, each with its own connection and buffer: a collector that
 * makes the traces wait (retries, a slow answer) does not hold back the metrics,
 * which are what tells that spans are being dropped. */

struct sigx {
    const char *what;
    const struct otel_signal *sig;
    pthread_t thread;
    bool started;
    CURL *curl;
    struct curl_slist *hdrs, *hdrs_gz;
    struct pb pb;
    struct pb gz; /* pb gzipped, when the signal asks for it */
    z_stream zs;  /* reused: deflateReset between requests */
    bool zs_ready;
};

static struct {
    struct otel_config cfg;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; broadcast */
    bool kick, stop;
    uint64_t stop_deadline_ms;
    struct sigx tr, me;
    struct otlp_resource res;
    const struct span **batch;
    metrics_gather_fn gather;
    void *gather_ud;
} X = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Atomic uint64_t n_exported, n_failed_spans, n_requests, n_failures, n_retries,
    n_metric_exports;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(void)
{
    pthread_mutex_lock(&X.mu);
    X.kick = true;
    pthread_cond_broadcast(&X.cv);
    pthread_mutex_unlock(&X.mu);
}

/* Waits until at_ms (monotonic), or (when asked) a stop or a full batch. A retry's
 * back-off is cut short by neither. */
static void wait_until(uint64_t at_ms, bool kick_wakes, bool stop_wakes)
{
    pthread_mutex_lock(&X.mu);
    while (!(kick_wakes && X.kick) && !(stop_wakes && X.stop)) {
        uint64_t now = mono_ms();
        if (now >= at_ms) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t left = at_ms - now;
        ts.tv_sec += (time_t)(left / 1000);
        ts.tv_nsec += (long)(left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&X.cv, &X.mu, &ts);
    }
    pthread_mutex_unlock(&X.mu);
}

static bool stopping(uint64_t *deadline)
{
    pthread_mutex_lock(&X.mu);
    bool s = X.stop;
    *deadline = X.stop_deadline_ms;
    pthread_mutex_unlock(&X.mu);
    return s;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses "k=v,k2=v2" (values percent-decoded) into curl header lines. */
static struct curl_slist *headers_build(const char *list)
{
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-protobuf");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (eq && eq > p) {
            char line[1024];
            size_t k = 0;
            const char *ks = p, *ke = eq;
            while (ks < ke && *ks == ' ')
                ks++;
            while (ke > ks && ke[-1] == ' ')
                ke--;
            int kn = snprintf(line, sizeof line, "%.*s: ", (int)(ke - ks), ks);
            if (kn < 0 || (size_t)kn >= sizeof line - 1) {
                log_warn("OTEL_EXPORTER_OTLP_HEADERS: header name too long, ignored", NULL);
                p = end ? end + 1 : NULL;
                continue;
            }
            k = (size_t)kn;
            for (const char *v = eq + 1; v < p + len && k + 1 < sizeof line; v++) {
                int hi, lo;
                if (*v == '%' && v + 2 < p + len && (hi = hexdigit(v[1])) >= 0 &&
                    (lo = hexdigit(v[2])) >= 0) {
                    line[k++] = (char)(hi << 4 | lo);
                    v += 2;
                } else if (!(*v == ' ' && k > 0 && line[k - 1] == ' ')) {
                    line[k++] = *v;
                }
            }
            while (k && line[k - 1] == ' ')
                k--;
            line[k] = 0;
            /* A header line with CR or LF in it would inject others: refused. */
            if (!strpbrk(line, "\r\n")) h = curl_slist_append(h, line);
        } else if (len) {
            log_warn("OTEL_EXPORTER_OTLP_HEADERS: entry without '=' ignored", NULL);
        }
        p = end ? end + 1 : NULL;
    }
    return h;
}

static size_t discard_body(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* Ends a request in flight once the shutdown deadline has passed: the final flush
 * is bounded even when the collector is slow to answer. */
static int xfer_check(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)ud, (void)dt, (void)dn, (void)ut, (void)un;
    uint64_t deadline;
    return stopping(&deadline) && mono_ms() >= deadline;
}

static bool retryable_curl(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
}

static bool retryable_status(long st)
{
    return st == 429 || st == 502 || st == 503 || st == 504;
}

/* Compresses x->pb into x->gz (gzip framing). 0, or -1 (then sent uncompressed:
 * the request carries no Content-Encoding in that case). */
static int gzip_body(struct sigx *x)
{
    if (!x->zs_ready) {
        if (deflateInit2(&x->zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        x->zs_ready = true;
    } else if (deflateReset(&x->zs) != Z_OK) {
        return -1;
    }
    pb_reset(&x->gz);
    size_t bound = deflateBound(&x->zs, (uLong)x->pb.len);
    if (!pb_reserve(&x->gz, bound)) return -1;
    x->zs.next_in = x->pb.buf;
    x->zs.avail_in = (uInt)x->pb.len;
    x->zs.next_out = x->gz.buf;
    x->zs.avail_out = (uInt)bound;
    if (deflate(&x->zs, Z_FINISH) != Z_STREAM_END) return -1;
    x->gz.len = bound - x->zs.avail_out;
    return 0;
}

/* POSTs x->pb to the signal's URL, retrying as export.h says. 0 on success. */
static int post(struct sigx *x)
{
    const struct otel_signal *sig = x->sig;
    const char *what = x->what;
    const struct pb *body = &x->pb;
    struct curl_slist *hdrs = x->hdrs;
    if (sig->gzip && gzip_body(x) == 0) {
        body = &x->gz;
        hdrs = x->hdrs_gz;
    }
    for (int attempt = 0;; attempt++) {
        uint64_t deadline;
        bool stop = stopping(&deadline);
        long timeout = (long)sig->timeout_ms;
        if (stop) {
            uint64_t now = mono_ms();
            if (now >= deadline) return -1;
            if ((uint64_t)timeout > deadline - now) timeout = (long)(deadline - now);
        }
        curl_easy_reset(x->curl);
        curl_easy_setopt(x->curl, CURLOPT_URL, sig->url);
        curl_easy_setopt(x->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(x->curl, CURLOPT_POSTFIELDS, (const char *)body->buf);
        curl_easy_setopt(x->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
        curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS, timeout);
        curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS, timeout);
        curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(x->curl, CURLOPT_XFERINFOFUNCTION, xfer_check);
        curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, discard_body);
        curl_easy_setopt(x->curl, CURLOPT_USERAGENT, "wshub/" WSHUB_VERSION " (OTLP/HTTP)");
        atomic_fetch_add(&n_requests, 1);
        CURLcode rc = curl_easy_perform(x->curl);
        long status = 0;
        curl_off_t retry_after = 0;
        if (rc == CURLE_OK) {
            curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
            if (status >= 200 && status < 300) return 0;
            curl_easy_getinfo(x->curl, CURLINFO_RETRY_AFTER, &retry_after);
        }
        bool again = rc == CURLE_OK ? retryable_status(status) : retryable_curl(rc);
        if (!again || attempt >= MAX_RETRIES) {
            atomic_fetch_add(&n_failures, 1);
            log_warn("OTLP export failed", "signal=%s url=%s status=%ld error=\"%s\" attempts=%d",
                     what, sig->url, status,
                     rc == CURLE_OK ? "http status" : curl_easy_strerror(rc), attempt + 1);
            return -1;
        }
        /* A random delay in the upper half of an exponential ceiling (clients that
         * failed together do not retry together), unless the server said when. */
        uint64_t ceil_ms = (uint64_t)BACKOFF_FIRST_MS << attempt;
        if (ceil_ms > BACKOFF_MAX_MS) ceil_ms = BACKOFF_MAX_MS;
        uint64_t delay = ceil_ms / 2 + trace_random64() % (ceil_ms / 2 + 1);
        if (retry_after > 0)
            delay =
                (uint64_t)(retry_after < RETRY_AFTER_MAX ? retry_after : RETRY_AFTER_MAX) * 1000;
        atomic_fetch_add(&n_retries, 1);
        log_debug("OTLP export retry", "signal=%s status=%ld delay_ms=%llu attempt=%d", what,
                  status, (unsigned long long)delay, attempt + 1);
        uint64_t at = mono_ms() + delay;
        if (stopping(&deadline) && at >= deadline) {
            atomic_fetch_add(&n_failures, 1);
            return -1;
        }
        wait_until(at, false, true);
        if (mono_ms() < at) {
            /* Woken by a shutdown: the back-off is waited out only if it ends
             * before the shutdown's deadline. */
            if (stopping(&deadline) && at >= deadline) {
                atomic_fetch_add(&n_failures, 1);
                return -1;
            }
            wait_until(at, false, false);
        }
    }
}

static void export_spans(bool all)
{
    struct sigx *x = &X.tr;
    size_t max = X.cfg.bsp_batch;
    for (;;) {
        size_t n = spanq_take(X.batch, max);
        if (n == 0) return;
        pb_reset(&x->pb);
        struct otlp_marks m;
        otlp_traces_begin(&x->pb, &X.res, &m);
        for (size_t i = 0; i < n; i++)
            otlp_span(&x->pb, X.batch[i]);
        otlp_traces_end(&x->pb, &m);
        spanq_release(); /* the batch lives in x->pb now: free the ring slots */
        if (x->pb.failed) {
            atomic_fetch_add(&n_failed_spans, n);
            log_error("OTLP encode: out of memory, batch dropped", "spans=%zu", n);
        } else if (post(x) == 0) {
            atomic_fetch_add(&n_exported, n);
        } else {
            atomic_fetch_add(&n_failed_spans, n);
        }
        if (!all && n < max) return;
    }
}

static void export_metrics(void)
{
    struct sigx *x = &X.me;
    pb_reset(&x->pb);
    struct otlp_marks m;
    struct metrics_source src;
    X.gather(X.gather_ud, &src);
    otlp_metrics_begin(&x->pb, &X.res, &m);
    otlp_write_registry(&x->pb, &src);
    otlp_metrics_end(&x->pb, &m);
    if (x->pb.failed) return;
    if (post(x) == 0) atomic_fetch_add(&n_metric_exports, 1);
}

static bool take_stop_kick(bool *kicked)
{
    pthread_mutex_lock(&X.mu);
    bool stop = X.stop;
    if (kicked) {
        *kicked = X.kick;
        X.kick = false;
    }
    pthread_mutex_unlock(&X.mu);
    return stop;
}

static void *traces_main(void *arg)
{
    (void)arg;
    uint64_t next = mono_ms() + X.cfg.bsp_delay_ms;
    for (;;) {
        wait_until(next, true, true);
        bool kicked;
        bool stop = take_stop_kick(&kicked);
        bool due = stop || mono_ms() >= next;
        if (due || kicked) export_spans(due);
        if (due) next = mono_ms() + X.cfg.bsp_delay_ms;
        if (stop) return NULL;
    }
}

static void *metrics_main(void *arg)
{
    (void)arg;
    uint64_t next = mono_ms() + X.cfg.metric_interval_ms;
    for (;;) {
        wait_until(next, false, true);
        bool stop = take_stop_kick(NULL);
        if (stop || mono_ms() >= next) {
            export_metrics(); /* at stop: the final values */
            next = mono_ms() + X.cfg.metric_interval_ms;
        }
        if (stop) return NULL;
    }
}

static void sigx_free(struct sigx *x)
{
    if (x->curl) curl_easy_cleanup(x->curl);
    curl_slist_free_all(x->hdrs);
    curl_slist_free_all(x->hdrs_gz);
    if (x->zs_ready) deflateEnd(&x->zs);
    pb_free(&x->gz);
    pb_free(&x->pb);
    memset(x, 0, sizeof *x);
}

static int sigx_init(struct sigx *x, const char *what, const struct otel_signal *sig)
{
    memset(x, 0, sizeof *x);
    x->what = what;
    x->sig = sig;
    pb_init(&x->pb);
    pb_init(&x->gz);
    if (!sig->on) return 0;
    x->curl = curl_easy_init();
    x->hdrs = headers_build(sig->headers);
    if (sig->gzip)
        x->hdrs_gz = curl_slist_append(headers_build(sig->headers), "Content-Encoding: gzip");
    return x->curl && x->hdrs && (!sig->gzip || x->hdrs_gz) ? 0 : -1;
}

int telemetry_start(const struct otel_config *c, int n_threads, metrics_gather_fn gather,
                    void *gather_ud)
{
    if (X.running) return -1;
    if (!c->traces.on && !c->metrics.on) return 1;
    X.cfg = *c;
    X.gather = gather;
    X.gather_ud = gather_ud;
    X.kick = X.stop = false;
    char err[160] = "";
    if (otlp_resource_init(&X.res, c->service_name, c->resource_attrs, err, sizeof err) < 0 &&
        err[0])
        log_warn(err, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        sigx_init(&X.tr, "traces", &X.cfg.traces) < 0 ||
        sigx_init(&X.me, "metrics", &X.cfg.metrics) < 0) {
        log_error("OTLP exporter: libcurl could not start", NULL);
        sigx_free(&X.tr);
        sigx_free(&X.me);
        otlp_resource_free(&X.res);
        return -1;
    }
    X.batch = calloc(X.cfg.bsp_batch, sizeof *X.batch);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&X.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (n_threads < 1) n_threads = 1;
    size_t per_ring = (c->bsp_queue + (uint32_t)n_threads - 1) / (uint32_t)n_threads;
    spanq_init(per_ring, c->bsp_batch, wake);
    trace_sampler = c->sampler;
    bool ok = X.batch != NULL && (gather || !c->metrics.on);
    if (ok && c->traces.on)
        ok = (X.tr.started = pthread_create(&X.tr.thread, NULL, traces_main, NULL) == 0);
    if (ok && c->metrics.on)
        ok = (X.me.started = pthread_create(&X.me.thread, NULL, metrics_main, NULL) == 0);
    X.running = true;
    if (!ok) {
        log_error("OTLP exporter: cannot start its threads", NULL);
        telemetry_stop(0);
        return -1;
    }
    trace_enabled = c->traces.on;
    log_info("OTLP export on", "traces=%s metrics=%s encoding=protobuf sampler_ratio=%g",
             c->traces.on ? c->traces.url : "off", c->metrics.on ? c->metrics.url : "off",
             c->sampler.ratio);
    return 0;
}

void telemetry_stop(uint32_t deadline_ms)
{
    if (!X.running) return;
    trace_enabled = false;
    pthread_mutex_lock(&X.mu);
    X.stop = true;
    X.stop_deadline_ms = mono_ms() + deadline_ms;
    pthread_cond_broadcast(&X.cv);
    pthread_mutex_unlock(&X.mu);
    if (X.tr.started) pthread_join(X.tr.thread, NULL);
    if (X.me.started) pthread_join(X.me.thread, NULL);
    X.running = false;
    uint64_t left = spanq_pending();
    if (left) atomic_fetch_add(&n_failed_spans, left);
    struct telemetry_counters tc;
    telemetry_counters(&tc);
    log_info("OTLP exporter stopped",
             "spans_exported=%llu spans_dropped=%llu requests=%llu failures=%llu retries=%llu",
             (unsigned long long)tc.spans_exported, (unsigned long long)tc.spans_dropped,
             (unsigned long long)tc.export_requests, (unsigned long long)tc.export_failures,
             (unsigned long long)tc.export_retries);
    spanq_destroy();
    free(X.batch);
    X.batch = NULL;
    sigx_free(&X.tr);
    sigx_free(&X.me);
    otlp_resource_free(&X.res);
    pthread_cond_destroy(&X.cv);
    curl_global_cleanup();
}

void telemetry_counters(struct telemetry_counters *out)
{
    out->spans_exported = atomic_load(&n_exported);
    out->spans_dropped = spanq_dropped() + atomic_load(&n_failed_spans);
    out->export_requests = atomic_load(&n_requests);
    out->export_failures = atomic_load(&n_failures);
    out->export_retries = atomic_load(&n_retries);
    out->metric_exports = atomic_load(&n_metric_exports);
    out->queue_pending = spanq_pending();
}

/* ---- the metrics registry as OTLP ---- */

struct reg_writer {
    struct pb *pb;
    const struct metrics_source *src;
    struct otlp_metric om;
};

static void reg_begin(void *ud, const struct metric_desc *d)
{
    struct reg_writer *w = ud;
    enum otlp_metric_kind k = d->kind == METRIC_COUNTER          ? OTLP_SUM_MONOTONIC
                              : d->kind == METRIC_UPDOWN_COUNTER ? OTLP_SUM_UPDOWN
                              : d->kind == METRIC_GAUGE          ? OTLP_GAUGE
                                                                 : OTLP_HISTOGRAM;
    otlp_metric_begin(w->pb, &w->om, d->otel_name, d->description, d->unit, k);
}

static void reg_point(void *ud, const struct metric_desc *d, const struct metric_point *p)
{
    struct reg_writer *w = ud;
    const char *keys[METRIC_MAX_ATTRS], *vals[METRIC_MAX_ATTRS];
    size_t n = p->n_attrs < METRIC_MAX_ATTRS ? p->n_attrs : METRIC_MAX_ATTRS;
    for (size_t i = 0; i < n; i++) {
        keys[i] = p->attrs[i].key;
        vals[i] = p->attrs[i].value;
    }
    uint64_t start = w->src->start_unix_nano, now = w->src->time_unix_nano;
    if (d->kind == METRIC_HISTOGRAM)
        otlp_point_histogram(w->pb, &w->om, start, now, p->count, p->sum, p->bounds, p->n_bounds,
                             p->bucket_counts, keys, vals, n);
    else
        otlp_point_int(w->pb, &w->om, start, now, p->value, keys, vals, n);
}

static void reg_end(void *ud, const struct metric_desc *d)
{
    (void)d;
    struct reg_writer *w = ud;
    otlp_metric_end(w->pb, &w->om);
}

void otlp_write_registry(struct pb *pb, const struct metrics_source *src)
{
    static const struct metrics_visitor v = {reg_begin, reg_point, reg_end};
    struct reg_writer w = {.pb = pb, .src = src};
    metrics_collect(src, &v, &w);
}
