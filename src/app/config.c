/* Configuration loading. Every option is one row of `options` below: its name, kind,
 * where it lives in struct wh_config, its default, its range and its help. The
 * default is text parsed like user input, so the value --help shows is the value in
 * force and a default outside its own range cannot ship. All four sources (defaults,
 * config file, WSHUB_* environment, command line) end in set_option(), so a value is
 * checked and an error reported the same way wherever it came from; --help is
 * printed from the same rows. To add an option: add a field to struct wh_config and
 * a row here. */
#include "app/config.h"

#include "base/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#ifndef WSHUB_VERSION
#define WSHUB_VERSION "dev"
#endif

#if defined(__GNUC__)
#define WH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WH_PRINTF(f, a)
#endif

enum kind {
    K_BOOL,     /* --name / --no-name / --name=BOOL */
    K_UINT,     /* plain whole number */
    K_DURATION, /* stored as milliseconds */
    K_SIZE,     /* stored as bytes */
    K_STRING,   /* malloc'd copy, freed by config_free */
    K_LISTEN,   /* repeatable; fills cfg->listen / cfg->n_listen */
    K_ENUM,     /* one of `choices`, stored as its value */
    K_HELP,     /* actions: print and make config_load return 1 */
    K_VERSION,
};

enum group { G_NETWORK, G_WEBSOCKET, G_HUB, G_SECURITY, G_TIMEOUTS, G_LOGGING, G_GENERAL, G_COUNT };

static const char *const group_titles[G_COUNT] = {
    "Network", "WebSocket", "Rooms and messages", "Authentication and limits", "Timeouts",
    "Logging", "General"};

enum {
    /* Read before the config file, because it decides which file (or whether to read
     * one at all: --help must work with a broken file). */
    F_EARLY = 1,
    F_NO_FILE = 2,
    F_NO_ENV = 4,
    /* A K_STRING list that repeats like --listen: several at one level (file, env,
     * command line) join with ','; the first at a higher level replaces the lower. */
    F_APPEND = 8,
};

struct choice {
    const char *name;
    int value;
};

struct opt_def {
    const char *name; /* long name; also the file key and, upper-cased, the env name */
    char short_name;
    enum kind kind;
    size_t offset, size;          /* of the field in struct wh_config: use FIELD() */
    const char *def;              /* default, in the syntax a user would type; NULL: none */
    uint64_t min, max;            /* for numbers, in the stored unit (ms, bytes) */
    const struct choice *choices; /* K_ENUM, NULL-terminated */
    enum group group;
    unsigned flags;
    const char *metavar; /* NULL: derived from the kind */
    const char *help;
};

#define FIELD(m) .offset = offsetof(struct wh_config, m), .size = sizeof(((struct wh_config *)0)->m)

#define KIB  (UINT64_C(1) << 10)
#define MIB  (UINT64_C(1) << 20)
#define GIB  (UINT64_C(1) << 30)
#define SEC  UINT64_C(1000)
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static const struct choice log_levels[] = {
    {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN},
    {"error", LOG_ERROR}, {"off", LOG_OFF},   {NULL, 0},
};

/* Values match enum auth_mode (auth/token.h), hub_send_policy and hub_slow_policy
 * (hub/hub.h); config does not include them to stay a leaf module. */
static const struct choice auth_modes[] = {{"none", 0}, {"hs256", 1}, {"rs256", 2}, {NULL, 0}};
static const struct choice send_policies[] = {{"any", 0}, {"members", 1}, {NULL, 0}};
static const struct choice slow_policies[] = {{"close", 0}, {"drop-oldest", 1}, {NULL, 0}};

static const struct choice log_formats[] = {
    {"logfmt", WH_LOG_LOGFMT},
    {"json", WH_LOG_JSON},
    {NULL, 0},
};

