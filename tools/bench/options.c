/* wshub-bench options: one table (long and short name, kind of value, field of struct
 * opts, range, the modes that take it, default per mode, help) drives getopt_long,
 * the range checks, the "does not apply to this mode" check and the --help text, the
 * way src/app/config.c does for the server. An option whose default or meaning
 * depends on the mode (--connections, --size, --rate, --binary) has one row per mode
 * group; the rows of one name share its parsing. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

enum kind { K_LONG, K_DOUBLE, K_FLAG, K_STR, K_HELP, K_VERSION };

/* --help sections, in this order */
enum section { S_COMMON, S_ECHO, S_DEFLATE, S_FANOUT, S_IDLE, S_CHURN, S_COUNT };

static const char *const section_titles[S_COUNT] = {
    "Common options", "echo options", "echo, fanout and idle option",
    "fanout options", "idle options", "churn options"};

struct bench_opt {
    const char *name; /* long name, without "--" */
    char short_name;  /* 0: none */
    enum kind kind;
    size_t offset;     /* of the field in struct opts */
    double min, max;   /* K_LONG, K_DOUBLE */
    const char *range; /* what the error message says is allowed */
    unsigned modes;    /* F_* */
    enum section section;
    const char *def; /* default for these modes, parsed like user input; NULL: none */
    const char *metavar;
    const char *help;
};

#define OFF(m) offsetof(struct opts, m)
#define LMAX   ((double)(LONG_MAX / 2))

