/* wshub-bench: the load generator for wshub and for the reference peers (seed-go,
 * node-ws). Four modes: echo (round trips on /echo), fanout (room publish/deliver with
 * the guide's JSON protocol on /ws), idle (many open connections: connect rate and the
 * server's memory per connection), churn (connect, one echo, close handshake, at a
 * fixed rate). `wshub-bench --help` documents every option; bench.h lists the files.
 *
 * Design, so that the tool is not the bottleneck:
 *  - One thread, one epoll instance, edge-triggered, non-blocking sockets; every
 *    socket is registered once for EPOLLIN|EPOLLOUT|EPOLLRDHUP and never modified: a
 *    connection remembers whether its last send() hit EAGAIN and waits for EPOLLOUT.
 *  - Nothing is allocated per message. Connections and their buffers are set up
 *    before the measured window (churn: each new connection has its handshake state,
 *    as it must; the slots and their buffers are reused). Received data lands in one
 *    shared read buffer and is parsed in place (bench_wire.h says why the hot path
 *    does not use wsc_feed); only the tail of a frame cut by a read is copied aside
 *    (into a per-connection carry buffer that grows once, to the largest frame seen).
 *  - Sending: every frame the echo and churn modes send is a copy of one pre-built
 *    plain frame; its send time is written and its whole payload masked (ws_mask, a
 *    word at a time) right before the send() that carries it, each frame with its own
 *    masking key, as RFC 6455 requires of a client. The keys come from xorshift64*
 *    seeded by getrandom: a load generator has no untrusted script to defend against,
 *    so a cheap generator serves, and the server unmasks exactly what a browser's
 *    frames would make it unmask. Fan-out messages carry numbers of varying length,
 *    so a publisher builds each one in its output buffer and masks it the same way.
 *    Every echo is checked whole: its length, its send time and every byte after it.
 *    Frames produced while handling one read() are written with one send(): batching.
 *  - Timestamps: clock_gettime(CLOCK_MONOTONIC) in nanoseconds. A receive time is
 *    taken once per read() (every frame in that buffer had arrived by then); echo
 *    frames are stamped right before the send() that carries them. Latencies go into
 *    a fixed log-linear histogram (bench_hist.h).
 *  - The handshake goes through wsclient's protocol core (wsc_new / wsc_output /
 *    wsc_feed), which validates the 101; the wsc is freed once the connection is open.
 *  - Everything is bounded in time (connect, settle, drain, close phases have
 *    deadlines) and only the host of --url is ever contacted. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "bench.h"

struct opts O;
struct global g;
volatile sig_atomic_t interrupted;
const char *const mode_names[4] = {"echo", "fanout", "idle", "churn"};

static void on_signal(int sig)
{
    (void)sig;
    if (interrupted) _exit(130);
    interrupted = 1;
}

/* Hooks conn.c calls; each mode keeps its own state. */
uint32_t out_cap_for(const struct conn *c)
{
    switch (c->role) {
    case R_ECHO:
        return (uint32_t)((size_t)O.inflight * tmpl.frame_len + SMALL_OUT);
    case R_PUB:
        return (uint32_t)(PUB_BATCH + 2 * fan_msg_max() + SMALL_OUT);
    case R_CHURN:
        return (uint32_t)(tmpl.frame_len + SMALL_OUT);
    default:
        return SMALL_OUT;
    }
}

void mode_on_open(struct conn *c)
{
    switch (c->role) {
    case R_SUB:
    case R_PUB:
        fan_on_open(c);
        break;
    case R_CHURN:
        churn_on_open(c);
        break;
    default:
        break;
    }
}

void mode_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    switch (c->role) {
    case R_ECHO:
        echo_on_message(c, op, data, len);
        break;
    case R_SUB:
    case R_PUB:
        fan_on_message(c, op, data, len);
        break;
    case R_CHURN:
        churn_on_message(c, op, data, len);
        break;
    default:
        break;
    }
}

void mode_on_down(struct conn *c, bool clean)
{
    if (c->role == R_CHURN) churn_on_down(c, clean);
    if (c->role == R_ECHO) echo_on_down(c);
}

void mode_before_flush(struct conn *c)
{
    if (c->role == R_ECHO || c->role == R_CHURN) stamp_frames(c);
}

/* ------------------------------------------------------------------ main */

static bool resolve(void)
{
    char port[8];
    snprintf(port, sizeof port, "%u", g.url.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(g.url.host, port, &hints, &res);
    if (rc != 0 || !res) {
        note_error("cannot resolve %s: %s", g.url.host, gai_strerror(rc));
        return false;
    }
    memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
    g.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    g.src_bind = false;
    if (g.addr.ss_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, &g.addr, sizeof sin);
        g.src_bind = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
    }
    return true;
}

int main(int argc, char **argv)
{
    int rc = parse_args(argc, argv);
    if (rc != EXIT_OK) return rc;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g.clk_tck = sysconf(_SC_CLK_TCK);
    if (g.clk_tck <= 0) g.clk_tck = 100;
    while (g.mask_rng == 0) /* xorshift needs a non-zero state */
        if (getrandom(&g.mask_rng, sizeof g.mask_rng, 0) != (ssize_t)sizeof g.mask_rng) {
            fprintf(stderr, PROG ": getrandom: %s\n", strerror(errno));
            return EXIT_FAIL;
        }
    g.rbuf = xcalloc(1, MAX_CARRY + RBUF_SIZE);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        fprintf(stderr, PROG ": epoll_create1: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    if (!resolve()) {
        struct cpu_mark a;
        cpu_mark(&a);
        json_begin();
        jcat(",\"params\":{},\"results\":{}");
        report_common(&a, &a, 0, NULL, NULL, false);
        return EXIT_FAIL;
    }
    switch (O.mode) {
    case M_ECHO:
        rc = run_echo();
        break;
    case M_FANOUT:
        rc = run_fanout();
        break;
    case M_IDLE:
        rc = run_idle();
        break;
    case M_CHURN:
        rc = run_churn();
        break;
    }
    /* the process exits now: the kernel closes what is left */
    return rc;
}
