/* Workers and wiring: builds each worker's loop, listeners and routes, runs the loops
 * on their threads, and carries out the graceful shutdown on each of them. */
#include "app/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/resource.h>

#include "api/api.h"
#include "app/echo.h"
#include "app/routes.h"
#include "auth/origin.h"
#include "auth/ratelimit.h"
#include "auth/token.h"
#include "base/log.h"
#include "base/memtrim.h"
#include "base/msg.h"
#include "hub/hub.h"
#include "services/stream.h"
#include "http/server.h"
#include "loop/loop.h"
#include "net/conn.h"
#include "net/listener.h"
#include "net/tls.h"
#include "proto/envelope.h"
#include "telemetry/export.h"
#include "ws/conn.h"
#include "ws/handshake.h"
#include "ws/deflate.h"

struct worker {
    int id;
    pthread_t thread;
    struct wh_server *srv;
    struct loop *loop;
    struct listener listeners[WH_MAX_LISTEN];
    int n_listeners;
    struct conn_list conns;
    struct http_server http; /* per-worker copy: shutting_down is per worker */
    struct wh_stats stats;
    struct timer shutdown_deadline;
    struct timer shutdown_poll;
    bool shutting_down;
    struct shard *shard;
    struct streams *streams; /* worker 0 only */
};

struct wh_server {
    const struct wh_config *cfg;
    struct ws_options wsopt;
    struct routes_ctx routes;
    struct hub *hub;
    struct auth *auth;
    struct api api;
    struct tls_server *tls; /* --tls-cert/--tls-key, or NULL */
    char *origins_buf;      /* --allowed-origins, split in place */
    const char **origins;
    struct stream_spec streams[STREAMS_MAX];
    int n_streams;
    uint16_t ports[WH_MAX_LISTEN];
    int n_workers;
    uint64_t start_unix_nano; /* start of the cumulative metric series */
    struct worker *workers;
    atomic_int running;
    atomic_int shutdown_requested;
    atomic_int shutdown_acks; /* workers past the shutdown's first step */
    struct memtrim trim;      /* server_housekeeping's thread only, as are the next three */
    bool trim_pending;        /* waiting for the workers to drop their caches */
    uint64_t trim_asked_ms, trim_rss, trim_load, trim_peak;
    atomic_int trim_acks; /* workers that have dropped them */
    /* Cluster mode: the OTLP exporter's thread gathers metrics while the main thread
     * stops the cluster (which frees what hub_cluster_stats reads); the lock orders the
     * two, and the last figures are kept for the exports that follow. */
    pthread_mutex_t cluster_mu;
    bool cluster_stopped;
    struct hub_cluster_stats cluster_last;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_accept(struct listener *l, int fd)
{
    struct worker *w = l->ud;
    if (w->shutting_down) {
        close(fd);
        return;
    }
    http_conn_start(&w->http, w->loop, fd, &w->conns);
}

static void force_close_all(struct worker *w)
{
    struct conn *c;
    while ((c = conn_list_first(&w->conns)))
        conn_close(c);
}

static void shutdown_deadline_cb(struct loop *loop, struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, shutdown_deadline));
    if (conn_list_first(&w->conns))
        log_warn("shutdown deadline reached, dropping connections", "worker=%d left=%zu", w->id,
                 conn_list_count(&w->conns));
    force_close_all(w);
    loop_stop(loop);
}

static void shutdown_poll_cb(struct loop *loop, struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, shutdown_poll));
    if (!conn_list_first(&w->conns)) {
        loop_timer_cancel(loop, &w->shutdown_deadline);
        loop_stop(loop);
        return;
    }
    loop_timer_arm(loop, t, 10);
}

/* Graceful shutdown, in two steps so that every acked message is delivered before
 * the close frames (docs/design.md, "Shutdown").
 *
 * Step 1 (worker_shutdown, posted to every worker after hub_begin_shutdown): stop
 * accepting connections, and acknowledge. A posted task runs between loop turns and a
 * publish never spans turns, so once a worker has acknowledged, every message it
 * acked is in the shard inboxes, and every later one is refused (shutting_down).
 *
 * Step 2 (worker_close, posted to every worker by the last to acknowledge): deliver
 * what the shard's inbox holds (nothing acked can arrive after this), then send close
 * 1001 to each client: the close frame is queued behind those deliveries, so it goes
 * out after them. The loop stops when the last connection is gone, or at
 * --shutdown-timeout (counted from step 1), whichever comes first. */