static const struct bench_opt opts[] = {
    {"url", 0, K_STR, OFF(url_arg), 0, 0, NULL, F_ALL, S_COMMON, NULL, "URL",
     "ws://HOST:PORT[/PATH][?QUERY] (required). Without a path: /echo (echo, idle, churn) or "
     "/ws (fanout). Only this host is contacted."},
    {"duration", 'd', K_DOUBLE, OFF(duration), 0.001, 86400, "seconds, over 0",
     F_ECHO | F_FANOUT | F_CHURN, S_COMMON, "10", "S",
     "measured window, seconds (default 10; not idle)"},
    {"warmup", 'w', K_DOUBLE, OFF(warmup), 0, 3600, "seconds, 0 or more",
     F_ECHO | F_FANOUT | F_CHURN, S_COMMON, "2", "S",
     "warm-up before the window, seconds (default 2; not idle)"},
    {"server-pid", 0, K_LONG, OFF(server_pid), 1, INT_MAX, NULL, F_ALL, S_COMMON, NULL, "PID",
     "the server's process: its CPU time (utime+stime from /proc/PID/stat, all threads) over "
     "the window and its VmRSS are reported"},
    {"sources", 0, K_LONG, OFF(sources), 0, 250, "0..250", F_ALL, S_COMMON, "8", "K",
     "bind client sockets to 127.0.0.2 .. 127.0.0.(1+K) when the server is on 127.x.x.x, so "
     "that ports and 4-tuples do not run out (default 8; 0: let the kernel choose)"},
    {"max-pending", 0, K_LONG, OFF(max_pending), 1, 100000, "1 or more", F_ALL, S_COMMON, "512",
     "N",
     "connects + handshakes in progress at once (default 512); churn: connections in progress "
     "at once"},
    {"max-failures", 0, K_LONG, OFF(max_failures), 0, LMAX, "0 or more", F_ALL, S_COMMON, "0", "N",
     "connection failures tolerated before the run fails (default 0)"},
    {"timeout", 0, K_DOUBLE, OFF(timeout), 0.1, 3600, "seconds", F_ALL, S_COMMON, "30", "S",
     "limit for the connect phase, for settling, and for the fanout drain after the window "
     "(default 30)"},
    {"ca", 0, K_STR, OFF(ca_file), 0, 0, NULL, F_ALL, S_COMMON, NULL, "FILE",
     "wss:// URLs: trust the CAs in this PEM file (default: the system's); the certificate "
     "and host are always verified"},
    {"json-only", 0, K_FLAG, OFF(json_only), 0, 0, NULL, F_ALL, S_COMMON, NULL, NULL,
     "print only the JSON line (implies --quiet)"},
    {"quiet", 'q', K_FLAG, OFF(quiet), 0, 0, NULL, F_ALL, S_COMMON, NULL, NULL,
     "no progress messages on stderr"},
    {"help", 'h', K_HELP, 0, 0, 0, NULL, F_ALL, S_COMMON, NULL, NULL, "this help"},
    {"version", 'V', K_VERSION, 0, 0, 0, NULL, F_ALL, S_COMMON, NULL, NULL, "version"},

    {"connections", 'c', K_LONG, OFF(connections), 1, 1000000, "1 or more", F_ECHO, S_ECHO, "100",
     "N", "connections (default 100)"},
    {"inflight", 'k', K_LONG, OFF(inflight), 1, 65536, "1..65536", F_ECHO, S_ECHO, "1", "K",
     "messages in flight per connection (default 1)"},
    {"size", 's', K_LONG, OFF(size), 0, MAX_SIZE, "0..1048576 bytes", F_ECHO, S_ECHO, "32", "B",
     "payload bytes (default 32; text needs 16 or more: 16 hex digits of the send time, then "
     "'x'; binary 8 or more)"},
    {"binary", 0, K_FLAG, OFF(binary), 0, 0, NULL, F_ECHO, S_ECHO, NULL, NULL,
     "binary messages (default text)"},

    {"deflate", 0, K_FLAG, OFF(deflate), 0, 0, NULL, F_ECHO | F_FANOUT | F_IDLE, S_DEFLATE, NULL,
     NULL,
     "offer permessage-deflate (client_no_context_takeover) and inflate the server's "
     "compressed messages (the server must answer server_no_context_takeover, as wshub always "
     "does); what the bench sends stays uncompressed"},

    {"subscribers", 0, K_LONG, OFF(subscribers), 1, 1000000, "1 or more", F_FANOUT, S_FANOUT,
     "1000", "S", "subscriber connections (default 1000)"},
    {"publishers", 0, K_LONG, OFF(publishers), 1, 10000, "1..10000", F_FANOUT, S_FANOUT, "1", "P",
     "publisher connections (default 1)"},
    {"rooms", 0, K_LONG, OFF(rooms), 1, 1000000, "1 or more", F_FANOUT, S_FANOUT, "1", "R",
     "rooms, subscribers spread round-robin (default 1)"},
    {"size", 's', K_LONG, OFF(size), 0, MAX_SIZE, "0..1048576 bytes", F_FANOUT, S_FANOUT, "64", "B",
     "padding bytes per message (default 64)"},
    {"spread-ports", 0, K_STR, OFF(spread_arg), 0, 0, NULL, F_FANOUT, S_FANOUT, NULL, "P,P..",
     "more ports on the --url host (up to 15): subscriber s goes to the (s / rooms) mod (1 + "
     "count)th of the --url port and these, so each room is spread over all; publishers stay "
     "on --url (cluster benchmarks)"},
    {"rate", 0, K_DOUBLE, OFF(rate), 0, 1e8, "per second, 0 or more", F_FANOUT, S_FANOUT, "0", "M",
     "messages per second from all publishers together; 0 = as fast as possible (default 0), "
     "limited by --window and --max-lag"},
    {"window", 0, K_LONG, OFF(window), 1, 1000000, "1 or more", F_FANOUT, S_FANOUT, "64", "W",
     "rate 0: messages in flight per room, counted at the room's slowest subscriber (default "
     "64; keep it under the server's per-connection queue, 256 in wshub and seed-go)"},
    {"max-lag", 0, K_LONG, OFF(max_lag), 1, LMAX, "1 or more", F_FANOUT, S_FANOUT, "50000", "D",
     "rate 0: deliveries outstanding over all subscribers (default 50000)"},

    {"connections", 'c', K_LONG, OFF(connections), 1, 1000000, "1 or more", F_IDLE, S_IDLE, "1000",
     "N", "connections (default 1000, at most 19000: the open-files limit is 20000)"},
    {"hold", 0, K_DOUBLE, OFF(hold), 0, 86400, "seconds, 0 or more", F_IDLE, S_IDLE, "2", "S",
     "seconds to hold them open before reading VmRSS (default 2)"},

    {"users", 0, K_FLAG, OFF(users), 0, 0, NULL, F_IDLE, S_IDLE, NULL, NULL,
     "each connection its own user: ?token=user<i> is added to the URL (for a hub endpoint "
     "such as /ws; the token is the user id under --auth none)"},

    {"rate", 0, K_DOUBLE, OFF(rate), 0, 1e8, "per second, 0 or more", F_CHURN, S_CHURN, "500", "C",
     "connections opened per second (default 500)"},
    {"size", 's', K_LONG, OFF(size), 0, MAX_SIZE, "0..1048576 bytes", F_CHURN, S_CHURN, "32", "B",
     "message bytes (default 32)"},
    {"binary", 0, K_FLAG, OFF(binary), 0, 0, NULL, F_CHURN, S_CHURN, NULL, NULL, "binary message"},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

static const char modes_text[] =
    "Modes:\n"
    "  echo    N connections to /echo, each keeping K messages in flight; every echo\n"
    "          is timed and answered with the next message. Reports messages/s\n"
    "          (echoes received per second in the measured window) and the round trip\n"
    "          p50/p90/p99/p99.9 in microseconds.\n"
    "  fanout  S subscribers (/ws?token=sub<i>) join rooms bench0..bench<R-1> (round-\n"
    "          robin); P publishers (/ws?token=pub<j>, not members) send\n"
    "          {\"type\":\"send_to_room\",\"payload\":{\"room_id\":\"bench<r>\",\"pub\":j,\n"
    "          \"n\":seq,\"t\":send_ns,\"content\":\"wsb:j:seq:send_ns:xxxx...\"}} to every\n"
    "          room in turn (the padding travels in content, the one payload member the\n"
    "          reference peers relay). First the joins settle: probes go out until every\n"
    "          subscriber has heard from every publisher. Subscribers find pub/n/t\n"
    "          wherever they are in the received JSON (or in the content marker),\n"
    "          and count deliveries, latency (now - t), and lost and duplicated\n"
    "          deliveries per publisher and room (from n); other messages are ignored.\n"
    "          Reports deliveries/s, published/s, latency percentiles, lost, duplicated.\n"
    "  idle    N connections to /echo (or the --url path; with --users each is its\n"
    "          own user), handshake completed, then silent for --hold seconds. Reports\n"
    "          the connect rate and, with --server-pid, the server's VmRSS growth per\n"
    "          connection (use a freshly started server) and its CPU per connection\n"
    "          over the connect phase.\n"
    "  churn   C new connections a second, each: connect, handshake, one message, its\n"
    "          echo, close handshake, TCP close. Reports completed connections/s,\n"
    "          failures, and the connect+echo+close latency percentiles.\n";

static const char output_text[] =
    "Output: a human summary on stdout, then one JSON line, always last (tail -1):\n"
    "  {\"mode\", \"url\", \"params\":{...}, \"results\":{...}, \"server_cpu_s\",\n"
    "   \"server_cpu_per_msg_us\" (echo, fanout: per delivery) or\n"
    "   \"server_cpu_per_conn_us\" (idle: connect phase, churn), \"client_cpu_s\",\n"
    "   \"client_cpu_pct\", \"server_rss_kib\", \"ok\", \"error\"}\n"
    "  Latencies are in microseconds; server figures are null without --server-pid.\n"
    "\n"
    "Exit status: 0 success; 1 the run failed (connection failures over --max-failures,\n"
    "lost connections, lost or duplicated deliveries, no traffic, a mode that could\n"
    "not start, interrupted); 2 usage error.\n";

#define HELP_COL   24
#define HELP_WIDTH 82

/* Writes text from column HELP_COL, wrapped at word boundaries before HELP_WIDTH. */
static void help_wrapped(FILE *out, const char *text, int col)
{
    const char *p = text;
    while (*p) {
        if (col > HELP_COL) {
            fputc('\n', out);
            col = 0;
        }
        fprintf(out, "%*s", HELP_COL - col, "");
        int room = HELP_WIDTH - HELP_COL;
        int len = (int)strlen(p);
        int cut = len;
        if (len > room) {
            cut = room;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0) cut = room;
        }
        fprintf(out, "%.*s\n", cut, p);
        p += cut;
        while (*p == ' ')
            p++;
        col = 0;
    }
}

