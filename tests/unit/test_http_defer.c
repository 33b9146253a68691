/* Deferred HTTP answers (http_defer) through the real HTTP server on a loop, with a
 * plain TCP client on 127.0.0.1. The routes are the test's own: handlers that defer
 * and are answered from a timer, by the test itself, at once, or never (timeout).
 * Checked: the answer arrives with its status, headers and body; keep-alive goes on
 * after it; pipelined requests (in the same write, in a later write, and more than
 * the input limit, which pauses reading) are answered after it and in order; a
 * peer that closes tears the connection down and the late answer only frees the
 * handle (ASan: nothing leaks); the timeout answers 504; HEAD gets no body; graceful
 * shutdown waits for the answer or the timeout, then closes; the access line has the
 * real status and the trace id copied at http_defer; the metrics count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/stats.h"
#include "http/server.h"
#include "loop/loop.h"

#define TRACE_HEX "0af7651916cd43dd8448eb211c80319c"

static struct loop *loop;
static struct conn_list conns;
static struct http_server srv;
static int lfd = -1;
static int log_fd = -1, saved_stderr = -1;

/* ---- the test's routes ---- */

/* A request held by the test: answered by the test itself (or left to time out). */
static struct http_deferred *held;
static char held_query[64]; /* copied from the request: the handle holds none of it */

/* Answers given from a timer, as a Redis reply would come. */
struct later {
    struct timer t;
    struct http_deferred *d;
    char body[128];
    size_t len;
};
static struct later laters[8];
static int n_laters;

static void later_cb(struct loop *l, struct timer *t)
{
    (void)l;
    struct later *lt = (struct later *)t;
    http_deferred_respond(lt->d, 200, "text/plain", "X-Answer: later\r\n", lt->body, lt->len);
    lt->d = NULL;
}

static void answer_later(struct http_deferred *d, const void *body, size_t len)
{
    assert_true(n_laters < 8);
    struct later *lt = &laters[n_laters++];
    lt->d = d;
    assert_true(len <= sizeof lt->body);
    memcpy(lt->body, body, len);
    lt->len = len;
    loop_timer_init(&lt->t, later_cb);
    loop_timer_arm(loop, &lt->t, 20);
}

static void h_now(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    http_respond(ctx, 200, "text/plain", NULL, "now", 3);
}

static void h_later(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    struct http_deferred *d = http_defer(ctx, 5000);
    assert_non_null(d);
    answer_later(d, "later", 5);
}

/* Body echoed from a timer: copied now, as the request's body is gone after return. */
static void h_echo(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    struct http_deferred *d = http_defer(ctx, 5000);
    assert_non_null(d);
    answer_later(d, ctx->body, ctx->body_len);
}

static void shutdown_all(void);
static bool shutdown_when_held; /* the shutdown begins as the request is deferred */

/* Traced like routes.c's /ws: the trace id lives on the handler's stack. */
static void hold(struct http_ctx *ctx, uint32_t timeout_ms)
{
    char trace[sizeof TRACE_HEX] = TRACE_HEX;
    ctx->trace_id = trace;
    assert_null(held);
    held = http_defer(ctx, timeout_ms);
    assert_non_null(held);
    /* A handler that deferred cannot answer through ctx any more. */
    http_respond(ctx, 500, "text/plain", NULL, "bad", 3);
    snprintf(held_query, sizeof held_query, "%.*s", (int)ctx->req->query_len,
             ctx->req->query ? ctx->req->query : "");
    memset(trace, 'x', sizeof trace - 1); /* the stack goes: the handle has its copy */
    if (shutdown_when_held) shutdown_all();
}

static void h_held(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    hold(ctx, 10000);
}

static void h_short(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    hold(ctx, 30);
}

/* Defers, then knows the answer at once (a cached value, an error found early). */
static void h_at_once(struct http_ctx *ctx, void *ud)
{
    (void)ud;
    struct http_deferred *d = http_defer(ctx, 5000);
    assert_non_null(d);
    assert_false(http_deferred_gone(d));
    http_deferred_respond_error(d, 409, "conflict", "known at once", NULL);
}

static const struct http_route routes[] = {
    {"GET", "/now", h_now, NULL},     {"GET", "/later", h_later, NULL},
    {"POST", "/echo", h_echo, NULL},  {"GET", "/held", h_held, NULL},
    {"GET", "/short", h_short, NULL}, {"GET", "/at-once", h_at_once, NULL},
};

/* Answers the held request as the owner would, with what it copied. */
static void answer_held(void)
{
    char body[96];
    int n = snprintf(body, sizeof body, "held:%s", held_query);
    http_deferred_respond(held, 200, "text/plain", NULL, body, (size_t)n);
    held = NULL;
}

/* ---- the loop and the client ---- */