static void worker_close(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    hub_shard_drain(w->shard);
    struct conn *c = conn_list_first(&w->conns);
    while (c) {
        struct conn *next = conn_list_next(&w->conns, c); /* closing unlinks c */
        if (ws_conn_is(c)) ws_conn_shutdown(c);
        c = next;
    }
    loop_timer_arm(loop, &w->shutdown_poll, 0);
}

static void worker_shutdown(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    if (w->shutting_down) return;
    w->shutting_down = true;
    w->http.shutting_down = true;
    atomic_store(&w->srv->api.shutting_down, 1);
    streams_stop(w->streams);
    w->streams = NULL;
    for (int i = 0; i < w->n_listeners; i++)
        listener_close(&w->listeners[i]);
    struct conn *c = conn_list_first(&w->conns);
    while (c) {
        struct conn *next = conn_list_next(&w->conns, c); /* closing unlinks c */
        if (http_conn_is(c)) http_conn_shutdown(c);
        c = next;
    }
    loop_timer_init(&w->shutdown_deadline, shutdown_deadline_cb);
    loop_timer_init(&w->shutdown_poll, shutdown_poll_cb);
    loop_timer_arm(loop, &w->shutdown_deadline, w->srv->cfg->shutdown_timeout_ms);
    struct wh_server *s = w->srv;
    if (atomic_fetch_add(&s->shutdown_acks, 1) + 1 == s->n_workers) {
        for (int i = 0; i < s->n_workers; i++)
            if (loop_post(s->workers[i].loop, worker_close, &s->workers[i]) < 0)
                log_error("shutdown: cannot post the close step; the deadline will close",
                          "worker=%d", i);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    stats_cur = &w->stats;
    w->shard = hub_shard_attach(w->srv->hub, w->id, w->loop);
    if (w->id == 0 && w->srv->n_streams)
        w->streams = streams_start(w->srv->hub, w->loop, w->srv->streams, w->srv->n_streams);
    loop_run(w->loop);
    streams_stop(w->streams);
    w->streams = NULL;
    force_close_all(w);
    loop_drain_tasks(w->loop);
    hub_shard_detach(w->shard);
    loop_drain_tasks(w->loop);
    proto_thread_cleanup();
    ws_deflate_thread_cleanup(); /* drops cached frames: before msg_thread_cleanup */
    msg_thread_cleanup();
    log_debug("worker stopped", "worker=%d", w->id);
    atomic_fetch_sub(&w->srv->running, 1);
    return NULL;
}

/* --redis URL[,URL...]: cluster mode's instances (none: one node). */
static int parse_redis(const char *spec, struct hub_config *hc)
{
    hc->n_redis = 0;
    for (const char *p = spec; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *why = NULL;
        if (hc->n_redis == NODE_MAX_REDIS) {
            fprintf(stderr, "wshub: --redis: at most %d instances\n", NODE_MAX_REDIS);
            return -1;
        }
        if (redis_url_parse(p, len, &hc->redis[hc->n_redis], &why) != 0) {
            fprintf(stderr, "wshub: --redis: \"%.*s\": %s\n", (int)len, p, why ? why : "invalid");
            return -1;
        }
        for (int i = 0; i < hc->n_redis; i++) {
            const struct redis_url *a = &hc->redis[i], *b = &hc->redis[hc->n_redis];
            if (!strcmp(a->host, b->host) && a->port == b->port && a->db == b->db) {
                fprintf(stderr, "wshub: --redis: \"%.*s\" is given twice\n", (int)len, p);
                return -1;
            }
        }
        hc->n_redis++;
        p = end ? end + 1 : p + len;
    }
    return 0;
}

static int resolve_ports(struct wh_server *s)
{
    /* A probe socket without SO_REUSEPORT: fails if anyone else holds the port (even
     * with SO_REUSEPORT), and resolves port 0 so that every worker binds the same. */
    for (int i = 0; i < s->cfg->n_listen; i++) {
        const struct wh_listen *a = &s->cfg->listen[i];
        int fd = listener_socket(a->host, a->port, 0);
        if (fd < 0) {
            log_error("cannot listen", "addr=%s port=%u error=\"%s\"",
                      a->host[0] ? a->host : "0.0.0.0", a->port, strerror(-fd));
            return -1;
        }
        int port = listener_port(fd);
        close(fd);
        s->ports[i] = (uint16_t)port;
    }
    return 0;
}

uint16_t server_port(const struct wh_server *s, int i)
{
    return s->ports[i];
}

static int worker_init(struct wh_server *s, struct worker *w, int id)
{
    const struct wh_config *cfg = s->cfg;
    w->id = id;
    w->srv = s;
    conn_list_init(&w->conns);
    w->loop = loop_create();
    if (!w->loop) return -ENOMEM;
    w->http = (struct http_server){
        .routes = s->routes.routes,
        .n_routes = s->routes.n,
        .limits = {.max_request_line = cfg->max_header_size,
                   .max_head_bytes = cfg->max_header_size,
                   .max_headers = HTTP_MAX_HEADERS},
        .max_body = cfg->max_body_size,
        .handshake_timeout_ms = cfg->handshake_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .tls = s->tls,
        .read_first = cfg->defer_accept,
    };
    for (int i = 0; i < cfg->n_listen; i++) {
        int fd = listener_socket(cfg->listen[i].host, s->ports[i], 1);
        if (fd < 0) return fd;
        int rc = cfg->defer_accept ? listener_defer_accept(fd, 1) : 0;
        if (rc < 0) {
            close(fd);
            return rc;
        }
        struct listener *l = &w->listeners[w->n_listeners++];
        snprintf(l->name, sizeof l->name, "%s:%u", cfg->listen[i].host, s->ports[i]);
        rc = listener_start(l, w->loop, fd, on_accept, w);
        if (rc < 0) return rc;
    }
    return 0;
}

static int stream_parse_list(const char *s, struct stream_spec *out, int max, char *err, size_t cap)
{
    int n = 0;
    const char *p = s;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[192];
        if (len == 0 || len >= sizeof item) {
            snprintf(err, cap, "stream entry %d is empty or too long", n + 1);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = 0;
        char *colon = strrchr(item, ':');
        if (!colon || colon == item || (size_t)(colon - item) >= sizeof out->room) {
            snprintf(err, cap, "stream \"%s\" is not ROOM:INTERVAL", item);
            return -1;
        }
        *colon = 0;
        uint32_t ms;
        if (config_parse_duration_ms(colon + 1, &ms) != 0 || ms < 100) {
            snprintf(err, cap, "stream \"%s\": interval \"%s\" is not a duration of 100ms or more",
                     item, colon + 1);
            return -1;
        }
        if (n == max) {
            snprintf(err, cap, "at most %d streams", max);
            return -1;
        }
        memcpy(out[n].room, item, (size_t)(colon - item) + 1); /* length checked above */
        out[n].interval_ms = ms;
        n++;
        p = end ? end + 1 : NULL;
    }
    return n;
}

static void server_free(struct wh_server *s)
{
    for (int i = 0; i < s->n_workers; i++) {
        struct worker *w = &s->workers[i];
        for (int j = 0; j < w->n_listeners; j++)
            listener_close(&w->listeners[j]);
        loop_destroy(w->loop);
    }
    free(s->workers);
    tls_server_destroy(s->tls);
    hub_destroy(s->hub);
    auth_destroy(s->auth);
    free(s->origins);
    free(s->origins_buf);
    pthread_mutex_destroy(&s->cluster_mu);
    free(s);
}

/* Splits "a, b,c" in place into a NULL-terminated list. */
static int split_origins(struct wh_server *s, const char *list)
{
    if (!list || !*list) return 0;
    s->origins_buf = strdup(list);
    size_t n = 2;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    s->origins = calloc(n, sizeof *s->origins);
    if (!s->origins_buf || !s->origins) return -1;
    size_t k = 0;
    for (char *save = NULL, *t = strtok_r(s->origins_buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        char *e = t + strlen(t);
        while (e > t && e[-1] == ' ')
            *--e = 0;
        if (*t) s->origins[k++] = t;
    }
    const char *bad, *why;
    if (origin_list_check(s->origins, &bad, &why) < 0) {
        fprintf(stderr, "wshub: --allowed-origins: \"%s\": %s\n", bad, why);
        return -1;
    }
    return 0;
}

static bool opt_set(const char *v)
{
    return v && *v;
}

/* Both files or neither; a certificate that cannot serve is refused at start-up. */
static int prepare_tls(struct wh_server *s)
{
    const struct wh_config *cfg = s->cfg;
    if (!opt_set(cfg->tls_cert) && !opt_set(cfg->tls_key)) return 0;
    if (!opt_set(cfg->tls_cert) || !opt_set(cfg->tls_key)) {
        fprintf(stderr, "wshub: %s %s given without %s: TLS needs both\n",
                opt_set(cfg->tls_cert) ? "--tls-cert" : "--tls-key",
                opt_set(cfg->tls_cert) ? cfg->tls_cert : cfg->tls_key,
                opt_set(cfg->tls_cert) ? "--tls-key" : "--tls-cert");
        return -1;
    }
    char err[512];
    s->tls = tls_server_create(cfg->tls_cert, cfg->tls_key, err, sizeof err);
    if (!s->tls) {
        fprintf(stderr, "wshub: %s\n", err);
        return -1;
    }
    return 0;
}

/* Everything derived from the configuration that can be refused (exit status 2). */
static int server_prepare(struct wh_server *s, int n_workers)
{
    const struct wh_config *cfg = s->cfg;
    struct hub_config hc = {
        .send_policy = (enum hub_send_policy)cfg->send_policy,
        .slow_policy = (enum hub_slow_policy)cfg->slow_consumer,
        .queue_msgs = cfg->send_queue_msgs,
        .queue_bytes = cfg->send_queue_bytes,
        .presence = cfg->presence,
        .client_broadcast = cfg->client_broadcast,
        .max_rooms_per_conn = cfg->max_rooms_per_conn,
        .max_rooms = cfg->max_rooms,
        .max_rooms_per_ip = cfg->max_rooms_per_ip,
        .query_rate = {.rate = cfg->query_rate, .burst = cfg->query_rate ? cfg->query_burst : 0},
        .strikes_to_close = 10,
        .max_conns = cfg->max_connections,
        .max_conns_per_ip = cfg->max_connections_per_ip,
        .hist = {.room = {cfg->history_size, cfg->history_ttl_ms},
                 .user = {cfg->history_size, cfg->history_ttl_ms},
                 .memory_cap = cfg->history_memory},
    };
    if (rate_limit_parse(cfg->rate_limit ? cfg->rate_limit : "0", &hc.conn_rate) != 0) {
        fprintf(stderr, "wshub: --rate-limit: \"%s\" is not RATE or RATE/BURST\n", cfg->rate_limit);
        return -1;
    }
    if (rate_limit_parse(cfg->user_rate_limit ? cfg->user_rate_limit : "0", &hc.user_rate) != 0) {
        fprintf(stderr, "wshub: --user-rate-limit: \"%s\" is not RATE or RATE/BURST\n",
                cfg->user_rate_limit);
        return -1;
    }
    if (!hc.max_conns) {
        /* Leave room for listeners, loops and the odd HTTP request. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur > (rlim_t)(64 + 4 * n_workers))
            hc.max_conns = (uint32_t)(rl.rlim_cur - 64 - 4 * (rlim_t)n_workers);
    }
    char err[256];
    if (hist_rules_parse(cfg->history_rules ? cfg->history_rules : "", &hc.hist, err, sizeof err) <
        0) {
        fprintf(stderr, "wshub: --history: %s\n", err);
        return -1;
    }
    if (parse_redis(cfg->redis, &hc) < 0) return -1;
    hc.presence_timeout_ms = cfg->presence_timeout_ms;
    s->n_streams = stream_parse_list(cfg->streams ? cfg->streams : "", s->streams, STREAMS_MAX, err,
                                     sizeof err);
    if (s->n_streams < 0) {
        fprintf(stderr, "wshub: --stream: %s\n", err);
        return -1;
    }
    struct auth_config ac = {
        .mode = (enum auth_mode)cfg->auth_mode,
        .secret = cfg->jwt_secret,
        .public_key_file = cfg->jwt_public_key,
        .leeway_s = (cfg->jwt_leeway_ms + 999) / 1000, /* never less than asked */
    };
    s->auth = auth_create(&ac, err, sizeof err);
    if (!s->auth) {
        fprintf(stderr, "wshub: --auth %s: %s\n",
                ac.mode == AUTH_HS256   ? "hs256"
                : ac.mode == AUTH_RS256 ? "rs256"
                                        : "none",
                err);
        return -1;
    }
    if (split_origins(s, cfg->allowed_origins) < 0) return -1;
    if (prepare_tls(s) < 0) return -1;
    hc.auth = s->auth; /* refresh tokens on open connections */
    s->hub = hub_create(&hc, n_workers);
    if (!s->hub) return -1;
    s->api.hub = s->hub;
    s->api.api_key = cfg->api_key && *cfg->api_key ? cfg->api_key : NULL;
    s->api.gather = server_metrics_gather;
    s->api.gather_ud = s;
    if (routes_init(&s->routes, cfg, &s->wsopt, s->hub, s->auth, s->origins, &s->api) < 0)
        return -1;
    if (ac.mode == AUTH_NONE)
        log_warn("authentication is OFF (--auth none): the token is taken as the user id. "
                 "Development only: use --auth hs256 or rs256 in production",
                 NULL);
    if (!s->api.api_key) log_info("publish API disabled: no --api-key", NULL);
    return 0;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

/* OpenTelemetry export, configured by the standard OTEL_* environment variables. */
static int telemetry_begin(struct wh_server *s, int n_workers)
{
    struct otel_config oc;
    char err[256];
    if (otel_config_load(&oc, env_get, err, sizeof err) < 0) {
        fprintf(stderr, "wshub: %s\n", err);
        return -1;
    }
    return telemetry_start(&oc, n_workers, server_metrics_gather, s) < 0 ? -1 : 0;
}

/* The exporter's final flush gets at most this long after the workers stop. */
#define TELEMETRY_FLUSH_MS 5000

struct wh_server *server_start(const struct wh_config *cfg, int *exit_code)
{
    *exit_code = 1;
    struct wh_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->cluster_mu, NULL);
    s->cfg = cfg;
    s->start_unix_nano = metrics_now_unix_nano();
    s->wsopt = (struct ws_options){
        .max_message_size = cfg->max_message_size,
        .ping_interval_ms = cfg->ping_interval_ms,
        .read_timeout_ms = cfg->read_timeout_ms,
        .write_timeout_ms = cfg->write_timeout_ms,
        .message_timeout_ms = cfg->message_timeout_ms,
        .max_queue_bytes = cfg->send_queue_bytes,
        .close_timeout_ms = cfg->close_timeout_ms,
        .compression = cfg->compression,
        .compression_threshold = cfg->compress_threshold,
    };
    /* The first SHA-1 of a Sec-WebSocket-Accept initialises libcrypto and faults in
     * about 2 MiB of its code: pay that once here, not on the first client's upgrade
     * (it would also read as per-connection memory in the idle benchmark). */
    char warm[WS_ACCEPT_LEN + 1];
    ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, warm);
    int n = cfg->threads;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        /* (--threads' own bound: a process has at most LOOP_MAX event loops) */
        n = cpus > 0 ? (int)(cpus < WH_MAX_THREADS ? cpus : WH_MAX_THREADS) : 1;
    }
    if (server_prepare(s, n) < 0) {
        *exit_code = 2;
        server_free(s);
        return NULL;
    }
    if (resolve_ports(s) < 0) {
        server_free(s);
        return NULL;
    }
    s->workers = calloc((size_t)n, sizeof *s->workers);
    if (!s->workers) {
        server_free(s);
        return NULL;
    }
    s->n_workers = n;
    for (int i = 0; i < n; i++) {
        int rc = worker_init(s, &s->workers[i], i);
        if (rc < 0) {
            log_error("cannot start worker", "worker=%d error=\"%s\"", i, strerror(-rc));
            server_free(s);
            return NULL;
        }
    }
    if (telemetry_begin(s, n) < 0) {
        *exit_code = 2;
        server_free(s);
        return NULL;
    }
    atomic_store(&s->running, n);
    memtrim_init(&s->trim, mono_ms(), 0, memtrim_rss());
    for (int i = 0; i < n; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            log_error("cannot start thread", "worker=%d", i);
            exit(1); /* startup only: no partial server is worth running */
        }
    }
    if (s->tls) {
        char subject[256];
        log_info("tls enabled on every listener", "cert=%s subject=\"%s\"", cfg->tls_cert,
                 tls_server_subject(s->tls, subject, sizeof subject));
    }
    for (int i = 0; i < cfg->n_listen; i++) {
        const char *host = cfg->listen[i].host;
        /* The address a person can paste into a browser: "any" is reachable as
         * localhost; an IPv6 literal needs brackets. */
        bool any = !host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
        bool v6 = strchr(host, ':') != NULL && !any;
        char page[128] = "";
        if (cfg->web)
            snprintf(page, sizeof page, " page=%s://%s%s%s:%u/", s->tls ? "https" : "http",
                     v6 ? "[" : "", any ? "localhost" : host, v6 ? "]" : "", s->ports[i]);
        char node[64] = "";
        if (hub_node_id(s->hub)) snprintf(node, sizeof node, " node=%s", hub_node_id(s->hub));
        log_info("listening", "addr=%s port=%u threads=%d tls=%s%s%s", host[0] ? host : "0.0.0.0",
                 s->ports[i], n, s->tls ? "on" : "off", node, page);
    }
    return s;
}

