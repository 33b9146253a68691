/* The io_uring question of issue 4, measured in isolation: is one small frame sent
 * to each of N loopback TCP sockets cheaper as N write(2) calls (what wshub's epoll
 * loop does when a lone message fans out) or as N sends submitted to io_uring in one
 * io_uring_enter? A reader thread on another CPU drains the peers with epoll, as a
 * load generator would, so wake-ups are part of the cost.
 *
 * Build and run (needs liburing-dev; not part of the product or of `make test`):
 *   cc -O2 -o /tmp/uring_send bench/uring_send.c -luring -lpthread
 *   taskset -c 0 /tmp/uring_send [N=1000] [ROUNDS=300]
 * Prints, for each method, the wall time and the sending thread's CPU time per round
 * and per send. */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME 66 /* a 64-byte payload behind a 2-byte WebSocket header */

static int n_socks, rounds;
static int *snd, *rcv;
static atomic_long received;
static atomic_int stop;

static double now_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *reader(void *arg)
{
    (void)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(1, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    int ep = epoll_create1(0);
    for (int i = 0; i < n_socks; i++) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = rcv[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, rcv[i], &ev) < 0) die("epoll_ctl");
    }
    struct epoll_event evs[256];
    char buf[65536];
    while (!atomic_load(&stop)) {
        int k = epoll_wait(ep, evs, 256, 50);
        for (int i = 0; i < k; i++) {
            ssize_t r;
            while ((r = read(evs[i].data.fd, buf, sizeof buf)) > 0)
                atomic_fetch_add(&received, r);
        }
    }
    close(ep);
    return NULL;
}

static void connect_pairs(void)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) die("listen");
    getsockname(ls, (struct sockaddr *)&a, &al);
    for (int i = 0; i < n_socks; i++) {
        rcv[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(rcv[i], (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
            die("connect");
        snd[i] = accept(ls, NULL, NULL);
        if (snd[i] < 0) die("accept");
        int one = 1;
        setsockopt(snd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    close(ls);
}

static void wait_received(long want)
{
    while (atomic_load(&received) < want) sched_yield();
}

int main(int argc, char **argv)
{
    n_socks = argc > 1 ? atoi(argv[1]) : 1000;
    rounds = argc > 2 ? atoi(argv[2]) : 300;
    snd = calloc((size_t)n_socks, sizeof *snd);
    rcv = calloc((size_t)n_socks, sizeof *rcv);
    connect_pairs();
    pthread_t th;
    pthread_create(&th, NULL, reader, NULL);
    char frame[FRAME];
    memset(frame, 'x', sizeof frame);
    frame[0] = (char)0x81;
    frame[1] = 64;

    struct io_uring ring;
    if (io_uring_queue_init((unsigned)n_socks < 4096 ? 4096 : (unsigned)n_socks, &ring, 0) < 0)
        die("io_uring_queue_init");

    long expect = 0;
    for (int method = 0; method < 2; method++) {
        for (int pass = 0; pass < 2; pass++) { /* pass 0 warms up */
            double w = 0, c = 0;
            for (int r = 0; r < rounds; r++) {
                double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_THREAD_CPUTIME_ID);
                if (method == 0) {
                    for (int i = 0; i < n_socks; i++)
                        if (write(snd[i], frame, FRAME) != FRAME) die("write");
                } else {
                    for (int i = 0; i < n_socks; i++) {
                        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                        io_uring_prep_send(sqe, snd[i], frame, FRAME, 0);
                    }
                    io_uring_submit_and_wait(&ring, (unsigned)n_socks);
                    struct io_uring_cqe *cqe;
                    unsigned head, seen = 0;
                    io_uring_for_each_cqe(&ring, head, cqe)
                    {
                        if (cqe->res != FRAME) die("send");
                        seen++;
                    }
                    io_uring_cq_advance(&ring, seen);
                    if (seen != (unsigned)n_socks) die("completions");
                }
                w += now_s(CLOCK_MONOTONIC) - w0;
                c += now_s(CLOCK_THREAD_CPUTIME_ID) - c0;
                expect += (long)n_socks * FRAME;
                wait_received(expect); /* one lone message per round, like 100 msg/s */
            }
            if (pass == 1)
                printf("%-9s N=%d rounds=%d: %.3f ms wall and %.3f ms CPU per round, %.2f us "
                       "CPU per send\n",
                       method == 0 ? "write(2)" : "io_uring", n_socks, rounds, w / rounds * 1e3,
                       c / rounds * 1e3, c / rounds / n_socks * 1e6);
        }
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    io_uring_queue_exit(&ring);
    return 0;
}