/* Help is listed by group, in table order within a group. */
static const struct opt_def options[] = {
    {.name = "listen",
     .short_name = 'l',
     .kind = K_LISTEN,
     FIELD(listen),
     .def = "0.0.0.0:8080",
     .group = G_NETWORK,
     .metavar = "ADDR",
     .help = "Address to accept connections on: HOST:PORT, [IPV6]:PORT, or :PORT for all IPv4 "
             "addresses; port 0 picks a free port. Repeat to listen on several."},
    {.name = "max-header-size",
     .kind = K_SIZE,
     FIELD(max_header_size),
     .def = "8KiB",
     .min = KIB,
     .max = MIB,
     .group = G_NETWORK,
     .help = "Largest HTTP request head (request line and headers)."},
    {.name = "max-body-size",
     .kind = K_SIZE,
     FIELD(max_body_size),
     .def = "1MiB",
     .min = 1,
     .max = GIB,
     .group = G_NETWORK,
     .help = "Largest HTTP request body."},
    {.name = "defer-accept",
     .kind = K_BOOL,
     FIELD(defer_accept),
     .def = "true",
     .group = G_NETWORK,
     .help = "Let the kernel hand over a connection only once its first bytes (the "
             "request or TLS hello) have arrived: one wake-up instead of two per "
             "connection. A client that connects and sends nothing is handed over "
             "about a second later, and its --handshake-timeout runs from then."},

    {.name = "max-message-size",
     .kind = K_SIZE,
     FIELD(max_message_size),
     .def = "1MiB",
     .min = 1,
     .max = GIB,
     .group = G_WEBSOCKET,
     .help = "Largest WebSocket message, after joining its fragments."},
    {.name = "send-queue-messages",
     .kind = K_UINT,
     FIELD(send_queue_msgs),
     .def = "256",
     .min = 1,
     .max = 1000000,
     .group = G_WEBSOCKET,
     .help = "Most messages waiting to be sent to one client."},
    {.name = "send-queue-bytes",
     .kind = K_SIZE,
     FIELD(send_queue_bytes),
     .def = "4MiB",
     .min = KIB,
     .max = GIB,
     .group = G_WEBSOCKET,
     .help = "Most bytes waiting to be sent to one client."},
    {.name = "echo",
     .kind = K_BOOL,
     FIELD(echo),
     .def = "true",
     .group = G_WEBSOCKET,
     .help = "Serve the /echo endpoint."},
    {.name = "web",
     .kind = K_BOOL,
     FIELD(web),
     .def = "true",
     .group = G_WEBSOCKET,
     .help = "Serve the web page (chat, notifications, live chart) at /."},
    {.name = "web-root",
     .kind = K_STRING,
     FIELD(web_root),
     .group = G_WEBSOCKET,
     .metavar = "DIR",
     .help = "Serve the web page from this folder instead of the copy built into the binary."},
    {.name = "compression",
     .kind = K_BOOL,
     FIELD(compression),
     .def = "true",
     .group = G_WEBSOCKET,
     .help = "Accept permessage-deflate (RFC 7692) when a client offers it; "
             "--no-compression turns it off."},
    {.name = "compression-threshold",
     .kind = K_SIZE,
     FIELD(compress_threshold),
     .def = "1KiB",
     .min = 0,
     .max = GIB,
     .group = G_WEBSOCKET,
     .help = "Outgoing messages smaller than this are sent uncompressed (compression saves "
             "too little below it to pay for its CPU)."},

    {.name = "ping-interval",
     .kind = K_DURATION,
     FIELD(ping_interval_ms),
     .def = "54s",
     .min = 0,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Ping a client this long after the last bytes received from it, and again "
             "every interval while it stays silent; 0 disables pings."},
    {.name = "read-timeout",
     .kind = K_DURATION,
     FIELD(read_timeout_ms),
     .def = "60s",
     .min = 0,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Close a connection that sends no frame for this long; 0 disables."},
    {.name = "message-timeout",
     .kind = K_DURATION,
     FIELD(message_timeout_ms),
     .def = "60s",
     .min = 0,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Close (1008) a connection whose message takes longer than this to arrive "
             "from its first byte to its last: frames dribbled a byte at a time; 0 disables."},
    {.name = "write-timeout",
     .kind = K_DURATION,
     FIELD(write_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Close a connection that accepts none of our pending data for this long."},
    {.name = "handshake-timeout",
     .kind = K_DURATION,
     FIELD(handshake_timeout_ms),
     .def = "10s",
     .min = 1,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help =
         "Time allowed for the TLS handshake (with --tls-cert) and the HTTP request or upgrade."},
    {.name = "close-timeout",
     .kind = K_DURATION,
     FIELD(close_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Time to wait for the client's close frame after sending ours."},
    {.name = "http-idle-timeout",
     .kind = K_DURATION,
     FIELD(idle_timeout_ms),
     .def = "30s",
     .min = 1,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "Close a keep-alive HTTP connection idle for this long."},
    {.name = "shutdown-timeout",
     .kind = K_DURATION,
     FIELD(shutdown_timeout_ms),
     .def = "5s",
     .min = 1,
     .max = DAY,
     .group = G_TIMEOUTS,
     .help = "On shutdown, time given to connections to close cleanly."},

    {.name = "log-level",
     .kind = K_ENUM,
     FIELD(log_level),
     .def = "info",
     .choices = log_levels,
     .group = G_LOGGING,
     .metavar = "LEVEL",
     .help = "Least severe event that is logged."},
    {.name = "log-format",
     .kind = K_ENUM,
     FIELD(log_format),
     .def = "logfmt",
     .choices = log_formats,
     .group = G_LOGGING,
     .metavar = "FORMAT",
     .help = "Log line format: logfmt (key=value) or JSON lines."},

    {.name = "send-policy",
     .kind = K_ENUM,
     FIELD(send_policy),
     .def = "any",
     .choices = send_policies,
     .group = G_HUB,
     .metavar = "POLICY",
     .help = "Who may send to a room: any connected user (as in the guide), or only its "
             "members."},
    {.name = "slow-consumer",
     .kind = K_ENUM,
     FIELD(slow_consumer),
     .def = "close",
     .choices = slow_policies,
     .group = G_HUB,
     .metavar = "POLICY",
     .help = "A client whose send queue is full is closed with 1013, or loses its oldest "
             "queued messages and is told how many."},
    {.name = "presence",
     .kind = K_BOOL,
     FIELD(presence),
     .def = "true",
     .group = G_HUB,
     .help = "Send presence events to a room's members when a user joins or leaves it."},
    {.name = "client-broadcast",
     .kind = K_BOOL,
     FIELD(client_broadcast),
     .def = "false",
     .group = G_HUB,
     .help = "Let every client broadcast to everyone (otherwise only tokens with the "
             "broadcast claim may)."},
    {.name = "max-rooms-per-connection",
     .kind = K_UINT,
     FIELD(max_rooms_per_conn),
     .def = "256",
     .min = 1,
     .max = 100000,
     .group = G_HUB,
     .help = "Most rooms one connection may be in."},
    {.name = "max-rooms",
     .kind = K_UINT,
     FIELD(max_rooms),
     .def = "100000",
     .min = 0,
     .max = 100000000,
     .group = G_HUB,
     .help = "Most rooms on this node; joining a new room beyond it gets error "
             "limit_reached. 0: unlimited."},
    {.name = "max-rooms-per-ip",
     .kind = K_UINT,
     FIELD(max_rooms_per_ip),
     .def = "10000",
     .min = 0,
     .max = 100000000,
     .group = G_HUB,
     .help = "Most room memberships held by all the connections of one IP address, so that "
             "one address cannot fill --max-rooms (error limit_reached). 0: unlimited."},
    {.name = "query-rate",
     .kind = K_UINT,
     FIELD(query_rate),
     .def = "20",
     .min = 0,
     .max = 1000000,
     .group = G_SECURITY,
     .help = "Listing tokens per second for each connection and each IP address (list_rooms, "
             "online_users, room_members and their HTTP API; one token per started 100 ids "
             "of the page); on even when --rate-limit is 0. 0: unlimited."},
    {.name = "query-burst",
     .kind = K_UINT,
     FIELD(query_burst),
     .def = "40",
     .min = 1,
     .max = 1000000,
     .group = G_SECURITY,
     .help = "Listing tokens that may be spent at once before --query-rate applies."},
    {.name = "stream",
     .kind = K_STRING,
     FIELD(streams),
     .def = "stats:1s",
     .group = G_HUB,
     .metavar = "ROOM:TIME,...",
     .help = "Push the host's live CPU, memory, load and network figures as data_update to "
             "ROOM every TIME, while the room has members. Empty: no stream."},
    {.name = "history-size",
     .kind = K_UINT,
     FIELD(history_size),
     .def = "100",
     .max = 1000000,
     .group = G_HUB,
     .help = "Messages kept per room and per user for clients that reconnect (recovery with "
             "join_room's since and ?since=). 0: none (positions are still kept)."},
    {.name = "history-ttl",
     .kind = K_DURATION,
     FIELD(history_ttl_ms),
     .def = "5m",
     .max = DAY,
     .group = G_HUB,
     .help = "Oldest message kept in a history; also how long a room's or user's position "
             "outlives its last member or connection. 0: no age limit."},
    {.name = "history-memory",
     .kind = K_SIZE,
     FIELD(history_memory),
     .def = "256MiB",
     .min = MIB,
     .max = 64 * GIB,
     .group = G_HUB,
     .help = "Memory for all history together; past it the history of the streams used least "
             "recently is dropped first (clients then get recovered: false)."},
    {.name = "history",
     .kind = K_STRING,
     FIELD(history_rules),
     .def = "stats:0:0",
     .group = G_HUB,
     .metavar = "PATTERN:SIZE:TTL,...",
     .flags = F_APPEND,
     .help = "History limits for rooms whose id matches PATTERN ('*' matches any run of "
             "characters); the first match wins, others get --history-size/--history-ttl. "
             "Repeatable (or comma-separated). The default keeps none for the live stats "
             "stream; giving any replaces it."},

    {.name = "redis",
     .kind = K_STRING,
     FIELD(redis),
     .group = G_HUB,
     .metavar = "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
     .flags = F_APPEND,
     .help = "Cluster mode (docs/cluster.md): join the other nodes that use the same Redis. "
             "Repeatable (or comma-separated): rooms and users are then sharded over the "
             "instances. None: a single node, no Redis needed."},
    {.name = "presence-timeout",
     .kind = K_DURATION,
     FIELD(presence_timeout_ms),
     .def = "30s",
     .min = 1000,
     .max = DAY,
     .group = G_HUB,
     .help = "Cluster mode: the longest a node that died without a goodbye keeps its users "
             "and room members listed on the others."},

    {.name = "auth",
     .kind = K_ENUM,
     FIELD(auth_mode),
     .def = "none",
     .choices = auth_modes,
     .group = G_SECURITY,
     .metavar = "MODE",
     .help = "How the upgrade's token is checked: none (development: the token is the user "
             "id), hs256 (JWT, --jwt-secret) or rs256 (JWT, --jwt-public-key)."},
    {.name = "jwt-secret",
     .kind = K_STRING,
     FIELD(jwt_secret),
     .group = G_SECURITY,
     .metavar = "SECRET",
     .help = "Shared secret for --auth hs256."},
    {.name = "jwt-public-key",
     .kind = K_STRING,
     FIELD(jwt_public_key),
     .group = G_SECURITY,
     .metavar = "FILE",
     .help = "PEM public key for --auth rs256."},
    {.name = "tls-cert",
     .kind = K_STRING,
     FIELD(tls_cert),
     .group = G_SECURITY,
     .metavar = "FILE",
     .help = "PEM certificate chain (server certificate first): every --listen address "
             "serves TLS (wss://, https://). Needs --tls-key; reloaded on SIGHUP."},
    {.name = "tls-key",
     .kind = K_STRING,
     FIELD(tls_key),
     .group = G_SECURITY,
     .metavar = "FILE",
     .help = "PEM private key of --tls-cert; reloaded with it on SIGHUP."},
    {.name = "jwt-leeway",
     .kind = K_DURATION,
     FIELD(jwt_leeway_ms),
     .def = "30s",
     .min = 0,
     .max = HOUR,
     .group = G_SECURITY,
     .help = "Clock skew tolerated on a token's exp and nbf."},
    {.name = "allowed-origins",
     .kind = K_STRING,
     FIELD(allowed_origins),
     .group = G_SECURITY,
     .metavar = "LIST",
     .help = "Browser origins allowed besides the server's own (comma-separated; "
             "https://app.example.com, https://"
             "*.example.com, or * for any)."},
    {.name = "api-key",
     .kind = K_STRING,
     FIELD(api_key),
     .group = G_SECURITY,
     .metavar = "KEY",
     .help = "Key for the state-changing HTTP API (POST /api/publish), sent as "
             "Authorization: Bearer KEY or X-API-Key. Unset: that API is disabled."},
    {.name = "rate-limit",
     .kind = K_STRING,
     FIELD(rate_limit),
     .def = "0",
     .group = G_SECURITY,
     .metavar = "RATE[/BURST]",
     .help = "Messages per second one connection may send (0: unlimited)."},
    {.name = "user-rate-limit",
     .kind = K_STRING,
     FIELD(user_rate_limit),
     .def = "0",
     .group = G_SECURITY,
     .metavar = "RATE[/BURST]",
     .help = "Messages per second one user may send, over all its connections on a worker "
             "(0: unlimited)."},
    {.name = "max-connections",
     .kind = K_UINT,
     FIELD(max_connections),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .group = G_SECURITY,
     .help = "Most WebSocket connections at once; beyond it upgrades get 503. 0: as many as "
             "the open-files limit allows."},
    {.name = "max-connections-per-ip",
     .kind = K_UINT,
     FIELD(max_connections_per_ip),
     .def = "0",
     .min = 0,
     .max = 100000000,
     .group = G_SECURITY,
     .help = "Most WebSocket connections from one IP address; beyond it upgrades get 429. "
             "0: unlimited."},

    {.name = "threads",
     .short_name = 't',
     .kind = K_UINT,
     FIELD(threads),
     .def = "0",
     .min = 0,
     .max = WH_MAX_THREADS,
     .group = G_GENERAL,
     .help = "Worker threads; 0 means one per online CPU (at most 250)."},
    {.name = "config",
     .short_name = 'c',
     .kind = K_STRING,
     FIELD(config_file),
     .group = G_GENERAL,
     .flags = F_EARLY | F_NO_FILE,
     .metavar = "FILE",
     .help = "Read options from FILE, one `name = value` per line."},
    {.name = "help",
     .short_name = 'h',
     .kind = K_HELP,
     .group = G_GENERAL,
     .flags = F_EARLY | F_NO_FILE | F_NO_ENV,
     .help = "Print this help and exit."},
    {.name = "version",
     .kind = K_VERSION,
     .group = G_GENERAL,
     .flags = F_EARLY | F_NO_FILE | F_NO_ENV,
     .help = "Print the version and exit."},
};

#define N_OPTIONS (sizeof options / sizeof options[0])
_Static_assert(N_OPTIONS <= 64, "struct loader's append_level holds 64 options");

/* Precedence order: a later level overrides an earlier one. */
enum level { L_DEFAULT, L_FILE, L_ENV, L_ARGV };

struct loader {
    struct wh_config *cfg;
    FILE *err;
    enum level level;
    /* The level whose addresses cfg->listen holds: the first --listen at a higher
     * level replaces them instead of adding to them. */
    enum level listen_level;
    /* The same for F_APPEND options, by index in options[]. */
    enum level append_level[64];
    const char *file; /* for messages about L_FILE values */
    int line;
};

/* ---- value parsers ---- */

/* Leading decimal digits of s into *n; *end points past them. No sign, no space.
 * Returns -1 when there are none, -2 when they overflow (still consuming them all, so
 * the caller can tell "too large" from "malformed"). */
static int parse_digits(const char *s, uint64_t *n, const char **end)
{
    uint64_t v = 0;
    int rc = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return -1;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) rc = -2;
        if (rc == 0) v = v * 10 + d;
    }
    *n = v;
    *end = p;
    return rc;
}

struct unit {
    const char *suffix; /* matched case-insensitively */
    uint64_t scale;
};

static const struct unit plain_units[] = {{"", 1}, {NULL, 0}};

/* Fractions ("1.5s") are rejected: every accepted value is exact, and "1500ms" says
 * the same thing. */
static const struct unit duration_units[] = {
    {"", SEC}, {"ms", 1}, {"s", SEC}, {"m", MIN}, {"h", HOUR}, {NULL, 0},
};

static const struct unit size_units[] = {
    {"", 1},     {"b", 1},     {"k", KIB}, {"kb", KIB}, {"kib", KIB}, {"m", MIB},
    {"mb", MIB}, {"mib", MIB}, {"g", GIB}, {"gb", GIB}, {"gib", GIB}, {NULL, 0},
};

/* A number and an optional unit. Returns 0, -1 (malformed) or -2 (too large). */
static int parse_with_units(const char *s, const struct unit *units, uint64_t *out)
{
    uint64_t n;
    const char *rest;
    int rc = parse_digits(s, &n, &rest);
    if (rc == -1) return -1;
    for (const struct unit *u = units; u->suffix; u++) {
        if (strcasecmp(rest, u->suffix) != 0) continue;
        if (rc == -2 || n > UINT64_MAX / u->scale) return -2;
        *out = n * u->scale;
        return 0;
    }
    return -1;
}

int config_parse_duration_ms(const char *s, uint32_t *out)
{
    uint64_t v;
    if (parse_with_units(s, duration_units, &v) != 0 || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    return parse_with_units(s, size_units, out) == 0 ? 0 : -1;
}

int config_parse_listen(const char *s, struct wh_listen *out)
{
    const char *host, *port;
    size_t host_len;
    int family;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        host = s + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
        family = AF_INET6;
    } else {
        /* More than one ':' is a bare IPv6 address, ambiguous without brackets. */
        const char *colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':')) return -1;
        host = s;
        host_len = (size_t)(colon - s);
        port = colon + 1;
        family = AF_INET;
    }
    if (host_len >= sizeof out->host) return -1;

    uint64_t p;
    const char *end;
    /* Port 0 asks the kernel for a free port (the log says which): tests use it. */
    if (parse_digits(port, &p, &end) != 0 || *end || p > 65535) return -1;

    char buf[sizeof out->host];
    memcpy(buf, host, host_len);
    buf[host_len] = '\0';
    unsigned char addr[16];
    if ((host_len > 0 || family == AF_INET6) && inet_pton(family, buf, addr) != 1) return -1;

    memcpy(out->host, buf, host_len + 1);
    out->port = (uint16_t)p;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = false, 0;
    }
    return -1;
}

