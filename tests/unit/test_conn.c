/* net/conn over a socketpair: reads reach on_data, queued messages arrive whole and in
 * order, a full socket blocks (on_blocked) and drains (on_drain), pause holds input
 * back until resume, conn_finish delivers then sends EOF, a close from inside a
 * callback is safe and on_free runs exactly once, migrate keeps the stream, and
 * writes that block part-way through coalesced (staged) and in-place frames lose and
 * repeat nothing, and corked bytes keep their order through hand-overs, queueing,
 * partial sends, migration and close. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/listener.h"

struct tconn {
    struct conn c;
    char got[1 << 16];
    size_t got_len;
    int drains, blocked, frees, eofs;
    bool close_on_data;
    struct tconn *migrate_to; /* on data: migrate into it (once) */
};

static int frees_total;
static const struct conn_ops tops; /* defined below the callbacks */

static void t_data(struct conn *c, uint8_t *d, size_t n)
{
    struct tconn *t = (struct tconn *)c;
    size_t room = sizeof t->got - t->got_len;
    if (n > room) n = room;
    memcpy(t->got + t->got_len, d, n);
    t->got_len += n;
    if (t->close_on_data) {
        conn_close(c);
        conn_close(c); /* idempotent */
    }
    if (t->migrate_to) { /* as an HTTP connection's upgrade does */
        struct tconn *to = t->migrate_to;
        t->migrate_to = NULL;
        assert_int_equal(conn_migrate(c, &to->c, &tops), 0);
    }
}
static void t_eof(struct conn *c)
{
    ((struct tconn *)c)->eofs++;
}
static void t_timer(struct conn *c)
{
    (void)c;
}
static void t_drain(struct conn *c)
{
    ((struct tconn *)c)->drains++;
}
static void t_blocked(struct conn *c)
{
    ((struct tconn *)c)->blocked++;
}
static void t_free(struct conn *c)
{
    ((struct tconn *)c)->frees++;
    frees_total++;
}

static const struct conn_ops tops = {t_data, t_eof, t_timer, t_drain, t_free, t_blocked};

static void stop_cb(struct loop *loop, struct timer *t)
{
    (void)t;
    loop_stop(loop);
}

/* Runs the loop for about ms milliseconds. */
static void spin(struct loop *loop, unsigned ms)
{
    struct timer t;
    loop_timer_init(&t, stop_cb);
    loop_timer_arm(loop, &t, ms);
    loop_run(loop);
    loop_timer_cancel(loop, &t);
}

static struct tconn *make(struct loop *loop, int *peer, struct conn_list *list)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct tconn *t = calloc(1, sizeof *t);
    assert_int_equal(conn_init(&t->c, loop, sv[0], &tops, list), 0);
    *peer = sv[1];
    return t;
}

static void test_read_and_write(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct conn_list list;
    conn_list_init(&list);
    struct tconn *t = make(loop, &peer, &list);
    assert_int_equal(conn_list_count(&list), 1);
    assert_int_equal(write(peer, "hello", 5), 5);
    spin(loop, 20);
    assert_int_equal(t->got_len, 5);
    assert_memory_equal(t->got, "hello", 5);

    conn_send_copy(&t->c, "one,", 4);
    conn_send_copy(&t->c, "two,", 4);
    conn_send_copy(&t->c, "three", 5);
    assert_int_equal(conn_out_count(&t->c), 3);
    spin(loop, 20);
    char buf[64];
    ssize_t n = read(peer, buf, sizeof buf);
    assert_int_equal(n, 13);
    assert_memory_equal(buf, "one,two,three", 13);
    assert_int_equal(conn_out_count(&t->c), 0);
    assert_int_equal(t->drains, 1);

    /* peer EOF: on_eof, then closed and freed at the end of the turn */
    close(peer);
    frees_total = 0;
    spin(loop, 20);
    assert_int_equal(frees_total, 1);
    assert_int_equal(conn_list_count(&list), 0);
    loop_destroy(loop);
}