/* What the server holds, in the units memtrim compares: connections (HTTP and
 * WebSocket) plus rooms. Both come and go with the memory behind them. */
static uint64_t server_load(struct wh_server *s)
{
    uint64_t n = hub_room_count(s->hub);
    for (int i = 0; i < s->n_workers; i++)
        n += STAT_GET(&s->workers[i].stats, conns_open);
    return n;
}

/* Runs on each worker (posted): its caches of freed blocks are scattered over the
 * pages the peak left, and each cached block keeps a whole page resident, so they go
 * first (measured: 14.7 MiB after a trim with them, 11.1 without; 10.3 at start). */
static void worker_release_caches(struct loop *loop, void *arg)
{
    (void)loop;
    struct worker *w = arg;
    msg_thread_cleanup();
    proto_thread_cleanup();
    hub_shard_release_memory(w->shard);
    atomic_fetch_add(&w->srv->trim_acks, 1);
}

#define TRIM_ACK_WAIT_MS 2000 /* a worker busy longer than this is not waited for */

void server_housekeeping(struct wh_server *s)
{
    if (atomic_load(&s->shutdown_requested)) return;
    uint64_t now = mono_ms();
    if (s->trim_pending) {
        if (atomic_load(&s->trim_acks) < s->n_workers && now - s->trim_asked_ms < TRIM_ACK_WAIT_MS)
            return;
        s->trim_pending = false;
        uint64_t us, after = memtrim_run(&us);
        memtrim_done(&s->trim, s->trim_load, after);
        log_info("memory returned to the system",
                 "rss_kib=%llu rss_after_kib=%llu duration_us=%llu load=%llu peak_load=%llu",
                 (unsigned long long)(s->trim_rss / 1024), (unsigned long long)(after / 1024),
                 (unsigned long long)us, (unsigned long long)s->trim_load,
                 (unsigned long long)s->trim_peak);
        return;
    }
    if (now - s->trim.last_check_ms < MEMTRIM_CHECK_MS) return; /* before reading RSS */
    uint64_t load = server_load(s), rss = memtrim_rss();
    if (!memtrim_check(&s->trim, now, load, rss)) return;
    /* Due: the workers drop their caches first, the trim follows on a later call. */
    s->trim_pending = true;
    s->trim_asked_ms = now;
    s->trim_rss = rss;
    s->trim_load = load;
    s->trim_peak = s->trim.peak;
    atomic_store(&s->trim_acks, 0);
    for (int i = 0; i < s->n_workers; i++)
        if (loop_post(s->workers[i].loop, worker_release_caches, &s->workers[i]) < 0)
            atomic_fetch_add(&s->trim_acks, 1); /* nothing to wait for */
}