/* ---- formatting shared by errors and --help ---- */

static void format_number(enum kind kind, uint64_t v, char *buf, size_t cap)
{
    static const struct unit durations[] = {{"h", HOUR}, {"m", MIN}, {"s", SEC}, {NULL, 0}};
    static const struct unit sizes[] = {{"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}, {NULL, 0}};
    const struct unit *u = kind == K_DURATION ? durations : kind == K_SIZE ? sizes : NULL;
    for (; u && u->suffix && v; u++) {
        if (v % u->scale == 0) {
            snprintf(buf, cap, "%llu%s", (unsigned long long)(v / u->scale), u->suffix);
            return;
        }
    }
    const char *base = (kind == K_DURATION && v) ? "ms" : (kind == K_SIZE && v) ? "B" : "";
    snprintf(buf, cap, "%llu%s", (unsigned long long)v, base);
}

/* "1KiB..1MiB", or "debug|info|..." for enums; "" for kinds without a range. */
static void format_range(const struct opt_def *o, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (o->kind == K_ENUM) {
        size_t len = 0;
        for (const struct choice *c = o->choices; c->name && len < cap; c++)
            len +=
                (size_t)snprintf(buf + len, cap - len, "%s%s", c == o->choices ? "" : "|", c->name);
    } else if (o->kind == K_UINT || o->kind == K_DURATION || o->kind == K_SIZE) {
        char lo[32], hi[32];
        format_number(o->kind, o->min, lo, sizeof lo);
        format_number(o->kind, o->max, hi, sizeof hi);
        snprintf(buf, cap, "%s..%s", lo, hi);
    }
}

static void env_name(const struct opt_def *o, char *buf, size_t cap)
{
    size_t len = (size_t)snprintf(buf, cap, "WSHUB_%s", o->name);
    for (size_t i = 6; i < len && i < cap; i++)
        buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
}

static bool takes_value(const struct opt_def *o)
{
    return o->kind != K_BOOL && o->kind != K_HELP && o->kind != K_VERSION;
}

/* ---- errors ---- */

/* User input is echoed back; control bytes are escaped so a message stays one line. */
static void print_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

WH_PRINTF(2, 3) static int errorf(const struct loader *ld, const char *fmt, ...)
{
    va_list ap;
    fputs("wshub: ", ld->err);
    va_start(ap, fmt);
    vfprintf(ld->err, fmt, ap);
    va_end(ap);
    fputc('\n', ld->err);
    return 2;
}

/* `wshub: SOURCE: "VALUE" WHAT`, SOURCE naming where the value came from. */
WH_PRINTF(4, 5)
static int bad_value(const struct loader *ld, const struct opt_def *o, const char *value,
                     const char *fmt, ...)
{
    char env[64];
    va_list ap;
    fputs("wshub: ", ld->err);
    switch (ld->level) {
    case L_ARGV:
        fprintf(ld->err, "--%s: ", o->name);
        break;
    case L_ENV:
        env_name(o, env, sizeof env);
        fprintf(ld->err, "%s: ", env);
        break;
    case L_FILE:
        fprintf(ld->err, "config file %s line %d: %s: ", ld->file, ld->line, o->name);
        break;
    case L_DEFAULT:
        fprintf(ld->err, "default of --%s: ", o->name);
        break;
    }
    print_quoted(ld->err, value);
    fputc(' ', ld->err);
    va_start(ap, fmt);
    vfprintf(ld->err, fmt, ap);
    va_end(ap);
    fputc('\n', ld->err);
    return 2;
}

/* ---- the setter ---- */

static void store_number(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        memcpy(field, &v, sizeof v);
    } else {
        /* 4-byte fields are int, uint32_t or an enum; check_row() keeps max within
         * INT32_MAX, so the same bytes are right for each. */
        uint32_t v32 = (uint32_t)v;
        memcpy(field, &v32, sizeof v32);
    }
}

static int set_listen(struct loader *ld, const struct opt_def *o, const char *v)
{
    struct wh_config *cfg = ld->cfg;
    struct wh_listen l;
    if (config_parse_listen(v, &l) != 0)
        return bad_value(ld, o, v,
                         "is not a listen address (HOST:PORT, [IPV6]:PORT or :PORT; numeric "
                         "host, port 0..65535)");
    if (ld->listen_level != ld->level) {
        cfg->n_listen = 0;
        ld->listen_level = ld->level;
    }
    if (cfg->n_listen == WH_MAX_LISTEN)
        return bad_value(ld, o, v, "is one address too many (at most %d)", WH_MAX_LISTEN);
    cfg->listen[cfg->n_listen++] = l;
    return 0;
}

static int set_option(struct loader *ld, const struct opt_def *o, const char *v)
{
    void *field = (char *)ld->cfg + o->offset;
    char range[128];
    format_range(o, range, sizeof range);

    switch (o->kind) {
    case K_BOOL: {
        bool b;
        if (parse_bool(v, &b) != 0)
            return bad_value(ld, o, v, "is not a boolean (true/false, yes/no, on/off, 1/0)");
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case K_UINT:
    case K_DURATION:
    case K_SIZE: {
        static const struct {
            const struct unit *units;
            const char *noun;
        } kinds[] = {
            [K_UINT] = {plain_units, "a whole number"},
            [K_DURATION] = {duration_units, "a duration like 500ms, 54s, 2m or 1h"},
            [K_SIZE] = {size_units, "a size like 512, 64KiB or 1MiB"},
        };
        uint64_t n = 0;
        int rc = parse_with_units(v, kinds[o->kind].units, &n);
        if (rc == -1) return bad_value(ld, o, v, "is not %s (%s)", kinds[o->kind].noun, range);
        if (rc == -2 || n < o->min || n > o->max)
            return bad_value(ld, o, v, "is out of range (%s)", range);
        store_number(field, o->size, n);
        return 0;
    }
    case K_ENUM:
        for (const struct choice *c = o->choices; c->name; c++) {
            if (strcasecmp(v, c->name) == 0) {
                store_number(field, o->size, (uint64_t)c->value);
                return 0;
            }
        }
        return bad_value(ld, o, v, "is not one of %s", range);
    case K_STRING: {
        char *copy, *old;
        memcpy(&old, field, sizeof old);
        size_t idx = (size_t)(o - options);
        if ((o->flags & F_APPEND) && old && ld->append_level[idx] == ld->level) {
            size_t n = strlen(old) + 1 + strlen(v) + 1;
            if ((copy = malloc(n))) snprintf(copy, n, "%s,%s", old, v);
        } else {
            copy = strdup(v);
        }
        if (o->flags & F_APPEND) ld->append_level[idx] = ld->level;
        if (!copy) return bad_value(ld, o, v, "cannot be stored: out of memory");
        free(old);
        memcpy(field, &copy, sizeof copy);
        return 0;
    }
    case K_LISTEN:
        return set_listen(ld, o, v);
    case K_HELP:
    case K_VERSION:
        break;
    }
    return 0;
}

/* A row that does not match its field would write out of bounds: fail on every
 * start (and in every test) rather than when the option is first used. */
static void check_row(const struct opt_def *o)
{
    bool ok = true;
    switch (o->kind) {
    case K_BOOL:
        ok = o->size == sizeof(bool);
        break;
    case K_UINT:
    case K_DURATION:
    case K_SIZE:
    case K_ENUM:
        ok = o->size == sizeof(uint64_t) || (o->size == sizeof(uint32_t) && o->max <= INT32_MAX);
        ok = ok && o->min <= o->max && (o->kind != K_ENUM || o->choices);
        break;
    case K_STRING:
        ok = o->size == sizeof(char *);
        break;
    case K_LISTEN:
        ok = o->offset == offsetof(struct wh_config, listen);
        break;
    case K_HELP:
    case K_VERSION:
        break;
    }
    if (!ok) abort();
}

void config_defaults(struct wh_config *cfg)
{
    struct loader ld = {.cfg = cfg, .err = stderr, .level = L_DEFAULT, .listen_level = L_DEFAULT};
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        check_row(&options[i]);
        if (options[i].def && set_option(&ld, &options[i], options[i].def) != 0) abort();
    }
}

void config_free(struct wh_config *cfg)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].kind != K_STRING) continue;
        char *s, *null = NULL;
        void *field = (char *)cfg + options[i].offset;
        memcpy(&s, field, sizeof s);
        free(s);
        memcpy(field, &null, sizeof null);
    }
}

