/* Unit tests for src/app/config.c: the value parsers, each value kind from each
 * source (command line, WSHUB_* environment, config file), precedence, --listen
 * accumulation, error exits and messages, and --help. config_load writes to memory
 * streams here, and config files are mkstemp files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "app/config.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef WSHUB_VERSION
#define WSHUB_VERSION "dev"
#endif

#define ARGS(...) ((const char *[]){"wshub", __VA_ARGS__, NULL})
#define NO_ARGS   ((const char *[]){"wshub", NULL})
#define ENV(...)  ((const char *[]){__VA_ARGS__, NULL})
#define NO_ENV    ((const char *[]){NULL})

struct outcome {
    int rc;
    char *out, *err;
};

/* config_load takes mutable argv/envp, as main() gets them; literals are copied. */
static char **copy_strings(const char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    char **c = calloc(n + 1, sizeof *c);
    assert_non_null(c);
    for (size_t i = 0; i < n; i++)
        assert_non_null(c[i] = strdup(v[i]));
    return c;
}

static void free_strings(char **v)
{
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static struct outcome load(struct wh_config *cfg, const char *const *args, const char *const *env)
{
    struct outcome o = {0};
    size_t out_len, err_len;
    FILE *out = open_memstream(&o.out, &out_len), *err = open_memstream(&o.err, &err_len);
    assert_non_null(out);
    assert_non_null(err);
    char **argv = copy_strings(args), **envp = copy_strings(env);
    int argc = 0;
    while (argv[argc])
        argc++;
    o.rc = config_load(cfg, argc, argv, envp, out, err);
    fclose(out);
    fclose(err);
    free_strings(argv);
    free_strings(envp);
    return o;
}

static void outcome_free(struct outcome *o)
{
    free(o->out);
    free(o->err);
}

/* Loads, expecting success and silence. */
static void load_ok(struct wh_config *cfg, const char *const *args, const char *const *env)
{
    struct outcome o = load(cfg, args, env);
    if (o.rc != 0) fprintf(stderr, "unexpected failure: %s", o.err);
    assert_int_equal(o.rc, 0);
    assert_string_equal(o.out, "");
    assert_string_equal(o.err, "");
    outcome_free(&o);
}

/* Loads, expecting exit status 2 and an error mentioning each of the `want` strings
 * (NULL-terminated) plus the pointer to --help. */
static void load_fails(const char *const *args, const char *const *env, const char *const *want)
{
    struct wh_config cfg;
    struct outcome o = load(&cfg, args, env);
    assert_int_equal(o.rc, 2);
    assert_string_equal(o.out, "");
    assert_true(strncmp(o.err, "wshub: ", 7) == 0);
    for (; *want; want++) {
        if (!strstr(o.err, *want)) fprintf(stderr, "missing \"%s\" in: %s", *want, o.err);
        assert_non_null(strstr(o.err, *want));
    }
    assert_non_null(strstr(o.err, "wshub --help"));
    /* config_load releases cfg itself on failure; config_free stays safe. */
    assert_null(cfg.config_file);
    config_free(&cfg);
    outcome_free(&o);
}

#define WANT(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A temporary config file holding `text`; the caller unlinks path. */
static void write_file(char path[static 32], const char *text)
{
    strcpy(path, "/tmp/wshub-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* ---- defaults ---- */

static void check_defaults(const struct wh_config *c)
{
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].host, "0.0.0.0");
    assert_int_equal(c->listen[0].port, 8080);
    assert_int_equal(c->threads, 0);
    assert_null(c->config_file);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_int_equal(c->log_format, WH_LOG_LOGFMT);
    assert_int_equal(c->max_message_size, 1 << 20);
    assert_int_equal(c->max_header_size, 8 << 10);
    assert_int_equal(c->max_body_size, 1 << 20);
    assert_int_equal(c->ping_interval_ms, 54000);
    assert_int_equal(c->read_timeout_ms, 60000);
    assert_int_equal(c->write_timeout_ms, 10000);
    assert_int_equal(c->handshake_timeout_ms, 10000);
    assert_int_equal(c->close_timeout_ms, 5000);
    assert_int_equal(c->idle_timeout_ms, 30000);
    assert_int_equal(c->shutdown_timeout_ms, 5000);
    assert_int_equal(c->send_queue_msgs, 256);
    assert_int_equal(c->send_queue_bytes, 4 << 20);
    assert_true(c->echo);
}

static void test_defaults(void **state)
{
    (void)state;
    struct wh_config c;
    memset(&c, 0xa5, sizeof c); /* config_defaults must not rely on a zeroed struct */
    config_defaults(&c);
    check_defaults(&c);
    config_free(&c);

    /* Unrelated variables, including other WSHUB_* ones set by test harnesses, and
     * empty ones are not options. */
    load_ok(&c, NO_ARGS,
            ENV("PATH=/bin", "WSHUB_BIN=/x/wshub", "WSHUB_VARIANT=-asan",
                "WSHUB_THREADS=", "WSHUB_LISTEN="));
    check_defaults(&c);
    config_free(&c);
    config_free(&c); /* idempotent */
}

/* ---- parsers ---- */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint32_t ms;
    } good[] = {
        {"0", 0},
        {"54s", 54000},
        {"500ms", 500},
        {"2m", 120000},
        {"1h", 3600000},
        {"10", 10000},
        {"007s", 7000},
        {"0ms", 0},
        {"1MS", 1},
        {"3S", 3000},
        {"4294967295ms", UINT32_MAX},
        {"1193h", 1193u * 3600000u},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t ms = 12345;
        assert_int_equal(config_parse_duration_ms(good[i].in, &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    /* Fractions are rejected by design: "1500ms" is exact. */
    static const char *const bad[] = {
        "",
        "10x",
        "-1",
        "+1",
        "1.5s",
        " 1s",
        "1s ",
        "s",
        "ms",
        "1 s",
        "1sm",
        "0x10",
        "1d",
        "1hh",
        "4294967296ms",
        "1194h",
        "4294968s",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999h",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t ms = 12345;
        if (config_parse_duration_ms(bad[i], &ms) != -1)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        assert_int_equal(config_parse_duration_ms(bad[i], &ms), -1);
        assert_int_equal(ms, 12345);
    }
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"1B", 1},
        {"1K", 1024},
        {"1KB", 1024},
        {"1KiB", 1024},
        {"64kib", 64 * 1024},
        {"1M", 1 << 20},
        {"1MB", 1 << 20},
        {"16MiB", 16 << 20},
        {"1G", 1 << 30},
        {"1GB", 1 << 30},
        {"2GiB", UINT64_C(2) << 30},
        {"18446744073709551615", UINT64_MAX},
        {"17179869183G", UINT64_C(17179869183) << 30},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        assert_int_equal(config_parse_size(good[i].in, &v), 0);
        assert_true(v == good[i].bytes);
    }
    static const char *const bad[] = {
        "",
        "10x",
        "-1",
        "+1",
        "1.5M",
        "K",
        " 1",
        "1 K",
        "1KiBB",
        "1Ki",
        "1T",
        "1KB ",
        "0x10",
        "18446744073709551616",
        "17179869184G",
        "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 12345;
        if (config_parse_size(bad[i], &v) != -1) fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        assert_int_equal(config_parse_size(bad[i], &v), -1);
        assert_true(v == 12345);
    }
}

