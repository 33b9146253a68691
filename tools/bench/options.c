/* wshub-bench options: one table (name, short name, value kind, field, range, which
 * modes take it, default, help) drives getopt_long, the range checks, the "does not
 * apply to this mode" check and the --help text, the way src/app/config.c does for
 * the server. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"

static void usage(FILE *out)
{
    fputs("Usage: " PROG " MODE --url ws[s]://HOST:PORT[/PATH] [OPTIONS]\n"
          "\n"
          "Load generator for wshub and the reference peers (seed-go, node-ws). One thread,\n"
          "edge-triggered epoll, pre-masked frames, batched writes. Run it on its own core\n"
          "(taskset -c 1 ...) and the server on another.\n"
          "\n"
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
          "  idle    N connections to /echo, handshake completed, then silent for --hold\n"
          "          seconds. Reports the connect rate and, with --server-pid, the server's\n"
          "          VmRSS growth per connection (use a freshly started server).\n"
          "  churn   C new connections a second, each: connect, handshake, one message, its\n"
          "          echo, close handshake, TCP close. Reports completed connections/s,\n"
          "          failures, and the connect+echo+close latency percentiles.\n"
          "\n",
          out);
    fputs("Common options:\n"
          "  --url URL             ws://HOST:PORT[/PATH][?QUERY] (required). Without a path:\n"
          "                        /echo (echo, idle, churn) or /ws (fanout). Only this host\n"
          "                        is contacted.\n"
          "  -d, --duration S      measured window, seconds (default 10; not idle)\n"
          "  -w, --warmup S        warm-up before the window, seconds (default 2; not idle)\n"
          "  --server-pid PID      the server's process: its CPU time (utime+stime from\n"
          "                        /proc/PID/stat, all threads) over the window and its\n"
          "                        VmRSS are reported\n"
          "  --sources K           bind client sockets to 127.0.0.2 .. 127.0.0.(1+K) when the\n"
          "                        server is on 127.x.x.x, so that ports and 4-tuples do not\n"
          "                        run out (default 8; 0: let the kernel choose)\n"
          "  --max-pending N       connects + handshakes in progress at once (default 512);\n"
          "                        churn: connections in progress at once\n"
          "  --max-failures N      connection failures tolerated before the run fails\n"
          "                        (default 0)\n"
          "  --timeout S           limit for the connect phase, for settling, and for the\n"
          "                        fanout drain after the window (default 30)\n"
          "  --ca FILE             wss:// URLs: trust the CAs in this PEM file (default: the\n"
          "                        system's); the certificate and host are always verified\n"
          "  --json-only           print only the JSON line (implies --quiet)\n"
          "  -q, --quiet           no progress messages on stderr\n"
          "  -h, --help            this help\n"
          "  -V, --version         version\n"
          "\n",
          out);
    fputs("echo options:\n"
          "  -c, --connections N   connections (default 100)\n"
          "  -k, --inflight K      messages in flight per connection (default 1)\n"
          "  -s, --size B          payload bytes (default 32; text needs 16 or more: 16 hex\n"
          "                        digits of the send time, then 'x'; binary 8 or more)\n"
          "  --binary              binary messages (default text)\n"
          "\n",
          out);
    fputs("echo, fanout and idle option:\n"
          "  --deflate             offer permessage-deflate (client_no_context_takeover) and\n"
          "                        inflate the server's compressed messages (the server must\n"
          "                        answer server_no_context_takeover, as wshub always does);\n"
          "                        what the bench sends stays uncompressed\n"
          "\n",
          out);
    fputs("fanout options:\n"
          "  --subscribers S       subscriber connections (default 1000)\n"
          "  --publishers P        publisher connections (default 1)\n"
          "  --rooms R             rooms, subscribers spread round-robin (default 1)\n"
          "  -s, --size B          padding bytes per message (default 64)\n"
          "  --rate M              messages per second from all publishers together;\n"
          "                        0 = as fast as possible (default 0), limited by --window\n"
          "                        and --max-lag\n"
          "  --window W            rate 0: messages in flight per room, counted at the\n"
          "                        room's slowest subscriber (default 64; keep it under the\n"
          "                        server's per-connection queue, 256 in wshub and seed-go)\n"
          "  --max-lag D           rate 0: deliveries outstanding over all subscribers\n"
          "                        (default 50000)\n"
          "\n",
          out);
    fputs("idle options:\n"
          "  -c, --connections N   connections (default 1000, at most 19000: the open-files\n"
          "                        limit is 20000)\n"
          "  --hold S              seconds to hold them open before reading VmRSS (default 2)\n"
          "\n"
          "churn options:\n"
          "  --rate C              connections opened per second (default 500)\n"
          "  -s, --size B          message bytes (default 32)\n"
          "  --binary              binary message\n"
          "\n",
          out);
    fputs("Output: a human summary on stdout, then one JSON line, always last (tail -1):\n"
          "  {\"mode\", \"url\", \"params\":{...}, \"results\":{...}, \"server_cpu_s\",\n"
          "   \"server_cpu_per_msg_us\" (echo, fanout: per delivery) or\n"
          "   \"server_cpu_per_conn_us\" (idle: connect phase, churn), \"client_cpu_s\",\n"
          "   \"client_cpu_pct\", \"server_rss_kib\", \"ok\", \"error\"}\n"
          "  Latencies are in microseconds; server figures are null without --server-pid.\n"
          "\n"
          "Exit status: 0 success; 1 the run failed (connection failures over --max-failures,\n"
          "lost connections, lost or duplicated deliveries, no traffic, a mode that could\n"
          "not start, interrupted); 2 usage error.\n",
          out);
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

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

enum {
    OPT_URL = 256,
    OPT_BINARY,
    OPT_SUBS,
    OPT_PUBS,
    OPT_ROOMS,
    OPT_RATE,
    OPT_WINDOW,
    OPT_MAXLAG,
    OPT_SOURCES,
    OPT_HOLD,
    OPT_PID,
    OPT_JSON,
    OPT_MAXPEND,
    OPT_MAXFAIL,
    OPT_DEFLATE,
    OPT_TIMEOUT,
    OPT_CA,
};

struct opt_rule {
    int id;
    const char *name;
    unsigned modes;
};

static const struct opt_rule rules[] = {
    {'c', "--connections", F_ECHO | F_IDLE},
    {'k', "--inflight", F_ECHO},
    {'s', "--size", F_ECHO | F_FANOUT | F_CHURN},
    {OPT_BINARY, "--binary", F_ECHO | F_CHURN},
    {'d', "--duration", F_ECHO | F_FANOUT | F_CHURN},
    {'w', "--warmup", F_ECHO | F_FANOUT | F_CHURN},
    {OPT_SUBS, "--subscribers", F_FANOUT},
    {OPT_PUBS, "--publishers", F_FANOUT},
    {OPT_ROOMS, "--rooms", F_FANOUT},
    {OPT_RATE, "--rate", F_FANOUT | F_CHURN},
    {OPT_WINDOW, "--window", F_FANOUT},
    {OPT_MAXLAG, "--max-lag", F_FANOUT},
    {OPT_HOLD, "--hold", F_IDLE},
    {OPT_DEFLATE, "--deflate", F_ECHO | F_FANOUT | F_IDLE},
};

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

    /* defaults */
    O.connections = O.mode == M_IDLE ? 1000 : 100;
    O.inflight = 1;
    O.size = O.mode == M_FANOUT ? 64 : 32;
    O.duration = 10;
    O.warmup = 2;
    O.subscribers = 1000;
    O.publishers = 1;
    O.rooms = 1;
    O.rate = O.mode == M_CHURN ? 500 : 0;
    O.window = 64;
    O.max_lag = 50000;
    O.sources = 8;
    O.hold = 2;
    O.max_pending = 512;
    O.max_failures = 0;
    O.timeout = 30;
    const char *url = NULL;
    bool seen[OPT_TIMEOUT + 1] = {false};

    static const struct option longs[] = {
        {"url", required_argument, NULL, OPT_URL},
        {"connections", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'k'},
        {"size", required_argument, NULL, 's'},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"deflate", no_argument, NULL, OPT_DEFLATE},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"subscribers", required_argument, NULL, OPT_SUBS},
        {"publishers", required_argument, NULL, OPT_PUBS},
        {"rooms", required_argument, NULL, OPT_ROOMS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"max-lag", required_argument, NULL, OPT_MAXLAG},
        {"sources", required_argument, NULL, OPT_SOURCES},
        {"hold", required_argument, NULL, OPT_HOLD},
        {"server-pid", required_argument, NULL, OPT_PID},
        {"json-only", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"max-pending", required_argument, NULL, OPT_MAXPEND},
        {"max-failures", required_argument, NULL, OPT_MAXFAIL},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"ca", required_argument, NULL, OPT_CA},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:k:s:d:w:qhV", longs, NULL)) != -1) {
        if (opt >= 0 && opt <= OPT_TIMEOUT) seen[opt] = true;
        switch (opt) {
        case OPT_URL:
            url = optarg;
            break;
        case 'c':
            if (!parse_long(optarg, 1, 1000000, &O.connections))
                return usage_error("bad --connections \"%s\" (1 or more)", optarg);
            break;
        case 'k':
            if (!parse_long(optarg, 1, 65536, &O.inflight))
                return usage_error("bad --inflight \"%s\" (1..65536)", optarg);
            break;
        case 's':
            if (!parse_long(optarg, 0, MAX_SIZE, &O.size))
                return usage_error("bad --size \"%s\" (0..%d bytes)", optarg, MAX_SIZE);
            break;
        case OPT_BINARY:
            O.binary = true;
            break;
        case OPT_DEFLATE:
            O.deflate = true;
            break;
        case 'd':
            if (!parse_double(optarg, 0.001, 86400, &O.duration))
                return usage_error("bad --duration \"%s\" (seconds, over 0)", optarg);
            break;
        case 'w':
            if (!parse_double(optarg, 0, 3600, &O.warmup))
                return usage_error("bad --warmup \"%s\" (seconds, 0 or more)", optarg);
            break;
        case OPT_SUBS:
            if (!parse_long(optarg, 1, 1000000, &O.subscribers))
                return usage_error("bad --subscribers \"%s\" (1 or more)", optarg);
            break;
        case OPT_PUBS:
            if (!parse_long(optarg, 1, 10000, &O.publishers))
                return usage_error("bad --publishers \"%s\" (1..10000)", optarg);
            break;
        case OPT_ROOMS:
            if (!parse_long(optarg, 1, 1000000, &O.rooms))
                return usage_error("bad --rooms \"%s\" (1 or more)", optarg);
            break;
        case OPT_RATE:
            if (!parse_double(optarg, 0, 1e8, &O.rate))
                return usage_error("bad --rate \"%s\" (per second, 0 or more)", optarg);
            break;
        case OPT_WINDOW:
            if (!parse_long(optarg, 1, 1000000, &O.window))
                return usage_error("bad --window \"%s\" (1 or more)", optarg);
            break;
        case OPT_MAXLAG:
            if (!parse_long(optarg, 1, LONG_MAX / 2, &O.max_lag))
                return usage_error("bad --max-lag \"%s\" (1 or more)", optarg);
            break;
        case OPT_SOURCES:
            if (!parse_long(optarg, 0, 250, &O.sources))
                return usage_error("bad --sources \"%s\" (0..250)", optarg);
            break;
        case OPT_HOLD:
            if (!parse_double(optarg, 0, 86400, &O.hold))
                return usage_error("bad --hold \"%s\" (seconds, 0 or more)", optarg);
            break;
        case OPT_PID:
            if (!parse_long(optarg, 1, INT_MAX, &O.server_pid))
                return usage_error("bad --server-pid \"%s\"", optarg);
            break;
        case OPT_JSON:
            O.json_only = true;
            O.quiet = true;
            break;
        case 'q':
            O.quiet = true;
            break;
        case OPT_MAXPEND:
            if (!parse_long(optarg, 1, 100000, &O.max_pending))
                return usage_error("bad --max-pending \"%s\" (1 or more)", optarg);
            break;
        case OPT_MAXFAIL:
            if (!parse_long(optarg, 0, LONG_MAX / 2, &O.max_failures))
                return usage_error("bad --max-failures \"%s\" (0 or more)", optarg);
            break;
        case OPT_TIMEOUT:
            if (!parse_double(optarg, 0.1, 3600, &O.timeout))
                return usage_error("bad --timeout \"%s\" (seconds)", optarg);
            break;
        case OPT_CA:
            O.ca_file = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        case 'V':
            printf(PROG " " WSHUB_VERSION "\n");
            exit(EXIT_OK);
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default: {
            const char *o = argv[optind - 1];
            return usage_error("unknown option %s", o);
        }
        }
    }
    if (optind < argc) return usage_error("unexpected argument \"%s\"", argv[optind]);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (seen[rules[i].id] && !(rules[i].modes & (1u << O.mode)))
            return usage_error("%s does not apply to %s mode", rules[i].name, mode_names[O.mode]);

    if (!url) return usage_error("--url is required");
    if (!url_with_default_path(url, O.mode == M_FANOUT ? "/ws" : "/echo", O.url, sizeof O.url))
        return usage_error("--url is too long");
    const char *why = NULL;
    if (wsc_url_parse(O.url, &g.url, &why) != 0)
        return usage_error("bad --url \"%s\": %s", url, why ? why : "invalid");
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
