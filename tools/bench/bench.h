/* wshub-bench's shared declarations: the options (O), the connection slots and the
 * global state (g), and what the files of tools/bench/ call across each other. One
 * process, one thread: these globals are only ever touched from the event loop.
 *
 * Files: conn.c (connections, handshake, frames in and out, the epoll loop),
 * report.c (server CPU and RSS from /proc, the JSON line), frames.c (pre-masked
 * echo/churn frames), echo.c, fanout.c, idle.c, churn.c (one mode each), options.c
 * (the option table, parsing and --help), main.c (mode hooks and main). */
#ifndef WSHUB_TOOLS_BENCH_H
#define WSHUB_TOOLS_BENCH_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "client/wsc_tls.h"
#include "client/wsclient.h"
#include "ws/frame.h"

#include "bench_hist.h"
#include "bench_wire.h"

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

#ifndef WSHUB_VERSION
#define WSHUB_VERSION "dev"
#endif

#define PROG "wshub-bench"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define NS_PER_S              1000000000LL
#define RBUF_SIZE             (256 * 1024)       /* one read() */
#define MAX_MSG               (2u * 1024 * 1024) /* largest frame / message accepted */
#define MAX_CARRY             (MAX_MSG + 16)     /* a partial frame kept between reads */
#define MAX_HEAD              16384              /* largest handshake response head */
#define MAX_SIZE              (1024 * 1024)      /* largest --size */
#define MAX_EVENTS            1024
#define FD_RESERVE            64
#define IDLE_MAX              19000
#define SMALL_OUT             512   /* output buffer of connections that only send controls */
#define PUB_BATCH             65536 /* a publisher builds at most this much before a send */
#define CLOSE_WAIT_NS         (3 * NS_PER_S)
#define DRAIN_WAIT_NS         (5 * NS_PER_S)
#define DRAIN_STALL_NS        (2 * NS_PER_S)
#define CHURN_CONN_TIMEOUT_NS (10 * NS_PER_S)

/* ------------------------------------------------------------------ options */

enum mode { M_ECHO, M_FANOUT, M_IDLE, M_CHURN };
extern const char *const mode_names[4];

/* which modes an option applies to */
#define F_ECHO   (1u << M_ECHO)
#define F_FANOUT (1u << M_FANOUT)
#define F_IDLE   (1u << M_IDLE)
#define F_CHURN  (1u << M_CHURN)
#define F_ALL    (F_ECHO | F_FANOUT | F_IDLE | F_CHURN)

struct opts {
    enum mode mode;
    char url[WSC_MAX_PATH + WSC_MAX_HOST + 32];
    long connections;
    long inflight;
    long size;
    bool binary;
    bool deflate; /* offer permessage-deflate; inflate what comes compressed */
    double duration, warmup;
    long subscribers, publishers, rooms;
    double rate;
    long window, max_lag;
    long sources;
    double hold;
    bool users;      /* idle: a distinct token (user) per connection */
    long server_pid; /* 0: none */
    bool json_only, quiet;
    long max_pending;
    long max_failures;
    double timeout;
    const char *ca_file;    /* --ca, for wss:// */
    const char *url_arg;    /* --url as given */
    const char *spread_arg; /* fanout --spread-ports as given; NULL: none */
};

extern struct opts O;

/* ------------------------------------------------------------------ connections */

/* CS_TLS: connected, TLS handshake under way (wss:// only). */
enum conn_state { CS_FREE, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_CLOSED, CS_TLS };
enum role { R_ECHO, R_SUB, R_PUB, R_IDLE, R_CHURN };

struct conn {
    int fd;
    uint8_t state; /* enum conn_state */
    uint8_t role;  /* enum role */
    bool writable;
    bool sent_close, got_close;
    bool in_frag;
    uint8_t frag_op;
    bool churn_echoed;
    uint32_t id; /* subscriber / publisher / connection number */
    uint32_t room;
    uint32_t outstanding; /* echo: frames sent and not yet echoed */
    struct wsc *wsc;      /* during the handshake only */
    SSL *ssl;             /* wss:// */
    uint8_t *carry;       /* a frame cut by a read (or the handshake head so far) */
    uint32_t carry_len, carry_cap;
    uint8_t *out; /* output queue: out[out_off..out_len) unsent */
    uint32_t out_off, out_len, out_cap;
    uint32_t stamp_from; /* echo: frames from here on still need their timestamp */
    uint8_t *frag;       /* a fragmented message being gathered */
    uint32_t frag_len, frag_cap;
    int64_t t_start;  /* socket created */
    int64_t deadline; /* churn: give up after */
};