static void test_block_and_drain(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    static uint8_t chunk[64 * 1024];
    memset(chunk, 'x', sizeof chunk);
    size_t sent = 0;
    for (int i = 0; i < 64; i++) {
        conn_send_copy(&t->c, chunk, sizeof chunk);
        sent += sizeof chunk;
    }
    spin(loop, 20);
    assert_true(t->blocked >= 1);
    assert_true(conn_blocked_since(&t->c) != 0);
    assert_true(conn_out_bytes(&t->c) > 0);
    assert_int_equal(t->drains, 0);
    /* read everything on the peer side while the loop keeps writing */
    size_t got = 0;
    for (int rounds = 0; rounds < 2000 && got < sent; rounds++) {
        uint8_t buf[65536];
        ssize_t n;
        while ((n = read(peer, buf, sizeof buf)) > 0)
            got += (size_t)n;
        spin(loop, 1);
    }
    assert_int_equal(got, sent);
    assert_int_equal(conn_out_bytes(&t->c), 0);
    assert_int_equal(conn_blocked_since(&t->c), 0);
    assert_int_equal(t->drains, 1);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);
    loop_destroy(loop);
}

static void test_pause_resume(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    conn_pause(&t->c);
    assert_int_equal(write(peer, "abc", 3), 3);
    spin(loop, 20);
    assert_int_equal(t->got_len, 0);
    conn_resume(&t->c);
    spin(loop, 20);
    assert_int_equal(t->got_len, 3);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);
    loop_destroy(loop);
}

static void test_finish(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    conn_send_copy(&t->c, "bye", 3);
    conn_finish(&t->c, 1000);
    conn_send_copy(&t->c, "late", 4); /* accepted until the half-close */
    spin(loop, 20);
    char buf[16];
    ssize_t n = read(peer, buf, sizeof buf);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "byelate", 7);
    n = read(peer, buf, sizeof buf);
    assert_int_equal(n, 0); /* EOF: we half-closed */
    /* input while finishing is discarded, not delivered */
    assert_int_equal(write(peer, "zzz", 3), 3);
    frees_total = 0;
    spin(loop, 20);
    assert_int_equal(t->got_len, 0);
    close(peer); /* peer's EOF completes the close */
    spin(loop, 20);
    assert_int_equal(frees_total, 1);
    loop_destroy(loop);
}

static void test_finish_linger_timeout(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    frees_total = 0;
    conn_finish(&t->c, 30); /* peer never closes */
    spin(loop, 100);
    assert_int_equal(frees_total, 1);
    close(peer);
    loop_destroy(loop);
}

static void test_close_inside_callback(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    t->close_on_data = true;
    conn_send_copy(&t->c, "queued", 6);
    assert_int_equal(write(peer, "x", 1), 1);
    frees_total = 0;
    spin(loop, 20);
    assert_int_equal(frees_total, 1);
    /* what was already flushed may arrive; then EOF */
    char buf[8];
    ssize_t n = read(peer, buf, sizeof buf);
    if (n > 0) n = read(peer, buf, sizeof buf);
    assert_int_equal(n, 0);
    close(peer);
    loop_destroy(loop);
}

static void test_migrate(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct conn_list list;
    conn_list_init(&list);
    struct tconn *a = make(loop, &peer, &list);
    conn_send_copy(&a->c, "first,", 6);
    struct tconn *b = calloc(1, sizeof *b);
    frees_total = 0;
    assert_int_equal(conn_migrate(&a->c, &b->c, &tops), 0);
    conn_send_copy(&b->c, "second", 6);
    assert_int_equal(write(peer, "in", 2), 2);
    spin(loop, 20);
    assert_int_equal(frees_total, 0); /* a freed without on_free */
    assert_int_equal(b->got_len, 2);
    assert_int_equal(conn_list_count(&list), 1);
    assert_ptr_equal(conn_list_first(&list), &b->c);
    char buf[32];
    assert_int_equal(read(peer, buf, sizeof buf), 12);
    assert_memory_equal(buf, "first,second", 12);
    conn_close(&b->c);
    loop_drain_tasks(loop);
    assert_int_equal(frees_total, 1);
    assert_int_equal(conn_list_count(&list), 0);
    close(peer);
    loop_destroy(loop);
}

/* conn_init_read_first + conn_read_first: bytes already waiting are read at once,
 * before the loop runs; whatever the first read left of the connection (itself, or
 * what it migrated into) is registered, so later bytes arrive; a connection closed by
 * its first read is not registered and is freed once. */
static struct tconn *make_read_first(struct loop *loop, int *peer, const char *waiting,
                                     struct tconn *migrate_to, bool close_on_data)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    if (waiting) assert_int_equal(write(sv[1], waiting, strlen(waiting)), (ssize_t)strlen(waiting));
    struct tconn *t = calloc(1, sizeof *t);
    t->migrate_to = migrate_to;
    t->close_on_data = close_on_data;
    conn_init_read_first(&t->c, loop, sv[0], &tops, NULL);
    *peer = sv[1];
    return t;
}

