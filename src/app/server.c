/* Workers and wiring: builds each worker's loop, listeners and routes, runs the loops
 * on their threads, and carries out the graceful shutdown on each of them. */
#include "app/server.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/echo.h"
#include "app/routes.h"
#include "base/log.h"
#include "http/server.h"
#include "loop/loop.h"
#include "net/conn.h"
#include "net/listener.h"
#include "ws/conn.h"

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
};

struct wh_server {
    const struct wh_config *cfg;
    struct ws_options wsopt;
    struct routes_ctx routes;
    uint16_t ports[WH_MAX_LISTEN];
    int n_workers;
    struct worker *workers;
    atomic_int running;
    atomic_int shutdown_requested;
};

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
    while (w->conns.head)
        conn_close(w->conns.head);
}

static void shutdown_deadline_cb(struct loop *loop, struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, shutdown_deadline));
    if (w->conns.count)
        log_warn("shutdown deadline reached, dropping connections", "worker=%d left=%zu", w->id,
                 w->conns.count);
    force_close_all(w);
    loop_stop(loop);
}

static void shutdown_poll_cb(struct loop *loop, struct timer *t)
{
    struct worker *w = (struct worker *)((char *)t - offsetof(struct worker, shutdown_poll));
    if (w->conns.count == 0) {
        loop_timer_cancel(loop, &w->shutdown_deadline);
        loop_stop(loop);
        return;
    }
    loop_timer_arm(loop, t, 10);
}

/* Runs on the worker's own thread (posted). */
static void worker_shutdown(struct loop *loop, void *arg)
{
    struct worker *w = arg;
    if (w->shutting_down) return;
    w->shutting_down = true;
    w->http.shutting_down = true;
    for (int i = 0; i < w->n_listeners; i++)
        listener_close(&w->listeners[i]);
    struct conn *c = w->conns.head;
    while (c) {
        struct conn *next = c->list_next; /* closing unlinks c */
        if (http_conn_is(c))
            http_conn_shutdown(c);
        else if (ws_conn_is(c))
            ws_conn_shutdown(c);
        c = next;
    }
    loop_timer_init(&w->shutdown_deadline, shutdown_deadline_cb);
    loop_timer_init(&w->shutdown_poll, shutdown_poll_cb);
    loop_timer_arm(loop, &w->shutdown_deadline, w->srv->cfg->shutdown_timeout_ms);
    loop_timer_arm(loop, &w->shutdown_poll, 0);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    stats_cur = &w->stats;
    loop_run(w->loop);
    force_close_all(w);
    loop_drain_tasks(w->loop);
    conn_thread_cleanup();
    log_debug("worker stopped", "worker=%d", w->id);
    atomic_fetch_sub(&w->srv->running, 1);
    return NULL;
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
    };
    for (int i = 0; i < cfg->n_listen; i++) {
        int fd = listener_socket(cfg->listen[i].host, s->ports[i], 1);
        if (fd < 0) return fd;
        struct listener *l = &w->listeners[w->n_listeners++];
        snprintf(l->name, sizeof l->name, "%s:%u", cfg->listen[i].host, s->ports[i]);
        int rc = listener_start(l, w->loop, fd, on_accept, w);
        if (rc < 0) return rc;
    }
    return 0;
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
    free(s);
}

struct wh_server *server_start(const struct wh_config *cfg)
{
    struct wh_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = cfg;
    s->wsopt = (struct ws_options){
        .max_message_size = cfg->max_message_size,
        .ping_interval_ms = cfg->ping_interval_ms,
        .read_timeout_ms = cfg->read_timeout_ms,
        .write_timeout_ms = cfg->write_timeout_ms,
        .close_timeout_ms = cfg->close_timeout_ms,
    };
    routes_init(&s->routes, cfg, &s->wsopt);
    int n = cfg->threads;
    if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (int)cpus : 1;
    }
    if (resolve_ports(s) < 0) {
        free(s);
        return NULL;
    }
    s->workers = calloc((size_t)n, sizeof *s->workers);
    if (!s->workers) {
        free(s);
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
    atomic_store(&s->running, n);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            log_error("cannot start thread", "worker=%d", i);
            exit(1); /* startup only: no partial server is worth running */
        }
    }
    for (int i = 0; i < cfg->n_listen; i++)
        log_info("listening", "addr=%s port=%u threads=%d",
                 cfg->listen[i].host[0] ? cfg->listen[i].host : "0.0.0.0", s->ports[i], n);
    return s;
}

void server_shutdown(struct wh_server *s)
{
    if (atomic_exchange(&s->shutdown_requested, 1)) return;
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
    server_free(s);
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
}