#define SPREAD_MAX 15

struct global {
    int ep;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool src_bind; /* bind sources 127.0.0.2.. (target is IPv4 loopback) */
    struct wsc_url url;
    /* fanout --spread-ports: the --url port first, then these (same host) */
    uint16_t spread_port[SPREAD_MAX + 1];
    size_t nspread;    /* entries in spread_port; 0: every connection to --url */
    uint8_t *rbuf;     /* MAX_CARRY bytes of room for a carry, then RBUF_SIZE */
    uint64_t mask_rng; /* xorshift64* state for the masking keys, seeded by getrandom */
    int64_t now;
    long clk_tck;
    /* connection bookkeeping */
    struct conn *conns;
    size_t n_conns;
    size_t next_start;    /* connect phase: next connection to start */
    size_t pending;       /* connecting or in handshake */
    size_t opened;        /* handshakes completed */
    size_t open_now;      /* currently open (or closing) */
    uint64_t failures;    /* connect or handshake failures */
    uint64_t disconnects; /* open connections lost before the end */
    uint64_t protocol_errors;
    uint64_t inflated; /* compressed messages received (--deflate) */
    bool closing;      /* final phase: connections going down are expected */
    char first_error[256];
    SSL_CTX *tls_ctx; /* wss:// */
};

extern struct global g;
extern volatile sig_atomic_t interrupted;

typedef const char *(*token_fn)(const struct conn *c);

/* CPU snapshots around the measured window. */
struct cpu_mark {
    double server, client;
    bool server_ok;
    int64_t t;
};

enum phase { PH_SETUP, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

/* The echo/churn frame, plain (its masking key is zero). Payload: text, 16 hex digits
 * of the send time then 'x' padding; binary, the send time as 8 little-endian bytes
 * then a byte pattern. */
struct templates {
    uint8_t *plain;
    size_t frame_len, hdr_len; /* hdr_len includes the 4 mask bytes */
    size_t size;
    size_t ts_len; /* bytes of the send time at the start of the payload */
    uint8_t op;
};

extern struct templates tmpl;

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* conn.c: connections, the event loop, messages on stderr */
BENCH_PRINTF(1, 2) void progress(const char *fmt, ...);
BENCH_PRINTF(1, 2) void note_error(const char *fmt, ...);
void *xcalloc(size_t n, size_t size);
BENCH_PRINTF(2, 3) void conn_fail(struct conn *c, const char *fmt, ...);
bool out_reserve(struct conn *c, size_t need);
bool conn_send_queued(struct conn *c);
void next_mask(uint8_t mask[4]);
void conn_send_close(struct conn *c, unsigned code);
void conn_start(struct conn *c, size_t seq, const char *token_prefix);
void loop_once(int64_t deadline);
bool connect_all(size_t first, size_t count, token_fn tok, int64_t deadline);
void close_all(void);
void *xrealloc(void *p, size_t size);

/* report.c: server figures (/proc) and the JSON line */
bool proc_cpu_s(long pid, double *out);
long proc_rss_kib(long pid);
void cpu_mark(struct cpu_mark *m);
BENCH_PRINTF(1, 2) void jcat(const char *fmt, ...);
void jnum(double v, int decimals);
void jhist_us(const struct bench_hist *h);
void print_hist_line(const char *label, const struct bench_hist *h);
void report_common(const struct cpu_mark *a, const struct cpu_mark *b, uint64_t per_unit,
                   const char *unit_key, const char *unit_label, bool ok);
void json_begin(void);

/* frames.c: pre-built echo/churn frames */
void templates_build(size_t size, bool binary);
void frame_append(struct conn *c);
void stamp_frames(struct conn *c);
bool echo_time(uint8_t op, const uint8_t *p, size_t len, int64_t *t);

/* echo.c */
void echo_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len);
void echo_on_down(struct conn *c);
int run_echo(void);

/* fanout.c */
void fan_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len);
void fan_on_open(struct conn *c);
size_t fan_msg_max(void);
int run_fanout(void);

/* idle.c */
int run_idle(void);

/* churn.c */
void churn_on_open(struct conn *c);
void churn_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len);
void churn_on_down(struct conn *c, bool clean);
int run_churn(void);

/* main.c: mode hooks (called by conn.c) */
uint32_t out_cap_for(const struct conn *c);
void mode_on_open(struct conn *c);
void mode_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len);
void mode_on_down(struct conn *c, bool clean);
void mode_before_flush(struct conn *c);

/* options.c */
int parse_args(int argc, char **argv);

#endif