static void test_parse_listen(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host;
        uint16_t port;
    } good[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080},
        {"127.0.0.1:1", "127.0.0.1", 1},
        {":80", "", 80},
        {":65535", "", 65535},
        {"[::1]:9000", "::1", 9000},
        {"[::]:443", "::", 443},
        {"[fe80::1:2:3:4]:5", "fe80::1:2:3:4", 5},
        {"[::ffff:10.0.0.1]:7", "::ffff:10.0.0.1", 7},
        {"10.1.2.3:00080", "10.1.2.3", 80},
        {"127.0.0.1:0", "127.0.0.1", 0}, /* any free port */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct wh_listen l;
        memset(&l, 0x5a, sizeof l);
        assert_int_equal(config_parse_listen(good[i].in, &l), 0);
        assert_string_equal(l.host, good[i].host);
        assert_int_equal(l.port, good[i].port);
    }
    static const char *const bad[] = {
        "",
        "8080",
        ":",
        ":65536",
        ":99999999999999999999999",
        ":-1",
        ":+80",
        ": 80",
        ":80 ",
        "1.2.3.4",
        "1.2.3.4:",
        "1.2.3:80",
        "256.1.1.1:80",
        "localhost:80",
        "::1:80",
        "[::1]80",
        "[::1]",
        "[::1]:",
        "[]:80",
        "[1.2.3.4]:80",
        "[::1:80",
        "[fe80::1%eth0]:80",
        "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct wh_listen l = {"untouched", 1};
        if (config_parse_listen(bad[i], &l) != -1) fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        assert_int_equal(config_parse_listen(bad[i], &l), -1);
        assert_string_equal(l.host, "untouched");
    }
}