static void test_read_first(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;

    /* Waiting bytes: read before the loop runs; later bytes after registration. */
    struct tconn *t = make_read_first(loop, &peer, "GET", NULL, false);
    conn_read_first(&t->c);
    assert_int_equal(t->got_len, 3);
    assert_int_equal(write(peer, " /", 2), 2);
    spin(loop, 20);
    assert_int_equal(t->got_len, 5);
    assert_memory_equal(t->got, "GET /", 5);
    conn_send_copy(&t->c, "ok", 2);
    spin(loop, 20);
    char buf[16];
    assert_int_equal(read(peer, buf, sizeof buf), 2);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);

    /* Nothing waiting: the first read finds nothing, and the registration catches what
     * comes later. */
    t = make_read_first(loop, &peer, NULL, NULL, false);
    conn_read_first(&t->c);
    assert_int_equal(t->got_len, 0);
    assert_int_equal(write(peer, "late", 4), 4);
    spin(loop, 20);
    assert_int_equal(t->got_len, 4);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);

    /* Migrated by its first read (an upgrade): the new struct is what is registered
     * (a MOD of a descriptor never added would fail and close it). */
    struct tconn *to = calloc(1, sizeof *to);
    t = make_read_first(loop, &peer, "upgrade", to, false);
    frees_total = 0;
    conn_read_first(&t->c); /* t is freed at the end of the turn */
    assert_int_equal(write(peer, "frame", 5), 5);
    spin(loop, 20);
    assert_false(conn_closed(&to->c));
    assert_int_equal(to->got_len, 5);
    assert_memory_equal(to->got, "frame", 5);
    conn_send_copy(&to->c, "reply", 5);
    spin(loop, 20);
    assert_int_equal(read(peer, buf, sizeof buf), 5);
    assert_int_equal(frees_total, 0);
    conn_close(&to->c);
    loop_drain_tasks(loop);
    assert_int_equal(frees_total, 1);
    close(peer);

    /* Closed by its first read: never registered, freed once. */
    frees_total = 0;
    t = make_read_first(loop, &peer, "bad", NULL, true);
    conn_read_first(&t->c);
    loop_drain_tasks(loop);
    assert_int_equal(frees_total, 1);
    assert_int_equal(read(peer, buf, sizeof buf), 0); /* our side is closed */
    close(peer);
    loop_destroy(loop);
}

/* Fills the socket until the oldest message is only partly written, then checks that
 * drop-oldest and discard keep that message (cutting it would corrupt the stream) and
 * remove the right ones, with the byte count kept exact; then that what remains
 * arrives intact and in order. */