/* ---- sources ---- */

static const struct opt_def *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

static const struct opt_def *find_short(char c)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].short_name && options[i].short_name == c) return &options[i];
    return NULL;
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t len = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=') return *e + len + 1;
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return s;
}

/* Each comma-separated item of a repeatable option's env value is set in turn. */
static int set_list(struct loader *ld, const struct opt_def *o, const char *list)
{
    char *copy = strdup(list);
    if (!copy) return bad_value(ld, o, list, "cannot be stored: out of memory");
    int rc = 0;
    char *item = copy, *comma;
    do {
        comma = strchr(item, ',');
        if (comma) *comma = '\0';
        rc = set_option(ld, o, trim(item));
        if (comma) item = comma + 1;
    } while (comma && rc == 0);
    free(copy);
    return rc;
}

/* Empty variables count as unset, as a shell's `WSHUB_X=` or a container's blank
 * entry usually means "not configured". Unknown WSHUB_* names are ignored: the test
 * harness and wrappers set their own (WSHUB_BIN). */
static int apply_env(struct loader *ld, char **envp, bool early)
{
    ld->level = L_ENV;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct opt_def *o = &options[i];
        char name[64];
        if ((o->flags & F_NO_ENV) || !(o->flags & F_EARLY) != !early) continue;
        env_name(o, name, sizeof name);
        const char *v = env_lookup(envp, name);
        if (!v || !*v) continue;
        int rc = o->kind == K_LISTEN ? set_list(ld, o, v) : set_option(ld, o, v);
        if (rc != 0) return rc;
    }
    return 0;
}