/* ---- each kind from each source ---- */

/* One setting of each value kind; the same values are given through each source. */
static void check_kinds(const struct wh_config *c)
{
    assert_int_equal(c->n_listen, 1);
    assert_string_equal(c->listen[0].host, "::1");
    assert_int_equal(c->listen[0].port, 9000);
    assert_int_equal(c->threads, 4);
    assert_int_equal(c->log_level, LOG_DEBUG);
    assert_int_equal(c->log_format, WH_LOG_JSON);
    assert_int_equal(c->max_message_size, 16 << 20);
    assert_int_equal(c->max_header_size, 16 << 10);
    assert_int_equal(c->ping_interval_ms, 0);
    assert_int_equal(c->read_timeout_ms, 1500);
    assert_int_equal(c->handshake_timeout_ms, 2 * 60000);
    assert_int_equal(c->send_queue_msgs, 1000000);
    assert_false(c->echo);
}

static void test_kinds_from_argv(void **state)
{
    (void)state;
    struct wh_config c;
    load_ok(&c,
            ARGS("--listen", "[::1]:9000", "--threads", "4", "--log-level", "debug", "--log-format",
                 "json", "--max-message-size", "16MiB", "--max-header-size", "16K",
                 "--ping-interval", "0", "--read-timeout", "1500ms", "--handshake-timeout", "2m",
                 "--send-queue-messages", "1000000", "--no-echo"),
            NO_ENV);
    check_kinds(&c);
    config_free(&c);

    /* The --name=value form, short options (separate and attached), case-insensitive
     * enum values. */
    load_ok(&c,
            ARGS("-l", "[::1]:9000", "-t4", "--log-level=DEBUG", "--log-format=json",
                 "--max-message-size=16777216", "--max-header-size=16KiB", "--ping-interval=0s",
                 "--read-timeout=1500ms", "--handshake-timeout=120",
                 "--send-queue-messages=1000000", "--echo=false"),
            NO_ENV);
    check_kinds(&c);
    config_free(&c);

    load_ok(&c, ARGS("-t", "4", "--listen=[::1]:9000"), NO_ENV);
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.listen[0].port, 9000);
    config_free(&c);
}

static void test_kinds_from_env(void **state)
{
    (void)state;
    struct wh_config c;
    load_ok(&c, NO_ARGS,
            ENV("WSHUB_LISTEN=[::1]:9000", "WSHUB_THREADS=4", "WSHUB_LOG_LEVEL=debug",
                "WSHUB_LOG_FORMAT=json", "WSHUB_MAX_MESSAGE_SIZE=16MiB",
                "WSHUB_MAX_HEADER_SIZE=16KB", "WSHUB_PING_INTERVAL=0", "WSHUB_READ_TIMEOUT=1500ms",
                "WSHUB_HANDSHAKE_TIMEOUT=2m", "WSHUB_SEND_QUEUE_MESSAGES=1000000",
                "WSHUB_ECHO=off"));
    check_kinds(&c);
    config_free(&c);
}

static void test_kinds_from_file(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "listen = [::1]:9000\n"
                     "threads = 4\n"
                     "log-level = debug\n"
                     "log-format = json\n"
                     "max-message-size = 16MiB\n"
                     "max-header-size = 16k\n"
                     "ping-interval = 0\n"
                     "read-timeout = 1500ms\n"
                     "handshake-timeout = 2m\n"
                     "send-queue-messages = 1000000\n"
                     "echo = no\n");
    struct wh_config c;
    load_ok(&c, ARGS("--config", path), NO_ENV);
    check_kinds(&c);
    assert_string_equal(c.config_file, path); /* the string kind */
    config_free(&c);

    load_ok(&c, ARGS("-c", path), NO_ENV);
    check_kinds(&c);
    config_free(&c);

    unlink(path);
}