static void test_drop_and_discard_keep_partial_head(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    int small = 4096;
    setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(t->c.w.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    static uint8_t big[256 * 1024];
    memset(big, 'B', sizeof big);
    conn_send_copy(&t->c, big, sizeof big); /* cannot fit: stays partly written */
    for (int i = 0; i < 20; i++) {          /* wraps the ring more than once */
        char m[16];
        snprintf(m, sizeof m, "m%02d", i);
        conn_send_copy(&t->c, m, 3);
    }
    spin(loop, 20);
    assert_true(conn_head_written(&t->c) > 0); /* the head went out in part */
    assert_int_equal(conn_out_count(&t->c), 21);
    uint64_t before = conn_out_bytes(&t->c);
    assert_int_equal(conn_drop_oldest(&t->c), 1); /* drops m00, not the head */
    assert_int_equal(conn_out_count(&t->c), 20);
    assert_int_equal(conn_out_bytes(&t->c), before - 3);
    assert_int_equal(conn_drop_oldest(&t->c), 1);     /* m01 */
    assert_int_equal(conn_discard_queued(&t->c), 18); /* m02..m19 */
    assert_int_equal(conn_out_count(&t->c), 1);
    assert_int_equal(conn_drop_oldest(&t->c), 0); /* only the partial head is left */
    assert_int_equal(conn_discard_queued(&t->c), 0);
    conn_send_copy(&t->c, "tail", 4);
    /* Everything that remains arrives: the rest of big, then "tail". */
    size_t got = 0;
    uint8_t buf[65536];
    uint8_t last[4] = {0};
    for (int rounds = 0; rounds < 4000 && got < sizeof big + 4; rounds++) {
        ssize_t n;
        while ((n = read(peer, buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++) {
                if (got + (size_t)i < sizeof big)
                    assert_int_equal(buf[i], 'B');
                else
                    last[got + (size_t)i - sizeof big] = buf[i];
            }
            got += (size_t)n;
        }
        spin(loop, 1);
    }
    assert_int_equal(got, sizeof big + 4);
    assert_memory_equal(last, "tail", 4);
    assert_int_equal(conn_out_count(&t->c), 0);
    assert_null(t->c.q); /* freed when drained */
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);
    loop_destroy(loop);
}

/* Reads from the peer side until `want` bytes arrived, spinning the loop between
 * reads so that the connection keeps writing. Returns the byte count. */
static size_t read_all(struct loop *loop, int peer, uint8_t *out, size_t have, size_t want)
{
    for (int rounds = 0; rounds < 4000 && have < want; rounds++) {
        ssize_t n;
        while (have < want && (n = read(peer, out + have, want - have)) > 0)
            have += (size_t)n;
        spin(loop, 1);
    }
    return have;
}

static void shrink_buffers(struct tconn *t, int peer)
{
    int small = 4096;
    setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(t->c.w.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
}

/* A pseudo-random mix of small frames (copied into the staging buffer) and large ones
 * (written in place), through a socket so small that nearly every write is partial:
 * the blocks fall inside staged runs, inside large frames and on the edges between
 * them. Every byte arrives once and in order, and the queue accounting stays exact. */
static void test_coalesced_partial_writes(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    shrink_buffers(t, peer);
    static uint8_t expect[1 << 20], got[1 << 20];
    static const size_t sizes[] = {1, 7, 100, 1023, 1024, 1500, 3000, 20000, 40000};
    size_t total = 0;
    uint32_t seed = 12345;
    for (int i = 0; i < 400 && total + 40000 <= sizeof expect; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = sizes[(seed >> 16) % (sizeof sizes / sizeof sizes[0])];
        for (size_t k = 0; k < len; k++)
            expect[total + k] = (uint8_t)(i * 31 + k * 7);
        assert_int_equal(conn_send_copy(&t->c, expect + total, len), 0);
        total += len;
    }
    assert_int_equal(conn_out_bytes(&t->c), total);
    spin(loop, 5);
    assert_true(t->blocked >= 1);
    assert_true(conn_out_bytes(&t->c) > 0 && conn_out_bytes(&t->c) < total);
    assert_int_equal(read_all(loop, peer, got, 0, total), total);
    assert_memory_equal(got, expect, total);
    assert_int_equal(conn_out_count(&t->c), 0);
    assert_int_equal(conn_out_bytes(&t->c), 0);
    assert_int_equal(t->drains, 1);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);
    loop_destroy(loop);
}

/* Small frames only (all staged), several staging buffers' worth, blocked until the
 * head is a staged frame written in part: its rest was copied but not taken by the
 * kernel. Drop-oldest and discard keep it and remove only frames of which nothing
 * went out; the peer then receives whole frames up to and including that head, then
 * what was sent afterwards. */
static void test_staged_partial_head_survives_drop(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int peer;
    struct tconn *t = make(loop, &peer, NULL);
    shrink_buffers(t, peer);
    enum { FRAME = 999, QUEUED = 200 }; /* odd: the kernel's cuts rarely align */
    static uint8_t got[FRAME * QUEUED + 4];
    uint8_t frame[FRAME];
    for (int i = 0; i < QUEUED; i++) {
        for (size_t k = 0; k < FRAME; k++)
            frame[k] = (uint8_t)('a' + (i + k) % 26);
        conn_send_copy(&t->c, frame, sizeof frame);
    }
    spin(loop, 5);
    size_t have = 0;
    for (int tries = 0; tries < 50 && conn_head_written(&t->c) == 0; tries++) {
        ssize_t n;
        while ((n = read(peer, got + have, 500)) > 0)
            have += (size_t)n;
        spin(loop, 1);
    }
    uint32_t off = conn_head_written(&t->c);
    assert_true(off > 0);
    uint32_t count = conn_out_count(&t->c);
    uint32_t head = QUEUED - count; /* index of the partly written frame */
    assert_true(count > 2);
    assert_int_equal(conn_drop_oldest(&t->c), 1);
    assert_int_equal(conn_discard_queued(&t->c), count - 2);
    assert_int_equal(conn_out_count(&t->c), 1);
    assert_int_equal(conn_out_bytes(&t->c), FRAME - off);
    conn_send_copy(&t->c, "tail", 4);
    size_t want = (size_t)(head + 1) * FRAME + 4;
    assert_int_equal(read_all(loop, peer, got, have, want), want);
    for (uint32_t i = 0; i <= head; i++)
        for (size_t k = 0; k < FRAME; k++)
            assert_int_equal(got[i * FRAME + k], 'a' + (i + k) % 26);
    assert_memory_equal(got + want - 4, "tail", 4);
    uint8_t extra;
    assert_int_equal(read(peer, &extra, 1), -1); /* nothing dropped went out */
    assert_int_equal(conn_out_count(&t->c), 0);
    conn_close(&t->c);
    loop_drain_tasks(loop);
    close(peer);
    loop_destroy(loop);
}

static int accepted_fd = -1;

static void on_accept_keep(struct listener *l, int fd)
{
    accepted_fd = fd;
    loop_stop(l->loop);
}

/* TCP_NODELAY is set once on the listening socket; every accepted socket must carry
 * it (Nagle would hold small frames back for the peer's delayed ACK). */
static void test_accepted_sockets_have_nodelay(void **state)
{
    (void)state;
    struct loop *loop = loop_create();
    int lfd = listener_socket("127.0.0.1", 0, 0);
    assert_true(lfd >= 0);
    struct listener l;
    memset(&l, 0, sizeof l);
    assert_int_equal(listener_start(&l, loop, lfd, on_accept_keep, NULL), 0);
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)listener_port(lfd))};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof sin), 0);
        accepted_fd = -1;
        spin(loop, 1000);
        assert_true(accepted_fd >= 0);
        int v = 0;
        socklen_t vl = sizeof v;
        assert_int_equal(getsockopt(accepted_fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
        assert_int_equal(v, 1);
        close(accepted_fd);
        close(c);
    }
    listener_close(&l);
    loop_destroy(loop);
}

