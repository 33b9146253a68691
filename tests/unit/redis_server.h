/* Shared by the unit tests that need a real Redis (test_redis_cluster,
 * test_redis_presence): a redis-server of Debian's on a free loopback port, started in
 * the cmocka group setup and killed by PID in the teardown, plus helpers to run a
 * loop until something holds and to watch a redis_conn's up/down state.
 *
 * Include it after cmocka.h, once per test program. Before including, define
 * REDIS_TEST_PASSWORD (the server then requires it; sync_client authenticates) and
 * REDIS_TEST_DIR (the mkdtemp template of the server's directory). Everything here is
 * static: each test program has its own server. */
#ifndef WSHUB_TESTS_REDIS_SERVER_H
#define WSHUB_TESTS_REDIS_SERVER_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "cluster/redis_conn.h"
#include "loop/loop.h"

static pid_t redis_pid;
static unsigned redis_port;
static char redis_dir[64];

static unsigned free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) < 0)
        fail_msg("no free port");
    close(s);
    return ntohs(a.sin_port);
}

/* A blocking client for the test's own checks (never on the loop under test): NULL
 * until the server answers (authenticated when it has a password). */
static redisContext *sync_client(void)
{
    redisContext *c = redisConnect("127.0.0.1", (int)redis_port);
    if (!c || c->err) {
        if (c) redisFree(c);
        return NULL;
    }
#ifdef REDIS_TEST_PASSWORD
    redisReply *r = redisCommand(c, "AUTH %s", REDIS_TEST_PASSWORD);
#else
    redisReply *r = redisCommand(c, "PING");
#endif
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void start_redis(void)
{
    char port[16];
    snprintf(port, sizeof port, "%u", redis_port);
    redis_pid = fork();
    assert_true(redis_pid >= 0);
    if (redis_pid == 0) {
        /* No inherited output: a server outliving a killed test must not hold the
         * runner's pipes open. */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
#ifdef REDIS_TEST_PASSWORD
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", redis_dir, "--requirepass", REDIS_TEST_PASSWORD,
               "--loglevel", "warning", (char *)NULL);
#else
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", redis_dir, "--loglevel", "warning", (char *)NULL);
#endif
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s for the server to listen */
        redisContext *c = sync_client();
        if (c) {
            redisFree(c);
            return;
        }
        int st;
        if (waitpid(redis_pid, &st, WNOHANG) == redis_pid)
            fail_msg("redis-server exited (status %d; 127: not installed, run scripts/setup.sh "
                     "test)",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        usleep(10000);
    }
    fail_msg("redis-server did not start");
}

static void stop_redis(void)
{
    if (redis_pid <= 0) return;
    kill(redis_pid, SIGKILL);
    waitpid(redis_pid, NULL, 0);
    redis_pid = 0;
}

static int setup(void **state)
{
    (void)state;
    strcpy(redis_dir, REDIS_TEST_DIR);
    if (!mkdtemp(redis_dir)) return -1;
    redis_port = free_port();
    start_redis();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop_redis();
    rmdir(redis_dir);
    return 0;
}

/* ---- running the loop under test ---- */

struct until {
    struct timer t;
    bool (*pred)(void *);
    void *arg;
    uint64_t deadline;
};

static void until_poll(struct loop *loop, struct timer *t)
{
    struct until *u = (struct until *)t;
    if (u->pred(u->arg) || loop_now(loop) >= u->deadline)
        loop_stop(loop);
    else
        loop_timer_arm(loop, t, 1);
}

/* Runs the loop until pred holds; false after 10 s (a guard against a hang, not a
 * timing assertion). */
static bool run_until(struct loop *loop, bool (*pred)(void *), void *arg)
{
    struct until u = {.pred = pred, .arg = arg, .deadline = loop_now_update(loop) + 10000};
    loop_timer_init(&u.t, until_poll);
    loop_timer_arm(loop, &u.t, 0);
    loop_run(loop);
    loop_timer_cancel(loop, &u.t);
    return pred(arg);
}

/* A connection's state callbacks, counted. */
struct watch {
    int ups, downs;
    bool up;
};

static void on_state(struct redis_conn *rc, bool up, void *arg)
{
    (void)rc;
    struct watch *w = arg;
    w->up = up;
    if (up)
        w->ups++;
    else
        w->downs++;
}

static bool is_up(void *arg)
{
    return ((struct watch *)arg)->up;
}

static bool is_down(void *arg)
{
    return !((struct watch *)arg)->up;
}

#endif