/* The file name can come from the environment, and --config overrides it. */
static void test_config_path_sources(void **state)
{
    (void)state;
    char a[32], b[32];
    write_file(a, "threads = 2\n");
    write_file(b, "threads = 3\n");
    char env[64];
    snprintf(env, sizeof env, "WSHUB_CONFIG=%s", a);
    struct wh_config c;

    load_ok(&c, NO_ARGS, ENV(env));
    assert_int_equal(c.threads, 2);
    assert_string_equal(c.config_file, a);
    config_free(&c);

    load_ok(&c, ARGS("--config", b), ENV(env));
    assert_int_equal(c.threads, 3);
    assert_string_equal(c.config_file, b);
    config_free(&c);

    /* The last --config wins, wherever it is on the line. */
    load_ok(&c, ARGS("-t", "7", "--config", a, "--config=", "--config", b), NO_ENV);
    assert_int_equal(c.threads, 7);
    assert_string_equal(c.config_file, b);
    config_free(&c);
    unlink(a);
    unlink(b);
}

/* ---- precedence ---- */

static void test_precedence(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "threads = 2\nping-interval = 1s\nread-timeout = 2s\n");
    struct wh_config c;

    load_ok(&c, ARGS("--config", path), NO_ENV);
    assert_int_equal(c.threads, 2);
    assert_int_equal(c.ping_interval_ms, 1000);
    assert_int_equal(c.write_timeout_ms, 10000); /* default, untouched by the file */
    config_free(&c);

    load_ok(&c, ARGS("--config", path), ENV("WSHUB_THREADS=3", "WSHUB_READ_TIMEOUT=3s"));
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.ping_interval_ms, 1000);
    assert_int_equal(c.read_timeout_ms, 3000);
    config_free(&c);

    /* argv wins even when it comes before --config on the line. */
    load_ok(&c, ARGS("--threads", "4", "--config", path, "--write-timeout", "4s"),
            ENV("WSHUB_THREADS=3", "WSHUB_READ_TIMEOUT=3s"));
    assert_int_equal(c.threads, 4);
    assert_int_equal(c.ping_interval_ms, 1000);
    assert_int_equal(c.read_timeout_ms, 3000);
    assert_int_equal(c.write_timeout_ms, 4000);
    config_free(&c);

    /* Within one source, the last value wins. */
    load_ok(&c, ARGS("-t", "1", "-t", "5"), NO_ENV);
    assert_int_equal(c.threads, 5);
    config_free(&c);
    unlink(path);
}

/* ---- --listen ---- */

static void test_history_rules_repeat(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "history = a*:1:1s\nhistory = b*:2:2s\n");
    struct wh_config c;
    load_ok(&c, ARGS("-t", "1"), NO_ENV);
    assert_string_equal(c.history_rules, "stats:0:0"); /* the default */
    config_free(&c);
    /* Several at one level join; the first at a higher level replaces the lower. */
    load_ok(&c, ARGS("--history", "x:1:1m", "--history=y:2:2m"), NO_ENV);
    assert_string_equal(c.history_rules, "x:1:1m,y:2:2m");
    config_free(&c);
    load_ok(&c, ARGS("-c", path), NO_ENV);
    assert_string_equal(c.history_rules, "a*:1:1s,b*:2:2s");
    config_free(&c);
    load_ok(&c, ARGS("-c", path), ENV("WSHUB_HISTORY=e:3:3s"));
    assert_string_equal(c.history_rules, "e:3:3s");
    config_free(&c);
    load_ok(&c, ARGS("-c", path, "--history", "z:0:0"), ENV("WSHUB_HISTORY=e:3:3s"));
    assert_string_equal(c.history_rules, "z:0:0");
    config_free(&c);
    unlink(path);
}