/* '#' starts a comment only at the start of a line, so values may contain it. */
static int apply_file(struct loader *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return errorf(ld, "config file %s: %s", path, strerror(errno));
    ld->level = L_FILE;
    ld->file = path;
    ld->line = 0;

    char *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&buf, &cap, f) >= 0) {
        ld->line++;
        char *s = trim(buf), *eq = strchr(s, '=');
        if (*s == '\0' || *s == '#') continue;
        if (!eq) {
            rc = errorf(ld, "config file %s line %d: expected `name = value`, got \"%s\"", path,
                        ld->line, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        const struct opt_def *o = find_long(key, strlen(key));
        if (!o)
            rc = errorf(ld, "config file %s line %d: unknown option \"%s\"", path, ld->line, key);
        else if (o->flags & F_NO_FILE)
            rc = errorf(ld, "config file %s line %d: \"%s\" cannot be set in a config file", path,
                        ld->line, key);
        else
            rc = set_option(ld, o, value);
    }
    if (rc == 0 && ferror(f)) rc = errorf(ld, "config file %s: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    return rc;
}

/* Walks argv twice with the same rules: first (early) to find --help, --version and
 * --config and to reject malformed command lines, then to apply every other option
 * after the file and environment, so that argv wins. */
static int apply_argv(struct loader *ld, int argc, char **argv, bool early,
                      const struct opt_def **action)
{
    ld->level = L_ARGV;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = NULL;
        const struct opt_def *o;
        size_t len; /* of the option as written, without "=value" */
        bool negated = false;

        if (arg[0] != '-' || arg[1] == '\0' || strcmp(arg, "--") == 0)
            return errorf(ld, "unexpected argument \"%s\"", arg);
        if (arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
            len = name_len + 2;
            o = find_long(name, name_len);
            if (!o && name_len > 3 && strncmp(name, "no-", 3) == 0) {
                o = find_long(name + 3, name_len - 3);
                negated = o && o->kind == K_BOOL;
                if (!negated) o = NULL;
            }
            if (!o) return errorf(ld, "unknown option \"%.*s\"", (int)len, arg);
            if (eq && (negated || o->kind == K_HELP || o->kind == K_VERSION))
                return errorf(ld, "%.*s takes no value", (int)len, arg);
            if (eq) value = eq + 1;
        } else {
            len = 2;
            o = find_short(arg[1]);
            if (!o) return errorf(ld, "unknown option \"%s\"", arg);
            if (arg[2] && !takes_value(o)) return errorf(ld, "-%c takes no value", arg[1]);
            if (arg[2]) value = arg + 2; /* -t4, as getopt allows */
        }
        if (!value && takes_value(o)) {
            if (i + 1 >= argc) return errorf(ld, "%.*s needs a value", (int)len, arg);
            value = argv[++i];
        }
        if (!value) value = negated ? "false" : "true";

        if (o->kind == K_HELP || o->kind == K_VERSION) {
            if (early && !*action) *action = o;
        } else if (!(o->flags & F_EARLY) == !early) {
            int rc = set_option(ld, o, value);
            if (rc != 0) return rc;
        }
    }
    return 0;
}

int config_load(struct wh_config *cfg, int argc, char **argv, char **envp, FILE *out, FILE *err)
{
    struct loader ld = {.cfg = cfg, .err = err ? err : stderr, .listen_level = L_DEFAULT};
    const struct opt_def *action = NULL;
    config_defaults(cfg);

    int rc = apply_env(&ld, envp, true);
    if (rc == 0) rc = apply_argv(&ld, argc, argv, true, &action);
    if (rc == 0 && action) {
        if (action->kind == K_HELP)
            config_usage(out ? out : stdout);
        else
            fprintf(out ? out : stdout, "wshub %s\n", WSHUB_VERSION);
        rc = 1;
    }
    if (rc == 0 && cfg->config_file) rc = apply_file(&ld, cfg->config_file);
    if (rc == 0) rc = apply_env(&ld, envp, false);
    if (rc == 0) rc = apply_argv(&ld, argc, argv, false, NULL);

    if (rc == 2) fputs("Run 'wshub --help' for the list of options.\n", ld.err);
    /* The caller exits on any non-zero result; releasing here keeps that exit clean
     * under LeakSanitizer without asking it to call config_free first. */
    if (rc != 0) config_free(cfg);
    return rc;
}

/* ---- --help ---- */

enum { HELP_COLUMN = 32, HELP_WIDTH = 79 };

/* Writes `text` at *col, moving to a new line indented by `indent` before a word that
 * would pass HELP_WIDTH. With `atomic`, the whole text is one word. */
static void wrap(FILE *out, int *col, int indent, const char *text, bool atomic)
{
    while (*text) {
        size_t len = atomic ? strlen(text) : strcspn(text, " ");
        if (*col > indent && *col + 1 + (int)len > HELP_WIDTH) {
            fprintf(out, "\n%*s", indent, "");
            *col = indent;
        } else if (*col > indent) {
            fputc(' ', out);
            (*col)++;
        }
        fwrite(text, 1, len, out);
        *col += (int)len;
        text += len;
        while (*text == ' ')
            text++;
    }
}

static void print_option(FILE *out, const struct opt_def *o)
{
    static const char *const metavars[] = {
        [K_UINT] = "N",      [K_DURATION] = "TIME", [K_SIZE] = "SIZE",
        [K_STRING] = "TEXT", [K_LISTEN] = "ADDR",   [K_ENUM] = "WORD",
    };
    char head[80], note[160], range[128];
    int col;

    if (o->short_name)
        col = snprintf(head, sizeof head, "  -%c, --", o->short_name);
    else
        col = snprintf(head, sizeof head, "      --");
    col += snprintf(head + col, sizeof head - (size_t)col, "%s%s%s%s",
                    o->kind == K_BOOL ? "[no-]" : "", o->name, takes_value(o) ? " " : "",
                    takes_value(o) ? (o->metavar ? o->metavar : metavars[o->kind]) : "");
    fputs(head, out);
    if (col > HELP_COLUMN - 2) {
        fputc('\n', out);
        col = 0;
    }
    fprintf(out, "%*s", HELP_COLUMN - col, "");
    col = HELP_COLUMN;

    wrap(out, &col, HELP_COLUMN, o->help, false);
    format_range(o, range, sizeof range);
    if (range[0]) {
        snprintf(note, sizeof note, "[%s: %s]", o->kind == K_ENUM ? "one of" : "range", range);
        wrap(out, &col, HELP_COLUMN, note, true);
    }
    if (o->def) {
        snprintf(note, sizeof note, "[default: %s]", o->def);
        wrap(out, &col, HELP_COLUMN, note, true);
    }
    if (!(o->flags & F_NO_ENV)) {
        char env[64];
        env_name(o, env, sizeof env);
        snprintf(note, sizeof note, "[env: %s%s]", env,
                 o->kind == K_LISTEN ? ", comma-separated" : "");
        wrap(out, &col, HELP_COLUMN, note, true);
    }
    fputc('\n', out);
}

void config_usage(FILE *out)
{
    fputs("Usage: wshub [OPTION]...\n"
          "wshub — real-time WebSocket messaging server\n",
          out);
    for (int g = 0; g < G_COUNT; g++) {
        fprintf(out, "\n%s:\n", group_titles[g]);
        for (size_t i = 0; i < N_OPTIONS; i++)
            if (options[i].group == (enum group)g) print_option(out, &options[i]);
    }
    int col = 0;
    fputc('\n', out);
    wrap(out, &col, 0,
         "Durations take ms, s, m or h (a bare number means seconds); sizes take B, K, M or G "
         "(powers of 1024; a bare number means bytes). Options are read from the config "
         "file, then the environment, then the command line: each overrides the one before.",
         false);
    fputc('\n', out);
}