void server_shutdown(struct wh_server *s)
{
    if (atomic_exchange(&s->shutdown_requested, 1)) return;
    hub_begin_shutdown(s->hub); /* before the posts: a worker that runs one sees it */
    for (int i = 0; i < s->n_workers; i++)
        loop_post(s->workers[i].loop, worker_shutdown, &s->workers[i]);
}

int server_done(struct wh_server *s)
{
    return atomic_load(&s->running) == 0;
}

void server_wait(struct wh_server *s)
{
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i].thread, NULL);
    pthread_mutex_lock(&s->cluster_mu);
    if (hub_cluster(s->hub)) hub_cluster_stats(s->hub, &s->cluster_last);
    s->cluster_stopped = true;
    hub_cluster_stop(s->hub);
    pthread_mutex_unlock(&s->cluster_mu);
    for (int i = 0; i < s->n_workers; i++)
        loop_run_posts(s->workers[i].loop); /* the cluster's last answers */
    uint32_t flush = s->cfg->shutdown_timeout_ms < TELEMETRY_FLUSH_MS ? s->cfg->shutdown_timeout_ms
                                                                      : TELEMETRY_FLUSH_MS;
    telemetry_stop(flush); /* every span is in its ring now: the final flush */
    server_free(s);
    ws_deflate_thread_cleanup();
    msg_thread_cleanup(); /* blocks released on this thread by hub_destroy */
}