static void test_listen_accumulation(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "listen = 10.0.0.1:1\nlisten = [::]:2\n");
    struct wh_config c;

    /* Several on the command line accumulate, replacing the default. */
    load_ok(&c, ARGS("-l", "127.0.0.1:1", "--listen", "[::1]:2", "--listen=:3"), NO_ENV);
    assert_int_equal(c.n_listen, 3);
    assert_string_equal(c.listen[0].host, "127.0.0.1");
    assert_string_equal(c.listen[1].host, "::1");
    assert_string_equal(c.listen[2].host, "");
    assert_int_equal(c.listen[2].port, 3);
    config_free(&c);

    /* The file's list replaces the default. */
    load_ok(&c, ARGS("-c", path), NO_ENV);
    assert_int_equal(c.n_listen, 2);
    assert_string_equal(c.listen[0].host, "10.0.0.1");
    assert_string_equal(c.listen[1].host, "::");
    config_free(&c);

    /* The environment's comma-separated list replaces the file's. */
    load_ok(&c, ARGS("-c", path), ENV("WSHUB_LISTEN=127.0.0.2:5, [::1]:6,:7"));
    assert_int_equal(c.n_listen, 3);
    assert_string_equal(c.listen[0].host, "127.0.0.2");
    assert_string_equal(c.listen[1].host, "::1");
    assert_int_equal(c.listen[2].port, 7);
    config_free(&c);

    /* The command line replaces both. */
    load_ok(&c, ARGS("-c", path, "-l", ":9"), ENV("WSHUB_LISTEN=127.0.0.2:5"));
    assert_int_equal(c.n_listen, 1);
    assert_int_equal(c.listen[0].port, 9);
    config_free(&c);

    /* Another option from a higher source leaves the list alone. */
    load_ok(&c, ARGS("-c", path, "-t", "1"), ENV("WSHUB_THREADS=2"));
    assert_int_equal(c.n_listen, 2);
    config_free(&c);

    /* Up to WH_MAX_LISTEN, then an error. */
    const char *args[2 * WH_MAX_LISTEN + 4] = {"wshub"};
    char addrs[WH_MAX_LISTEN + 1][16];
    int n = 1;
    for (int i = 0; i <= WH_MAX_LISTEN; i++) {
        snprintf(addrs[i], sizeof addrs[i], ":%d", 1000 + i);
        args[n++] = "-l";
        args[n++] = addrs[i];
        if (i == WH_MAX_LISTEN - 1) {
            args[n] = NULL;
            load_ok(&c, args, NO_ENV);
            assert_int_equal(c.n_listen, WH_MAX_LISTEN);
            assert_int_equal(c.listen[WH_MAX_LISTEN - 1].port, 1000 + WH_MAX_LISTEN - 1);
            config_free(&c);
        }
    }
    args[n] = NULL;
    load_fails(args, NO_ENV, WANT("--listen", ":1016", "at most 16"));
    unlink(path);
}

/* ---- errors ---- */