static void usage(FILE *out)
{
    fputs("Usage: " PROG " MODE --url ws[s]://HOST:PORT[/PATH] [OPTIONS]\n"
          "\n"
          "Load generator for wshub and the reference peers (seed-go, node-ws). One thread,\n"
          "edge-triggered epoll, a fresh masking key per frame, batched writes, every echo\n"
          "checked whole. Run it on its own core (taskset -c 1) and the server on another.\n"
          "\n",
          out);
    fputs(modes_text, out);
    for (int s = 0; s < S_COUNT; s++) {
        fprintf(out, "\n%s:\n", section_titles[s]);
        for (size_t i = 0; i < N_OPTS; i++) {
            const struct bench_opt *o = &opts[i];
            if (o->section != (enum section)s) continue;
            char head[64];
            int n = o->short_name
                        ? snprintf(head, sizeof head, "  -%c, --%s", o->short_name, o->name)
                        : snprintf(head, sizeof head, "  --%s", o->name);
            if (o->metavar) n += snprintf(head + n, sizeof head - (size_t)n, " %s", o->metavar);
            fputs(head, out);
            help_wrapped(out, o->help, n + 1 > HELP_COL ? n + 1 : n);
        }
    }
    fputc('\n', out);
    fputs(output_text, out);
}

BENCH_PRINTF(1, 2) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* Stores one value. false: out of range or not a number. */
static bool opt_set(const struct bench_opt *o, const char *arg)
{
    char *field = (char *)&O + o->offset;
    char *end;
    errno = 0;
    switch (o->kind) {
    case K_LONG: {
        long v = strtol(arg, &end, 10);
        if (errno || end == arg || *end || (double)v < o->min || (double)v > o->max) return false;
        memcpy(field, &v, sizeof v);
        return true;
    }
    case K_DOUBLE: {
        double v = strtod(arg, &end);
        if (errno || end == arg || *end || !isfinite(v) || v < o->min || v > o->max) return false;
        memcpy(field, &v, sizeof v);
        return true;
    }
    case K_FLAG: {
        bool v = true;
        memcpy(field, &v, sizeof v);
        return true;
    }
    case K_STR:
        memcpy(field, &arg, sizeof arg);
        return true;
    default:
        return true;
    }
}