/* Cluster mode's figures (all zero for one node: its /metrics shows none of them). */
static void gather_cluster(struct wh_server *s, struct metrics_source *out)
{
    struct hub_cluster_stats cs;
    pthread_mutex_lock(&s->cluster_mu);
    if (s->cluster_stopped)
        cs = s->cluster_last; /* all zero for one node */
    else
        hub_cluster_stats(s->hub, &cs); /* all zero for one node */
    pthread_mutex_unlock(&s->cluster_mu);
    out->redis_instances = cs.instances > 0 ? (uint64_t)cs.instances : 0;
    out->redis_instances_up = cs.redis.up > 0 ? (uint64_t)cs.redis.up : 0;
    out->cluster_subscriptions = cs.redis.subscriptions;
    out->cluster_published = cs.published;
    out->cluster_received = cs.received;
    out->cluster_unavailable = cs.unavailable;
    out->cluster_resets = cs.resets;
    out->cluster_catchups = cs.catchups;
    out->cluster_history_reads = cs.fetches;
    out->redis_commands = cs.redis.commands;
    out->redis_replies = cs.redis.replies;
    out->redis_error_replies = cs.redis.error_replies;
    out->redis_bytes_sent = cs.redis.bytes_out;
    out->redis_bytes_received = cs.redis.bytes_in;
    out->redis_connects = cs.redis.connects;
    out->redis_reconnects = cs.redis.reconnects;
    out->redis_failures = cs.redis.failures;
    out->redis_timeouts = cs.redis.timeouts;
    out->redis_refused = cs.redis.refused;
    _Static_assert(sizeof out->redis_rtt_buckets == sizeof cs.redis.rtt_hist, "RTT buckets");
    memcpy(out->redis_rtt_buckets, cs.redis.rtt_hist, sizeof out->redis_rtt_buckets);
    out->redis_rtt_sum_us = cs.redis.rtt_sum_us;
}