static void stop_cb(struct loop *l, struct timer *t)
{
    (void)t;
    loop_stop(l);
}

static void spin(unsigned ms)
{
    struct timer t;
    loop_timer_init(&t, stop_cb);
    loop_timer_arm(loop, &t, ms);
    loop_run(loop);
    loop_timer_cancel(loop, &t);
}

/* Accepts pending connections into the HTTP server (as the listener would). */
static void accept_all(void)
{
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        assert_int_equal(http_conn_start(&srv, loop, fd, &conns), 0);
}

struct client {
    int fd;
    char buf[64 * 1024];
    size_t len;
    bool eof;
};

static void client_open(struct client *cl)
{
    memset(cl, 0, sizeof *cl);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(cl->fd >= 0);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&a, alen), 0);
    fcntl(cl->fd, F_SETFL, fcntl(cl->fd, F_GETFL) | O_NONBLOCK);
    accept_all();
}

static void client_send(struct client *cl, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(cl->fd, s, n), (ssize_t)n);
}

static void client_pump(struct client *cl)
{
    for (;;) {
        ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof cl->buf - cl->len);
        if (n > 0) {
            cl->len += (size_t)n;
            continue;
        }
        if (n == 0) cl->eof = true;
        return;
    }
}

/* Turns the loop until cond() holds; a bound on turns, not a timing assertion. */
static void run_until(bool (*cond)(void *), void *arg)
{
    for (int i = 0; i < 1000; i++) {
        if (cond(arg)) return;
        spin(5);
    }
    fail_msg("the condition never held");
}

static bool is_held(void *arg)
{
    (void)arg;
    return held != NULL;
}

static bool no_conns(void *arg)
{
    (void)arg;
    return conn_list_count(&conns) == 0;
}

static bool client_eof(void *arg)
{
    struct client *cl = arg;
    client_pump(cl);
    return cl->eof;
}

struct resp {
    int status;
    char head[1024];
    char body[512];
    size_t body_len;
};

/* Takes one whole response off the client's buffer; head_only: a HEAD answer (a
 * Content-Length but no body). */
static bool take_response(struct client *cl, bool head_only, struct resp *r)
{
    char *end = memmem(cl->buf, cl->len, "\r\n\r\n", 4);
    if (!end) return false;
    size_t hlen = (size_t)(end - cl->buf) + 4;
    assert_true(hlen < sizeof r->head);
    memcpy(r->head, cl->buf, hlen);
    r->head[hlen] = 0;
    const char *cl_hdr = strstr(r->head, "Content-Length: ");
    assert_non_null(cl_hdr);
    size_t blen = head_only ? 0 : strtoul(cl_hdr + 16, NULL, 10);
    if (cl->len < hlen + blen) return false;
    assert_true(blen < sizeof r->body);
    memcpy(r->body, cl->buf + hlen, blen);
    r->body[blen] = 0;
    r->body_len = blen;
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    memmove(cl->buf, cl->buf + hlen + blen, cl->len - hlen - blen);
    cl->len -= hlen + blen;
    return true;
}

static void await_response(struct client *cl, bool head_only, struct resp *r)
{
    for (int i = 0; i < 1000; i++) {
        client_pump(cl);
        if (take_response(cl, head_only, r)) return;
        spin(5);
    }
    fail_msg("no response came");
}

static void expect(struct client *cl, int status, const char *body)
{
    struct resp r;
    await_response(cl, false, &r);
    if (r.status != status || strcmp(r.body, body) != 0)
        fail_msg("expected %d \"%s\", got %d \"%s\"", status, body, r.status, r.body);
}

/* Lets the server run a few turns, then says whether the client has received
 * nothing: an answer sent would have been flushed at the end of the first turn. */
static bool nothing_received(struct client *cl)
{
    for (int i = 0; i < 3; i++)
        spin(5);
    client_pump(cl);
    return cl->len == 0 && !cl->eof;
}

/* What the server logged (stderr goes to a file during the tests). */
static bool log_has(const char *needle)
{
    char buf[1 << 16];
    ssize_t n = pread(log_fd, buf, sizeof buf - 1, 0);
    if (n < 0) return false;
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

static uint64_t stat_of(const uint64_t *field)
{
    return __atomic_load_n(field, __ATOMIC_RELAXED);
}

static int setup(void **state)
{
    (void)state;
    loop = loop_create();
    assert_non_null(loop);
    conn_list_init(&conns);
    memset(&srv, 0, sizeof srv);
    srv.routes = routes;
    srv.n_routes = sizeof routes / sizeof routes[0];
    srv.limits =
        (struct http_limits){.max_request_line = 1024, .max_head_bytes = 2048, .max_headers = 32};
    srv.max_body = 1024;
    srv.handshake_timeout_ms = 10000;
    srv.idle_timeout_ms = 10000;
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 16), 0);
    held = NULL;
    n_laters = 0;
    shutdown_when_held = false;
    /* Each test reads only its own log lines (the file is opened O_APPEND). */
    assert_int_equal(ftruncate(log_fd, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < n_laters; i++) {
        loop_timer_cancel(loop, &laters[i].t);
        if (laters[i].d) http_deferred_respond(laters[i].d, 200, NULL, NULL, NULL, 0);
    }
    if (held) answer_held();
    struct conn *c;
    while ((c = conn_list_first(&conns)))
        conn_close(c);
    loop_drain_tasks(loop);
    loop_destroy(loop);
    close(lfd);
    return 0;
}