static void test_bad_values(void **state)
{
    (void)state;
    load_fails(ARGS("--threads", "abc"), NO_ENV,
               WANT("wshub: --threads: \"abc\" is not a whole number (0..250)"));
    load_fails(ARGS("-t", "251"), NO_ENV, WANT("--threads: \"251\" is out of range (0..250)"));
    load_fails(ARGS("-t", "-1"), NO_ENV, WANT("--threads", "\"-1\""));
    load_fails(ARGS("-t", "18446744073709551616"), NO_ENV, WANT("--threads", "out of range"));
    load_fails(ARGS("--threads="), NO_ENV, WANT("--threads: \"\" is not a whole number"));
    load_fails(ARGS("--send-queue-messages", "0"), NO_ENV,
               WANT("--send-queue-messages", "\"0\"", "1..1000000"));
    load_fails(ARGS("--send-queue-messages", "1000001"), NO_ENV, WANT("out of range"));
    load_fails(ARGS("--max-message-size", "0"), NO_ENV,
               WANT("--max-message-size: \"0\" is out of range (1B..1GiB)"));
    load_fails(ARGS("--max-message-size", "2G"), NO_ENV, WANT("\"2G\"", "out of range"));
    load_fails(ARGS("--max-message-size", "10x"), NO_ENV, WANT("\"10x\" is not a size"));
    load_fails(ARGS("--max-message-size", "18446744073709551616"), NO_ENV,
               WANT("--max-message-size", "\"18446744073709551616\""));
    load_fails(ARGS("--max-header-size", "512"), NO_ENV, WANT("out of range (1KiB..1MiB)"));
    load_fails(ARGS("--ping-interval", "1.5s"), NO_ENV,
               WANT("--ping-interval: \"1.5s\" is not a duration"));
    load_fails(ARGS("--read-timeout", "-1"), NO_ENV, WANT("--read-timeout", "\"-1\""));
    load_fails(ARGS("--read-timeout", "25h"), NO_ENV, WANT("out of range (0..24h)"));
    load_fails(ARGS("--write-timeout", "0"), NO_ENV, WANT("out of range (1ms..24h)"));
    load_fails(ARGS("--handshake-timeout", ""), NO_ENV, WANT("--handshake-timeout: \"\""));
    load_fails(ARGS("--log-level", "verbose"), NO_ENV,
               WANT("--log-level: \"verbose\" is not one of debug|info|warn|error|off"));
    load_fails(ARGS("--log-format", "xml"), NO_ENV, WANT("--log-format", "logfmt|json"));
    load_fails(ARGS("--listen", "::1:80"), NO_ENV, WANT("--listen: \"::1:80\""));
    load_fails(ARGS("-l", "1.2.3.4:65536"), NO_ENV, WANT("--listen: \"1.2.3.4:65536\""));
    load_fails(ARGS("--echo=maybe"), NO_ENV, WANT("--echo: \"maybe\" is not a boolean"));
    /* Control bytes in an echoed value are escaped. */
    load_fails(ARGS("-t", "1\n2"), NO_ENV, WANT("\"1\\x0a2\""));

    /* The environment and the file name themselves as the source. */
    load_fails(NO_ARGS, ENV("WSHUB_THREADS=abc"),
               WANT("wshub: WSHUB_THREADS: \"abc\" is not a whole number (0..250)"));
    load_fails(NO_ARGS, ENV("WSHUB_MAX_MESSAGE_SIZE=1.5M"), WANT("WSHUB_MAX_MESSAGE_SIZE"));
    load_fails(NO_ARGS, ENV("WSHUB_LISTEN=:1,,:2"), WANT("WSHUB_LISTEN: \"\""));
    load_fails(NO_ARGS, ENV("WSHUB_ECHO=2"), WANT("WSHUB_ECHO: \"2\""));
    /* A bad variable is an error even when argv would override it: each source must
     * be valid on its own. */
    load_fails(ARGS("-t", "1"), ENV("WSHUB_THREADS=x"), WANT("WSHUB_THREADS"));
}

static void test_bad_command_lines(void **state)
{
    (void)state;
    load_fails(ARGS("--bogus"), NO_ENV, WANT("unknown option \"--bogus\""));
    load_fails(ARGS("--bogus=1"), NO_ENV, WANT("unknown option \"--bogus\""));
    load_fails(ARGS("-x"), NO_ENV, WANT("unknown option \"-x\""));
    load_fails(ARGS("--no-threads"), NO_ENV, WANT("unknown option \"--no-threads\""));
    load_fails(ARGS("--thread", "4"), NO_ENV, WANT("unknown option \"--thread\""));
    load_fails(ARGS("serve"), NO_ENV, WANT("unexpected argument \"serve\""));
    load_fails(ARGS("-t", "2", "extra"), NO_ENV, WANT("unexpected argument \"extra\""));
    load_fails(ARGS("-"), NO_ENV, WANT("unexpected argument \"-\""));
    load_fails(ARGS("--", "-t"), NO_ENV, WANT("unexpected argument \"--\""));
    load_fails(ARGS("--threads"), NO_ENV, WANT("--threads needs a value"));
    load_fails(ARGS("--echo", "-t"), NO_ENV, WANT("-t needs a value"));
    load_fails(ARGS("--listen"), NO_ENV, WANT("--listen needs a value"));
    load_fails(ARGS("--no-echo=1"), NO_ENV, WANT("--no-echo takes no value"));
    load_fails(ARGS("--help=yes"), NO_ENV, WANT("--help takes no value"));
    load_fails(ARGS("-hv"), NO_ENV, WANT("-h takes no value"));
    /* A malformed command line is reported even next to --help. */
    load_fails(ARGS("--help", "--bogus"), NO_ENV, WANT("--bogus"));
}

/* ---- booleans ---- */

