/* wshub's configuration: one table of options, read from (lowest to highest
 * precedence) built-in defaults, a config file, WSHUB_<NAME> environment variables,
 * and the command line. `--help` is generated from the same table, so an option
 * cannot exist without being documented.
 *
 * Config file: one `name = value` per line (the long option name without dashes),
 * '#' comments, blank lines ignored; booleans take true/false/yes/no/on/off/1/0.
 * Environment: WSHUB_ + the name upper-cased with '-' as '_' (WSHUB_MAX_MESSAGE_SIZE).
 * Repeatable options (--listen) replace the defaults from the first occurrence at a
 * given level (file, env, command line): a command-line --listen replaces the
 * default and the file's; several on the command line accumulate. The environment
 * form of a repeatable option takes a comma-separated list.
 *
 * Durations take a unit: ms, s, m, h ("54s", "500ms"; a bare number means seconds).
 * Sizes take B, K/KB/KiB, M/MB/MiB, G/GB/GiB (powers of 1024; bare number: bytes).
 *
 * Ownership: config_load fills a caller-owned struct wh_config; strings inside it are
 * owned by it and freed by config_free. */
#ifndef WSHUB_APP_CONFIG_H
#define WSHUB_APP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WH_MAX_LISTEN 16
/* Most worker threads: each has an event loop, and a process holds at most LOOP_MAX
 * (256, loop/loop.h) of them; the rest are the cluster's and a margin. */
#define WH_MAX_THREADS 250

struct wh_listen {
    char host[64]; /* numeric IPv4 or IPv6 address (no brackets), or "" for any (IPv4) */
    uint16_t port;
};

enum wh_log_format { WH_LOG_LOGFMT = 0, WH_LOG_JSON = 1 };

struct wh_config {
    struct wh_listen listen[WH_MAX_LISTEN]; /* --listen HOST:PORT, [V6]:PORT, :PORT */
    int n_listen;
    int threads;                   /* --threads, 0 = number of online CPUs */
    char *config_file;             /* --config */
    int log_level;                 /* --log-level: enum log_level from base/log.h */
    enum wh_log_format log_format; /* --log-format logfmt|json */
    uint64_t max_message_size;     /* --max-message-size, default 1 MiB */
    uint32_t max_header_size;      /* --max-header-size (HTTP head), default 8 KiB */
    uint32_t max_body_size;        /* --max-body-size (HTTP request bodies), default 1 MiB */
    uint32_t ping_interval_ms;     /* --ping-interval, default 54 s */
    uint32_t read_timeout_ms;      /* --read-timeout, default 60 s (renewed by any frame) */
    uint32_t write_timeout_ms;     /* --write-timeout, default 10 s */
    uint32_t message_timeout_ms;   /* --message-timeout, default 60 s */
    uint32_t handshake_timeout_ms; /* --handshake-timeout, default 10 s */
    bool defer_accept;             /* --defer-accept: TCP_DEFER_ACCEPT on the listeners */
    uint32_t close_timeout_ms;     /* --close-timeout: wait for the peer's close, 5 s */
    uint32_t idle_timeout_ms;      /* --http-idle-timeout: keep-alive HTTP, default 30 s */
    uint32_t shutdown_timeout_ms;  /* --shutdown-timeout, default 5 s */
    uint32_t send_queue_msgs;      /* --send-queue-messages, default 256 */
    uint64_t send_queue_bytes;     /* --send-queue-bytes, default 4 MiB */
    bool echo;                     /* /echo endpoint; --no-echo turns it off */
    bool web;                      /* the web page at /; --no-web turns it off */
    char *web_root;                /* --web-root DIR: serve this folder, not the embedded page */
    bool compression;              /* permessage-deflate; --no-compression turns it off */
    uint32_t compress_threshold;   /* --compression-threshold, default 1 KiB */
    /* authentication and limits */
    int auth_mode;                   /* --auth none|hs256|rs256 (enum auth_mode) */
    char *jwt_secret;                /* --jwt-secret */
    char *jwt_public_key;            /* --jwt-public-key FILE */
    uint32_t jwt_leeway_ms;          /* --jwt-leeway */
    char *allowed_origins;           /* --allowed-origins, comma-separated */
    char *api_key;                   /* --api-key */
    char *rate_limit;                /* --rate-limit RATE[/BURST] per connection */
    char *user_rate_limit;           /* --user-rate-limit RATE[/BURST] per user */
    uint32_t max_connections;        /* --max-connections, 0 = from the descriptor limit */
    uint32_t max_connections_per_ip; /* --max-connections-per-ip, 0 = unlimited */
    /* rooms and messages */
    int send_policy;              /* --send-policy any|members */
    int slow_consumer;            /* --slow-consumer close|drop-oldest */
    bool presence;                /* --presence */
    bool client_broadcast;        /* --client-broadcast */
    uint32_t max_rooms_per_conn;  /* --max-rooms-per-connection */
    uint32_t max_rooms;           /* --max-rooms on this node, 0 = unlimited */
    uint32_t max_rooms_per_ip;    /* --max-rooms-per-ip (memberships), 0 = unlimited */
    uint32_t query_rate;          /* --query-rate listings per second per client, 0 = off */
    uint32_t query_burst;         /* --query-burst */
    char *streams;                /* --stream ROOM:INTERVAL[,ROOM:INTERVAL...] */
    uint32_t history_size;        /* --history-size: messages kept per room and user */
    uint32_t history_ttl_ms;      /* --history-ttl */
    uint64_t history_memory;      /* --history-memory: cap for all history */
    char *history_rules;          /* --history PATTERN:SIZE:TTL[,...] */
    char *redis;                  /* --redis URL[,URL...]: cluster mode */
    uint32_t presence_timeout_ms; /* --presence-timeout */
    /* TLS */
    char *tls_cert; /* --tls-cert FILE (PEM chain); with tls_key, every listener is TLS */
    char *tls_key;  /* --tls-key FILE (PEM private key) */
};

/* Fills cfg with the defaults. */
void config_defaults(struct wh_config *cfg);

/* Loads the configuration: defaults, then the file named by --config (or
 * WSHUB_CONFIG), then the environment (envp, NULL-terminated "NAME=value" strings),
 * then argv. Returns 0 to run, 1 when --help or --version was printed to out (exit
 * 0), 2 on any error, with a message naming the option and the bad value written to
 * err (exit 2). Unknown options, missing values, values out of range, and positional
 * arguments are errors. */
int config_load(struct wh_config *cfg, int argc, char **argv, char **envp, FILE *out, FILE *err);

/* Prints --help to out. */
void config_usage(FILE *out);

void config_free(struct wh_config *cfg);

/* Parsers exposed for tests and for other modules' values. Return 0 or -1. */
int config_parse_duration_ms(const char *s, uint32_t *out);
int config_parse_size(const char *s, uint64_t *out);
int config_parse_listen(const char *s, struct wh_listen *out);

#endif