/* ---- tests ---- */

static void test_answer_later_and_keep_alive(void **state)
{
    (void)state;
    uint64_t deferred0 = stat_of(&stats_cur->http_deferred);
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    await_response(&cl, false, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "later");
    assert_non_null(strstr(r.head, "X-Answer: later\r\n"));
    assert_non_null(strstr(r.head, "Content-Type: text/plain\r\n"));
    assert_null(strstr(r.head, "Connection: close"));
    /* The same connection goes on: another deferred request, then a plain one. */
    client_send(&cl, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\npayload");
    expect(&cl, 200, "payload");
    client_send(&cl, "GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 200, "now");
    assert_int_equal(conn_list_count(&conns), 1);
    assert_int_equal(stat_of(&stats_cur->http_deferred) - deferred0, 2);
    close(cl.fd);
}

static void test_access_line_has_status_and_trace(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /held?logged HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    answer_held();
    expect(&cl, 200, "held:logged");
    assert_true(log_has("method=GET path=/held proto=HTTP/1.1 status=200 bytes=11 duration_ms="));
    assert_true(log_has("trace_id=" TRACE_HEX));
    close(cl.fd);
}

static void test_pipelined_waits_and_keeps_order(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    /* In the same write as the deferred request. */
    client_send(&cl, "GET /held?one HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /now HTTP/1.1\r\nHost: t\r\n\r\n"
                     "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\necho"
                     "GET /at-once HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    assert_true(nothing_received(&cl));
    answer_held();
    expect(&cl, 200, "held:one");
    expect(&cl, 200, "now");
    expect(&cl, 200, "echo");
    expect(&cl, 409, "{\"error\":{\"code\":\"conflict\",\"message\":\"known at once\"}}\n");
    /* In a later write, while the request is deferred. */
    client_send(&cl, "GET /held?two HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    client_send(&cl, "GET /now HTTP/1.1\r\nHost: t\r\n\r\nGET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_true(nothing_received(&cl));
    answer_held();
    expect(&cl, 200, "held:two");
    expect(&cl, 200, "now");
    expect(&cl, 200, "later");
    assert_int_equal(conn_list_count(&conns), 1);
    close(cl.fd);
}

/* More pipelined input than one request may hold (head + body limits): reading
 * pauses while the request is deferred, and every request is answered after it. */
static void test_pipelined_past_the_limit(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /held?big HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    static const char one[] = "GET /now HTTP/1.1\r\nHost: t\r\n\r\n";
    enum { N = 200 }; /* 6 KiB, over the 3 KiB limit */
    for (int i = 0; i < N; i++)
        client_send(&cl, one);
    assert_true(nothing_received(&cl));
    /* Reading is paused now: these wait in the socket. */
    for (int i = 0; i < N / 4; i++)
        client_send(&cl, one);
    assert_true(nothing_received(&cl));
    answer_held();
    expect(&cl, 200, "held:big");
    for (int i = 0; i < N + N / 4; i++)
        expect(&cl, 200, "now");
    client_send(&cl, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 200, "later");
    close(cl.fd);
}

/* A deferred request that arrived in pieces (gathered in the connection's buffer,
 * the other path through the server), with more behind it. */
static void test_split_request(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /held?split HTTP/1.1\r\nHo");
    assert_true(nothing_received(&cl));
    client_send(&cl, "st: t\r\n\r\nGET /now HTTP/1.1\r\nHost: t\r\n\r\nGET /at-");
    run_until(is_held, NULL);
    assert_true(nothing_received(&cl));
    answer_held();
    expect(&cl, 200, "held:split");
    expect(&cl, 200, "now");
    /* The same with a handler that answers through the handle at once. */
    client_send(&cl, "once HTTP/1.1\r\nHost: t\r\n\r\nGET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 409, "{\"error\":{\"code\":\"conflict\",\"message\":\"known at once\"}}\n");
    expect(&cl, 200, "now");
    close(cl.fd);
}

static void test_at_once_answer(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl,
                "GET /at-once HTTP/1.1\r\nHost: t\r\n\r\nGET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 409, "{\"error\":{\"code\":\"conflict\",\"message\":\"known at once\"}}\n");
    expect(&cl, 200, "now");
    close(cl.fd);
}

static void test_peer_closes_before_the_answer(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /held?gone HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    assert_false(http_deferred_gone(held));
    assert_int_equal(http_deferred_status(held), 0);
    close(cl.fd);
    run_until(no_conns, NULL); /* torn down, not kept until the answer */
    assert_true(http_deferred_gone(held));
    assert_int_equal(http_deferred_status(held), 499);
    answer_held(); /* a no-op that frees the handle (ASan: no leak, no use after free) */
    spin(5);
    assert_true(log_has("path=/held proto=HTTP/1.1 status=499"));
}

static void test_timeout_answers_504(void **state)
{
    (void)state;
    uint64_t timeouts0 = stat_of(&stats_cur->http_deferred_timeouts);
    uint64_t s5xx0 = stat_of(&stats_cur->http_status[5]);
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /short HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    await_response(&cl, false, &r);
    assert_int_equal(r.status, 504);
    assert_string_equal(r.body,
                        "{\"error\":{\"code\":\"timeout\",\"message\":\"no answer in time\"}}\n");
    assert_non_null(strstr(r.head, "HTTP/1.1 504 Gateway Timeout\r\n"));
    assert_non_null(held);
    assert_true(http_deferred_gone(held));
    assert_int_equal(http_deferred_status(held), 504);
    assert_int_equal(stat_of(&stats_cur->http_deferred_timeouts) - timeouts0, 1);
    assert_int_equal(stat_of(&stats_cur->http_status[5]) - s5xx0, 1);
    /* The connection goes on; the owner's late answer only frees the handle. */
    client_send(&cl, "GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 200, "now");
    answer_held();
    assert_true(nothing_received(&cl));
    assert_true(log_has("path=/short proto=HTTP/1.1 status=504"));
    close(cl.fd);
}

static void test_head_has_no_body(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "HEAD /later HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    await_response(&cl, true, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Length: 5\r\n"));
    /* No body bytes: the next answer starts right after the head. */
    client_send(&cl, "GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    expect(&cl, 200, "now");
    close(cl.fd);
}

static void test_connection_close_request(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /later HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    struct resp r;
    await_response(&cl, false, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    run_until(client_eof, &cl); /* the server half-closed: its side is done */
    close(cl.fd);
    cl.fd = -1;
    run_until(no_conns, NULL);
}

static void shutdown_all(void)
{
    srv.shutting_down = true;
    struct conn *c = conn_list_first(&conns);
    while (c) {
        struct conn *next = conn_list_next(&conns, c);
        if (http_conn_is(c)) http_conn_shutdown(c);
        c = next;
    }
}

static void test_shutdown_waits_for_the_answer(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    client_send(&cl, "GET /held?last HTTP/1.1\r\nHost: t\r\n\r\n");
    run_until(is_held, NULL);
    shutdown_all();
    assert_true(nothing_received(&cl));
    assert_int_equal(conn_list_count(&conns), 1); /* still waiting for its answer */
    answer_held();
    struct resp r;
    await_response(&cl, false, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "held:last");
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    run_until(client_eof, &cl); /* the server half-closed: its side is done */
    close(cl.fd);
    cl.fd = -1;
    run_until(no_conns, NULL);
}

static void test_shutdown_ends_at_the_timeout(void **state)
{
    (void)state;
    struct client cl;
    client_open(&cl);
    /* Begun from the handler: surely before the 30 ms timeout, whatever the load. */
    shutdown_when_held = true;
    client_send(&cl, "GET /short HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    await_response(&cl, false, &r); /* no owner answer: the timeout's */
    assert_int_equal(r.status, 504);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    run_until(client_eof, &cl); /* the server half-closed: its side is done */
    close(cl.fd);
    cl.fd = -1;
    run_until(no_conns, NULL);
    assert_true(http_deferred_gone(held));
    answer_held();
}

static char log_path[64];

/* stderr (the server's log, and a sanitizer's report) goes to a file, kept when the
 * test dies so that the report can be read there. */
static int group_setup(void **state)
{
    (void)state;
    snprintf(log_path, sizeof log_path, "/tmp/wshub-http-defer-%d.log", (int)getpid());
    log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0600);
    assert_true(log_fd >= 0);
    printf("stderr (server log, sanitizer reports) goes to %s\n", log_path);
    fflush(stdout);
    saved_stderr = dup(2);
    dup2(log_fd, 2);
    log_configure(LOG_INFO, 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(log_fd);
    unlink(log_path);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer_later_and_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_line_has_status_and_trace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_waits_and_keeps_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_past_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_once_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closes_before_the_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_answers_504, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_waits_for_the_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_at_the_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