static void test_echo_flags(void **state)
{
    (void)state;
    const struct {
        const char *const *args;
        const char *const *env;
        bool echo;
    } cases[] = {
        {NO_ARGS, NO_ENV, true},
        {ARGS("--no-echo"), NO_ENV, false},
        {ARGS("--echo=false"), NO_ENV, false},
        {ARGS("--echo=0"), NO_ENV, false},
        {ARGS("--echo=OFF"), NO_ENV, false},
        {ARGS("--no-echo", "--echo"), NO_ENV, true},
        {ARGS("--echo", "--no-echo"), NO_ENV, false},
        {ARGS("--echo=yes"), ENV("WSHUB_ECHO=false"), true},
        {ARGS("--echo"), ENV("WSHUB_ECHO=false"), true},
        {NO_ARGS, ENV("WSHUB_ECHO=no"), false},
        {NO_ARGS, ENV("WSHUB_ECHO=0"), false},
        {NO_ARGS, ENV("WSHUB_ECHO=True"), true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wh_config c;
        load_ok(&c, cases[i].args, cases[i].env);
        assert_int_equal(c.echo, cases[i].echo);
        config_free(&c);
    }

    /* A bare flag does not swallow the next argument. */
    struct wh_config c;
    load_ok(&c, ARGS("--echo", "-t", "2"), NO_ENV);
    assert_true(c.echo);
    assert_int_equal(c.threads, 2);
    config_free(&c);
    load_fails(ARGS("--echo", "false"), NO_ENV, WANT("unexpected argument \"false\""));
}

/* ---- config file ---- */

static void test_config_file_format(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "# wshub.conf\n"
                     "\n"
                     "   # indented comment\n"
                     "threads=3\n"
                     "  log-level   =   warn  \n"
                     "\tping-interval\t=\t20s\t\n"
                     "max-body-size = 2 MiB\n"
                     "\r\n"
                     "echo = off\r\n"
                     "   \n"
                     "max-message-size = 4MiB"); /* no final newline */
    struct wh_config c;
    struct outcome o = load(&c, ARGS("-c", path), NO_ENV);
    /* "2 MiB": no space is allowed between a number and its unit. */
    assert_int_equal(o.rc, 2);
    assert_non_null(strstr(o.err, "line 7: max-body-size: \"2 MiB\" is not a size"));
    outcome_free(&o);
    unlink(path);

    write_file(path, "# wshub.conf\n"
                     "\n"
                     "   # indented comment\n"
                     "threads=3\n"
                     "  log-level   =   warn  \n"
                     "\tping-interval\t=\t20s\t\n"
                     "max-body-size = 2MiB\n"
                     "\r\n"
                     "echo = off\r\n"
                     "   \n"
                     "max-message-size = 4MiB");
    load_ok(&c, ARGS("-c", path), NO_ENV);
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.log_level, LOG_WARN);
    assert_int_equal(c.ping_interval_ms, 20000);
    assert_int_equal(c.max_body_size, 2 << 20);
    assert_false(c.echo);
    assert_int_equal(c.max_message_size, 4 << 20);
    config_free(&c);
    unlink(path);

    write_file(path, "empty = \n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: unknown option \"empty\""));
    unlink(path);
}

static void test_config_file_errors(void **state)
{
    (void)state;
    char path[32], want[128];

    write_file(path, "# comment\n\nthreads = 2\nbogus-key = 1\n");
    snprintf(want, sizeof want, "config file %s line 4: unknown option \"bogus-key\"", path);
    load_fails(ARGS("-c", path), NO_ENV, WANT(want));
    unlink(path);

    write_file(path, "threads = 2\nthreads 3\n");
    snprintf(want, sizeof want, "config file %s line 2: expected `name = value`", path);
    load_fails(ARGS("-c", path), NO_ENV, WANT(want));
    unlink(path);

    write_file(path, "\n\nthreads = lots\n");
    snprintf(want, sizeof want, "config file %s line 3: threads: \"lots\" is not a whole number",
             path);
    load_fails(ARGS("-c", path), NO_ENV, WANT(want));
    unlink(path);

    write_file(path, "threads =\n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: threads: \"\""));
    unlink(path);

    write_file(path, "echo\n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: expected"));
    unlink(path);

    write_file(path, "--threads = 2\n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: unknown option \"--threads\""));
    unlink(path);

    write_file(path, "config = /etc/other.conf\n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: \"config\" cannot be set in a config file"));
    unlink(path);

    write_file(path, "help = true\n");
    load_fails(ARGS("-c", path), NO_ENV, WANT("line 1: \"help\" cannot be set"));
    unlink(path);

    /* Missing and unreadable files are errors, from either source of the name. */
    load_fails(ARGS("--config", "/nonexistent/wshub.conf"), NO_ENV,
               WANT("config file /nonexistent/wshub.conf: No such file or directory"));
    load_fails(NO_ARGS, ENV("WSHUB_CONFIG=/nonexistent/wshub.conf"),
               WANT("config file /nonexistent/wshub.conf"));
    load_fails(ARGS("--config", "/"), NO_ENV, WANT("config file /: Is a directory"));
    load_fails(ARGS("--config"), NO_ENV, WANT("--config needs a value"));
}