/* The row of a name that applies to the mode, else the first row of that name. */
static const struct bench_opt *opt_row(const char *name, enum mode m)
{
    const struct bench_opt *first = NULL;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strcmp(opts[i].name, name) != 0) continue;
        if (opts[i].modes & (1u << m)) return &opts[i];
        if (!first) first = &opts[i];
    }
    return first;
}

/* Adds the mode's default path when the URL names none. */
static bool url_with_default_path(const char *in, const char *def, char *out, size_t cap)
{
    const char *hs = strstr(in, "://");
    const char *h = hs ? hs + 3 : in;
    size_t hostlen = strcspn(h, "/?#");
    if (h[hostlen] == '/') return (size_t)snprintf(out, cap, "%s", in) < cap;
    return (size_t)snprintf(out, cap, "%.*s%s%s", (int)(h - in + (ptrdiff_t)hostlen), in, def,
                            h + hostlen) < cap;
}

int parse_args(int argc, char **argv)
{
    if (argc < 2) return usage_error("no mode given (echo, fanout, idle or churn)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        exit(EXIT_OK);
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf(PROG " " WSHUB_VERSION "\n");
        exit(EXIT_OK);
    }
    int m = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(argv[1], mode_names[i])) m = i;
    if (m < 0) return usage_error("unknown mode \"%s\" (echo, fanout, idle or churn)", argv[1]);
    O.mode = (enum mode)m;

    /* Defaults from the rows of this mode; a name no row of this mode has keeps 0. */
    for (size_t i = 0; i < N_OPTS; i++)
        if (opts[i].def && (opts[i].modes & (1u << O.mode))) opt_set(&opts[i], opts[i].def);

    /* getopt_long's tables, one entry per name (val: the index of its first row). */
    static struct option longs[N_OPTS + 1];
    char shorts[2 * N_OPTS + 2];
    size_t nl = 0, ns = 0;
    shorts[ns++] = ':';
    for (size_t i = 0; i < N_OPTS; i++) {
        bool dup = false;
        for (size_t k = 0; k < nl; k++)
            if (!strcmp(longs[k].name, opts[i].name)) dup = true;
        if (dup) continue;
        bool arg = opts[i].kind == K_LONG || opts[i].kind == K_DOUBLE || opts[i].kind == K_STR;
        longs[nl++] = (struct option){opts[i].name, arg ? required_argument : no_argument, NULL,
                                      256 + (int)i};
        if (opts[i].short_name) {
            shorts[ns++] = opts[i].short_name;
            if (arg) shorts[ns++] = ':';
        }
    }
    longs[nl] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';

    optind = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        const struct bench_opt *o = NULL;
        if (opt >= 256)
            o = &opts[opt - 256];
        else if (opt != ':' && opt != '?')
            for (size_t i = 0; i < N_OPTS && !o; i++)
                if (opts[i].short_name == opt) o = &opts[i];
        if (opt == ':') return usage_error("option %s needs a value", argv[optind - 1]);
        if (!o) return usage_error("unknown option %s", argv[optind - 1]);
        const struct bench_opt *row = opt_row(o->name, O.mode);
        if (!(row->modes & (1u << O.mode)))
            return usage_error("--%s does not apply to %s mode", row->name, mode_names[O.mode]);
        if (row->kind == K_HELP) {
            usage(stdout);
            exit(EXIT_OK);
        }
        if (row->kind == K_VERSION) {
            printf(PROG " " WSHUB_VERSION "\n");
            exit(EXIT_OK);
        }
        if (!opt_set(row, optarg)) {
            if (row->range)
                return usage_error("bad --%s \"%s\" (%s)", row->name, optarg, row->range);
            return usage_error("bad --%s \"%s\"", row->name, optarg);
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (O.json_only) O.quiet = true;

    if (!O.url_arg) return usage_error("--url is required");
    if (!url_with_default_path(O.url_arg, O.mode == M_FANOUT ? "/ws" : "/echo", O.url,
                               sizeof O.url))
        return usage_error("--url is too long");
    const char *why = NULL;
    if (wsc_url_parse(O.url, &g.url, &why) != 0)
        return usage_error("bad --url \"%s\": %s", O.url_arg, why ? why : "invalid");
    if (O.ca_file && !g.url.tls) return usage_error("--ca applies to wss:// URLs only");
    if (g.url.tls) {
        char err[400];
        g.tls_ctx = wsc_tls_ctx_new(O.ca_file, err, sizeof err);
        if (!g.tls_ctx) return usage_error("%s", err);
    }

    if (O.mode == M_ECHO || O.mode == M_CHURN) {
        long min = O.binary ? 8 : 16;
        if (O.size < min)
            return usage_error("--size must be at least %ld for %s messages (they carry the send "
                               "time)",
                               min, O.binary ? "binary" : "text");
    }
    if (O.mode == M_ECHO &&
        (double)O.inflight * (double)(O.size + WS_MAX_HEADER) > 256.0 * 1024 * 1024)
        return usage_error("--inflight x --size is over 256 MiB per connection");
    if (O.mode == M_FANOUT && O.rooms > O.subscribers)
        return usage_error("--rooms (%ld) is more than --subscribers (%ld): a room would have no "
                           "member",
                           O.rooms, O.subscribers);
    if (O.spread_arg) {
        g.spread_port[0] = (uint16_t)g.url.port;
        g.nspread = 1;
        for (const char *p = O.spread_arg; *p;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 1 || v > 65535 || (*end && *end != ',') || g.nspread > SPREAD_MAX)
                return usage_error("bad --spread-ports \"%s\" (up to %d ports, comma-separated)",
                                   O.spread_arg, SPREAD_MAX);
            g.spread_port[g.nspread++] = (uint16_t)v;
            p = *end ? end + 1 : end;
        }
    }
    if (O.mode == M_CHURN && O.rate <= 0) return usage_error("churn needs --rate above 0");
    if (O.mode == M_IDLE && O.connections > IDLE_MAX)
        return usage_error("idle: --connections %ld is over %d: the open-files limit is 20000 per "
                           "process (and the server needs one descriptor per connection too)",
                           O.connections, IDLE_MAX);

    /* descriptors: raise the soft limit to the hard one, then check */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        long need = O.mode == M_FANOUT  ? O.subscribers + O.publishers
                    : O.mode == M_CHURN ? O.max_pending
                                        : O.connections;
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need + FD_RESERVE > rl.rlim_cur)
            return usage_error(
                "%ld connections need more descriptors than the open-files limit "
                "(%llu) allows: at most %llu",
                need, (unsigned long long)rl.rlim_cur,
                (unsigned long long)(rl.rlim_cur > FD_RESERVE ? rl.rlim_cur - FD_RESERVE : 0));
    }
    if (O.server_pid) {
        double s;
        if (!proc_cpu_s(O.server_pid, &s))
            return usage_error("--server-pid %ld: cannot read /proc/%ld/stat", O.server_pid,
                               O.server_pid);
    }
    return EXIT_OK;
}