/* Writes bytes into the cork (asserting it takes them). */
static void cork_put(struct tconn *t, const void *data, size_t n)
{
    uint8_t *p = conn_cork(&t->c, n);
    assert_non_null(p);
    memcpy(p, data, n);
}

/* Three connections on one loop, for the cork's hand-overs; the test closes its
 * connections (one may have migrated), trio_end the rest. */
struct trio {
    struct loop *loop;
    struct tconn *t[3];
    int peer[3];
};

static void trio_start(struct trio *x)
{
    x->loop = loop_create();
    for (int i = 0; i < 3; i++)
        x->t[i] = make(x->loop, &x->peer[i], NULL);
}

static void trio_end(struct trio *x)
{
    loop_drain_tasks(x->loop);
    for (int i = 0; i < 3; i++)
        close(x->peer[i]);
    loop_destroy(x->loop);
}

/* The cork keeps the order of everything sent to a connection: corked bytes go before
 * a message queued after them (it spills them first), and once something is queued the
 * cork refuses, so the caller queues too. A second connection taking the cork sends the
 * first one's bytes at once. Closing drops what is corked; migrate hands it over. */
static void test_cork_order_handover_close(void **state)
{
    (void)state;
    struct trio x;
    trio_start(&x);
    struct loop *loop = x.loop;
    struct tconn *a = x.t[0], *b = x.t[1], *c = x.t[2];
    int pa = x.peer[0], pb = x.peer[1], pc = x.peer[2];
    char buf[64];

    cork_put(a, "a1,", 3);
    cork_put(a, "a2,", 3);
    assert_int_equal(conn_out_count(&a->c), 0);      /* not queued: corked */
    assert_int_equal(read(pa, buf, sizeof buf), -1); /* nothing sent before the flush */
    cork_put(b, "b1,", 3);                           /* takes the cork: a's go out now */
    assert_int_equal(read(pa, buf, sizeof buf), 6);
    assert_memory_equal(buf, "a1,a2,", 6);
    conn_send_copy(&b->c, "b2,", 3); /* spills b1 first */
    assert_int_equal(conn_out_count(&b->c), 2);
    assert_null(conn_cork(&b->c, 3)); /* something queued: the caller queues */
    conn_send_copy(&b->c, "b3", 2);
    cork_put(a, "a3", 2);
    spin(loop, 20);
    assert_int_equal(read(pa, buf, sizeof buf), 2);
    assert_memory_equal(buf, "a3", 2);
    assert_int_equal(read(pb, buf, sizeof buf), 8);
    assert_memory_equal(buf, "b1,b2,b3", 8);
    assert_int_equal(a->drains, 1); /* the cork's flush drains like a queue's */

    /* Closed with bytes corked: they are dropped, and the cork is free again. */
    cork_put(c, "lost", 4);
    conn_close(&c->c);
    cork_put(a, "after", 5);
    spin(loop, 20);
    assert_int_equal(read(pc, buf, sizeof buf), 0); /* EOF, nothing before it */
    assert_int_equal(read(pa, buf, sizeof buf), 5);
    assert_memory_equal(buf, "after", 5);

    /* Migrated with bytes corked: the new struct owns them and sends them first. */
    cork_put(a, "m1,", 3);
    struct tconn *a2 = calloc(1, sizeof *a2);
    assert_int_equal(conn_migrate(&a->c, &a2->c, &tops), 0);
    conn_send_copy(&a2->c, "m2", 2);
    spin(loop, 20);
    assert_int_equal(read(pa, buf, sizeof buf), 5);
    assert_memory_equal(buf, "m1,m2", 5);

    /* Refused: more than the cork holds, a closing or TLS connection. */
    assert_null(conn_cork(&a2->c, 16 * 1024 + 1));
    a2->c.flags |= CONN_TLS;
    assert_null(conn_cork(&a2->c, 1));
    a2->c.flags &= ~CONN_TLS;
    conn_close(&a2->c);
    assert_null(conn_cork(&a2->c, 1));
    conn_close(&b->c);
    trio_end(&x);
}

