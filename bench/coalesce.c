/* The threshold of issue 13's write coalescing, measured in isolation: K queued frames
 * of S bytes go to each of N loopback TCP sockets, either as one writev with an iovec
 * per frame (what net/conn.c did) or copied into one staging buffer and sent with one
 * write (what it does now for frames under CONN_COALESCE_MIN). A reader thread on
 * another CPU drains the peers with epoll, as a load generator would. For each S the
 * two methods alternate round by round, so that load from other processes falls on
 * both alike; the sending thread's CPU time per frame is reported (median of the
 * rounds).
 *
 * Build and run (not part of the product or of `make test`):
 *   cc -O2 -o /tmp/coalesce bench/coalesce.c -lpthread
 *   /tmp/coalesce [N=200] [K=16] [ROUNDS=40]      (pins itself to CPU 0, reader to 1) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_K 64

static int n_socks, k_frames, rounds;
static int *wfd, *rfd;
static atomic_int stop;

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *reader(void *arg)
{
    (void)arg;
    pin(1);
    int ep = epoll_create1(0);
    for (int i = 0; i < n_socks; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = rfd[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, rfd[i], &ev);
    }
    static char buf[1 << 18];
    struct epoll_event evs[256];
    while (!atomic_load(&stop)) {
        int n = epoll_wait(ep, evs, 256, 10);
        for (int i = 0; i < n; i++)
            while (read(evs[i].data.fd, buf, sizeof buf) > 0) {
            }
    }
    close(ep);
    return NULL;
}

static void connect_pairs(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0) exit(1);
    getsockname(l, (struct sockaddr *)&a, &al);
    int one = 1;
    for (int i = 0; i < n_socks; i++) {
        wfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(wfd[i], (struct sockaddr *)&a, sizeof a) < 0) exit(1);
        rfd[i] = accept(l, NULL, NULL);
        setsockopt(wfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(rfd[i], F_SETFL, O_NONBLOCK);
    }
    close(l);
}

static int cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    n_socks = argc > 1 ? atoi(argv[1]) : 200;
    k_frames = argc > 2 ? atoi(argv[2]) : 16;
    rounds = argc > 3 ? atoi(argv[3]) : 40;
    if (n_socks < 1 || k_frames < 1 || k_frames > MAX_K || rounds < 1) return 2;
    wfd = calloc((size_t)n_socks, sizeof *wfd);
    rfd = calloc((size_t)n_socks, sizeof *rfd);
    connect_pairs();
    pthread_t th;
    pthread_create(&th, NULL, reader, NULL);
    pin(0);
    static const size_t sizes[] = {64, 160, 512, 1024, 1536, 2048, 4096, 8192};
    /* frames live in separate allocations, as queued messages do */
    uint8_t *frame[MAX_K];
    size_t stage_cap = (size_t)k_frames * 8192;
    uint8_t *stage = malloc(stage_cap);
    double *t_iov = calloc((size_t)rounds, sizeof(double));
    double *t_cpy = calloc((size_t)rounds, sizeof(double));
    printf("%d sockets, %d frames queued per socket per round, %d rounds; CPU ns per frame "
           "(sending thread), median\n",
           n_socks, k_frames, rounds);
    printf("%8s %12s %12s %8s\n", "size", "writev/iov", "copy+write", "ratio");
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t sz = sizes[si];
        for (int k = 0; k < k_frames; k++) {
            frame[k] = malloc(sz);
            memset(frame[k], 'a' + k, sz);
        }
        for (int r = 0; r < rounds; r++) {
            for (int method = 0; method < 2; method++) {
                double t0 = thread_cpu_ns();
                for (int s = 0; s < n_socks; s++) {
                    if (method == 0) {
                        struct iovec iov[MAX_K];
                        for (int k = 0; k < k_frames; k++) {
                            iov[k].iov_base = frame[k];
                            iov[k].iov_len = sz;
                        }
                        if (writev(wfd[s], iov, k_frames) < 0) perror("writev");
                    } else {
                        size_t used = 0;
                        for (int k = 0; k < k_frames; k++) {
                            memcpy(stage + used, frame[k], sz);
                            used += sz;
                        }
                        if (write(wfd[s], stage, used) < 0) perror("write");
                    }
                }
                double dt = (thread_cpu_ns() - t0) / ((double)n_socks * k_frames);
                (method == 0 ? t_iov : t_cpy)[r] = dt;
                usleep(2000); /* let the reader drain */
            }
        }
        qsort(t_iov, (size_t)rounds, sizeof(double), cmp);
        qsort(t_cpy, (size_t)rounds, sizeof(double), cmp);
        double a = t_iov[rounds / 2], b = t_cpy[rounds / 2];
        printf("%8zu %12.0f %12.0f %8.2f\n", sz, a, b, b / a);
        fflush(stdout);
        for (int k = 0; k < k_frames; k++)
            free(frame[k]);
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    return 0;
}