/* ---- --help and --version ---- */

static const char *const option_names[] = {
    "--listen",
    "--threads",
    "--config",
    "--log-level",
    "--log-format",
    "--max-message-size",
    "--max-header-size",
    "--max-body-size",
    "--ping-interval",
    "--read-timeout",
    "--write-timeout",
    "--handshake-timeout",
    "--close-timeout",
    "--http-idle-timeout",
    "--shutdown-timeout",
    "--send-queue-messages",
    "--send-queue-bytes",
    "echo",
    "--help",
    "--version",
    "-h,",
    "-c,",
    "-t,",
    "-l,",
};

static void check_help(const char *text)
{
    assert_true(strncmp(text, "Usage: wshub", 12) == 0);
    assert_non_null(strstr(text, "wshub — real-time WebSocket messaging server"));
    for (size_t i = 0; i < sizeof option_names / sizeof option_names[0]; i++) {
        if (!strstr(text, option_names[i])) fprintf(stderr, "no %s in help\n", option_names[i]);
        assert_non_null(strstr(text, option_names[i]));
    }
    assert_non_null(strstr(text, "--[no-]echo"));
    assert_non_null(strstr(text, "WSHUB_MAX_MESSAGE_SIZE"));
    assert_non_null(strstr(text, "[default: 1MiB]"));
    assert_non_null(strstr(text, "[default: 0.0.0.0:8080]"));
    static const char *const groups[] = {"\nNetwork:\n", "\nWebSocket:\n", "\nTimeouts:\n",
                                         "\nLogging:\n", "\nGeneral:\n"};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        assert_non_null(strstr(text, groups[i]));

    /* Readable in 80 columns: count characters, not the em dash's bytes. */
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        int cols = 0;
        for (const char *p = line; p < nl; p++)
            cols += ((unsigned char)*p & 0xc0) != 0x80;
        if (cols > 80) fprintf(stderr, "long help line: %.*s\n", (int)(nl - line), line);
        assert_true(cols <= 80);
        line = nl + 1;
    }
}

static void test_help(void **state)
{
    (void)state;
    struct wh_config c;
    const char *const *const forms[] = {ARGS("--help"), ARGS("-h"), ARGS("-t", "3", "--help")};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct outcome o = load(&c, forms[i], NO_ENV);
        assert_int_equal(o.rc, 1);
        assert_string_equal(o.err, "");
        check_help(o.out);
        outcome_free(&o);
        config_free(&c);
    }

    /* --help works whatever the file, the environment or other values hold. */
    struct outcome o = load(&c, ARGS("--threads", "abc", "--config", "/nonexistent", "--help"),
                            ENV("WSHUB_THREADS=abc"));
    assert_int_equal(o.rc, 1);
    check_help(o.out);
    outcome_free(&o);
    config_free(&c);

    /* config_usage prints the same text. */
    char *text;
    size_t len;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_usage(f);
    fclose(f);
    check_help(text);
    free(text);
}

static void test_version(void **state)
{
    (void)state;
    struct wh_config c;
    struct outcome o = load(&c, ARGS("-t", "2", "--version"), NO_ENV);
    assert_int_equal(o.rc, 1);
    assert_string_equal(o.out, "wshub " WSHUB_VERSION "\n");
    assert_string_equal(o.err, "");
    outcome_free(&o);
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_listen),
        cmocka_unit_test(test_kinds_from_argv),
        cmocka_unit_test(test_kinds_from_env),
        cmocka_unit_test(test_kinds_from_file),
        cmocka_unit_test(test_config_path_sources),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_listen_accumulation),
        cmocka_unit_test(test_history_rules_repeat),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_command_lines),
        cmocka_unit_test(test_echo_flags),
        cmocka_unit_test(test_config_file_format),
        cmocka_unit_test(test_config_file_errors),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