/* Corked bytes that the socket does not take at once, at the end-of-turn flush (a) and
 * when another connection takes the cork (c), move into the queue and arrive whole and
 * in order with what was sent after them; the blocked connection reports it. */
static void check_spilled(struct loop *loop, struct tconn *t, int peer, bool by_handover,
                          struct tconn *other)
{
    shrink_buffers(t, peer);
    static uint8_t expect[1 << 17], got[1 << 17];
    size_t total = 0;
    for (int round = 0; round < 8; round++) {
        for (size_t k = 0; k < 12000; k++)
            expect[total + k] = (uint8_t)(round * 13 + k * 5);
        uint8_t *p = conn_cork(&t->c, 12000);
        if (p) {
            memcpy(p, expect + total, 12000);
        } else { /* blocked or queued after a spill: queue, as ws_send does */
            assert_true(round > 0);
            assert_int_equal(conn_send_copy(&t->c, expect + total, 12000), 0);
        }
        total += 12000;
        if (round == 0) {
            if (by_handover)
                cork_put(other, "x", 1); /* t's cork sent now, in part */
            else
                spin(loop, 1);                          /* t's own flush sends it, in part */
            assert_int_equal(conn_out_count(&t->c), 1); /* the unsent rest, spilled */
            assert_true(conn_out_bytes(&t->c) > 0 && conn_out_bytes(&t->c) < 12000);
        }
        spin(loop, 1);
    }
    assert_true(t->blocked >= 1);
    assert_int_equal(read_all(loop, peer, got, 0, total), total);
    assert_memory_equal(got, expect, total);
    assert_int_equal(conn_out_bytes(&t->c), 0);
}

static void test_cork_partial_sends_spill(void **state)
{
    (void)state;
    struct trio x;
    trio_start(&x);
    struct loop *loop = x.loop;
    struct tconn *a = x.t[0], *b = x.t[1], *c = x.t[2];
    int pa = x.peer[0], pb = x.peer[1], pc = x.peer[2];
    check_spilled(loop, a, pa, false, NULL);
    check_spilled(loop, c, pc, true, b);
    char buf[8];
    assert_int_equal(read(pb, buf, sizeof buf), 1);
    conn_close(&a->c);
    conn_close(&b->c);
    conn_close(&c->c);
    trio_end(&x);
}

static int teardown(void **state)
{
    (void)state;
    msg_thread_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_and_write),
        cmocka_unit_test(test_block_and_drain),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_finish_linger_timeout),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_drop_and_discard_keep_partial_head),
        cmocka_unit_test(test_coalesced_partial_writes),
        cmocka_unit_test(test_staged_partial_head_survives_drop),
        cmocka_unit_test(test_accepted_sockets_have_nodelay),
        cmocka_unit_test(test_cork_order_handover_close),
        cmocka_unit_test(test_cork_partial_sends_spill),
        cmocka_unit_test(test_read_first),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