void server_metrics_gather(void *ud, struct metrics_source *out)
{
    struct wh_server *s = ud;
    memset(out, 0, sizeof *out);
    server_stats(s, &out->stats);
    out->rooms = (int64_t)hub_room_count(s->hub);
    out->online_users = (int64_t)hub_online_user_count(s->hub);
    struct hist_totals ht;
    hub_history_totals(s->hub, &ht);
    out->hist_bytes = ht.bytes;
    out->hist_streams = ht.streams;
    out->hist_messages = ht.messages;
    out->hist_evicted_messages = ht.evicted_messages;
    out->hist_evicted_streams = ht.evicted_streams;
    out->hist_expired_messages = ht.expired_messages;
    out->start_unix_nano = s->start_unix_nano;
    out->time_unix_nano = metrics_now_unix_nano();
    struct telemetry_counters tc;
    telemetry_counters(&tc);
    out->otel_spans_exported = tc.spans_exported;
    out->otel_spans_dropped = tc.spans_dropped;
    out->otel_export_failures = tc.export_failures;
    out->otel_export_retries = tc.export_retries;
    out->otel_spans_queued = tc.queue_pending;
    gather_cluster(s, out);
}

int server_reload_tls(struct wh_server *s)
{
    if (!s->tls) {
        log_info("SIGHUP: no TLS certificate to reload", NULL);
        return 0;
    }
    char err[512];
    if (tls_server_reload(s->tls, err, sizeof err) < 0) {
        log_error("tls reload failed: keeping the previous certificate", "error=\"%s\"", err);
        return -1;
    }
    char subject[256];
    log_info("tls certificate reloaded", "cert=%s subject=\"%s\"", s->cfg->tls_cert,
             tls_server_subject(s->tls, subject, sizeof subject));
    return 0;
}

void server_stats(struct wh_server *s, struct wh_stats *out)
{
    memset(out, 0, sizeof *out);
    uint64_t *dst = (uint64_t *)out;
    for (int i = 0; i < s->n_workers; i++) {
        const uint64_t *src = (const uint64_t *)&s->workers[i].stats;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++)
            dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
    }
    if (s->tls) { /* counted by the main thread, which owns no block */
        out->tls_reloads = tls_server_reloads(s->tls);
        out->tls_reload_failures = tls_server_reload_failures(s->tls);
    }
}
