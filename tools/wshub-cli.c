/* wshub-cli: an interactive WebSocket client in the manner of wscat, built on
 * src/client/wsclient.h. Interactive mode sends every stdin line as a message and
 * prints every message received; -x sends the given messages, waits --wait seconds for
 * replies and closes. One poll() loop watches stdin and the socket; the library
 * answers pings and the server's close. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/wsclient.h"

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

#ifndef WSHUB_VERSION
#define WSHUB_VERSION "dev"
#endif

#define PROG             "wshub-cli"
#define CONNECT_TIMEOUT  10000 /* ms, connect and handshake */
#define CLOSE_TIMEOUT    5000  /* ms to wait for the answer to our close */
#define BINARY_SHOWN     64    /* bytes of a binary message shown in hex */
#define DEFAULT_WAIT_SEC 2.0

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct cli {
    /* options */
    const char **headers; /* NULL-terminated */
    size_t n_headers;
    const char **subprotocols; /* NULL-terminated */
    size_t n_subprotocols;
    const char **execute;
    size_t n_execute;
    double wait_sec;
    bool wait_set;
    bool binary;
    bool quiet;
    bool color;
    bool echo_sent;  /* stdout is a terminal: show sent messages */
    bool erase_echo; /* stdin is a terminal too: replace the line the terminal echoed */
    char *token_header;
    const char *ca_file; /* --ca: trust these CAs for wss:// */
    /* run */
    struct wsc *c;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    if (interrupted) _exit(130); /* a second Ctrl-C: give up at once */
    interrupted = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- output ---- */

static const char *paint(const struct cli *cli, const char *code)
{
    return cli->color ? code : "";
}

CLI_PRINTF(2, 3) static void status_line(const struct cli *cli, const char *fmt, ...)
{
    if (cli->quiet) return;
    va_list ap;
    printf("%s# ", paint(cli, "\033[33m"));
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("%s\n", paint(cli, "\033[0m"));
    fflush(stdout);
}

static void print_message(const struct cli *cli, const char *prefix, const char *color,
                          enum ws_opcode op, const uint8_t *data, size_t len)
{
    printf("%s%s%s", paint(cli, color), prefix, paint(cli, "\033[0m"));
    if (op == WS_OP_TEXT) {
        fwrite(data, 1, len, stdout);
    } else {
        printf("[binary %zu bytes]", len);
        for (size_t i = 0; i < len && i < BINARY_SHOWN; i++)
            printf(" %02x", data[i]);
        if (len > BINARY_SHOWN) printf(" ...");
    }
    putchar('\n');
    fflush(stdout);
}

static int on_event(void *ud, const struct wsc_event *ev)
{
    const struct cli *cli = ud;
    switch (ev->type) {
    case WSC_EV_OPEN:
        if (ev->subprotocol)
            status_line(cli, "connected (subprotocol %s)", ev->subprotocol);
        else
            status_line(cli, "connected");
        break;
    case WSC_EV_MESSAGE:
        print_message(cli, "< ", "\033[32m", ev->opcode, ev->data, ev->len);
        break;
    case WSC_EV_CLOSE:
        /* The reason is validated UTF-8 of at most 123 bytes; print it as it came. */
        status_line(cli, "closed %u%s%.*s", ev->code, ev->len ? " " : "", (int)ev->len,
                    (const char *)ev->data);
        break;
    case WSC_EV_PING:
    case WSC_EV_PONG:
        break;
    }
    return 0;
}

/* ---- usage ---- */

static void usage(FILE *out)
{
    fputs("Usage: " PROG " [OPTION]... URL\n"
          "Connect to a WebSocket server at URL (ws:// or wss://HOST[:PORT][/PATH][?QUERY]),\n"
          "send each line of standard input as a text message and print every message\n"
          "received.\n"
          "\n"
          "Options:\n"
          "  -H, --header 'NAME: VALUE'  add a request header (repeatable)\n"
          "  -t, --token TOKEN           add 'Authorization: Bearer TOKEN'\n"
          "  -s, --subprotocol NAME      offer a subprotocol (repeatable, in order of\n"
          "                              preference)\n"
          "  -x, --execute MSG           send MSG once connected (repeatable, in order), then\n"
          "                              print replies until --wait elapses or the server\n"
          "                              closes, and close; standard input is not read\n"
          "  -w, --wait SECONDS          with -x: how long to wait for replies before\n"
          "                              closing [default: 2]\n"
          "  -b, --binary                send messages (stdin lines and -x) as binary\n"
          "      --ca FILE               wss://: trust the CAs in this PEM file instead of\n"
          "                              the system's (the server's certificate is always\n"
          "                              verified, name or address included)\n"
          "      --no-color              do not colour the output (colour is used only\n"
          "                              when standard output is a terminal and NO_COLOR\n"
          "                              is not set)\n"
          "  -q, --quiet                 print received messages only: no '#' status\n"
          "                              lines, no '> ' echo of sent messages\n"
          "  -h, --help                  print this help and exit\n"
          "      --version               print the version and exit\n"
          "\n"
          "Output: '< MESSAGE' for every message received (binary ones in hex), '> MESSAGE'\n"
          "for every message sent when standard output is a terminal, and status lines\n"
          "'# connected (subprotocol NAME)' and '# closed CODE REASON'. Pings are answered.\n"
          "End of input (Ctrl-D) or Ctrl-C sends close 1000 and waits for the server's\n"
          "answer; a second Ctrl-C quits at once.\n"
          "\n"
          "Exit status: 0 when the connection ends with a close handshake (code 1000, 1001\n"
          "or none), 1 when it cannot be made, is refused (the server's explanation is\n"
          "printed), is lost, or is closed with another code; 2 on usage errors.\n",
          out);
}

CLI_PRINTF(1, 2) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return EXIT_USAGE;
}

static int push(const char ***list, size_t *n, const char *s)
{
    const char **nl = realloc(*list, (*n + 2) * sizeof **list);
    if (!nl) return -1;
    nl[(*n)++] = s;
    nl[*n] = NULL;
    *list = nl;
    return 0;
}

static int parse_wait(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e6) return -1;
    *out = v;
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(struct cli *cli, int argc, char **argv, struct wsc_url *url)
{
    enum { OPT_NO_COLOR = 256, OPT_VERSION, OPT_CA };
    static const struct option longs[] = {
        {"header", required_argument, NULL, 'H'},
        {"token", required_argument, NULL, 't'},
        {"subprotocol", required_argument, NULL, 's'},
        {"execute", required_argument, NULL, 'x'},
        {"wait", required_argument, NULL, 'w'},
        {"binary", no_argument, NULL, 'b'},
        {"no-color", no_argument, NULL, OPT_NO_COLOR},
        {"ca", required_argument, NULL, OPT_CA},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    bool no_color = false;
    const char *why = NULL;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":H:t:s:x:w:bqh", longs, NULL)) != -1) {
        switch (opt) {
        case 'H':
            if (wsc_check_header(optarg, &why) != 0)
                return usage_error("bad header for -H: %s", why);
            if (push(&cli->headers, &cli->n_headers, optarg) != 0)
                return usage_error("%s", "out of memory");
            break;
        case 't': {
            size_t n = strlen(optarg) + sizeof "Authorization: Bearer ";
            free(cli->token_header);
            cli->token_header = malloc(n);
            if (!cli->token_header) return usage_error("%s", "out of memory");
            snprintf(cli->token_header, n, "Authorization: Bearer %s", optarg);
            if (!*optarg || wsc_check_header(cli->token_header, &why) != 0)
                return usage_error("bad token for -t: %s", *optarg ? why : "empty token");
            break;
        }
        case 's':
            if (wsc_check_subprotocol(optarg, &why) != 0)
                return usage_error("bad subprotocol for -s: %s", why);
            if (push(&cli->subprotocols, &cli->n_subprotocols, optarg) != 0)
                return usage_error("%s", "out of memory");
            break;
        case 'x':
            if (push(&cli->execute, &cli->n_execute, optarg) != 0)
                return usage_error("%s", "out of memory");
            break;
        case 'w':
            if (parse_wait(optarg, &cli->wait_sec) != 0)
                return usage_error("bad value for -w/--wait: \"%s\" (seconds, 0 or more)", optarg);
            cli->wait_set = true;
            break;
        case 'b':
            cli->binary = true;
            break;
        case 'q':
            cli->quiet = true;
            break;
        case OPT_NO_COLOR:
            no_color = true;
            break;
        case OPT_CA:
            cli->ca_file = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf(PROG " %s\n", WSHUB_VERSION);
            return EXIT_OK;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            if (optopt) {
                char o[3] = {'-', (char)optopt, '\0'};
                return usage_error("unknown option %s", o);
            }
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc) return usage_error("%s", "no URL given");
    if (argc - optind > 1) return usage_error("unexpected argument \"%s\"", argv[optind + 1]);
    if (cli->wait_set && !cli->n_execute)
        return usage_error("%s", "-w/--wait applies only with -x/--execute");
    const char *u = argv[optind];
    if (wsc_url_parse(u, url, &why) != 0) {
        fprintf(stderr, PROG ": bad URL \"%s\": %s\n", u, why);
        fprintf(stderr, "Try '" PROG " --help' for more information.\n");
        return EXIT_USAGE;
    }
    if (cli->token_header && push(&cli->headers, &cli->n_headers, cli->token_header) != 0)
        return usage_error("%s", "out of memory");

    bool out_tty = isatty(STDOUT_FILENO) == 1;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    bool dumb = !term || strcmp(term, "dumb") == 0;
    cli->color = out_tty && !no_color && !(nc && *nc) && !dumb;
    cli->echo_sent = out_tty && !cli->quiet;
    cli->erase_echo = cli->echo_sent && !dumb && isatty(STDIN_FILENO) == 1;
    return -1;
}

/* ---- running ---- */

static int send_message(struct cli *cli, const char *msg, size_t len, bool typed)
{
    enum ws_opcode op = cli->binary ? WS_OP_BINARY : WS_OP_TEXT;
    int rc = wsc_send(cli->c, op, msg, len);
    if (rc < 0) return rc;
    if (cli->echo_sent) {
        /* The terminal already shows a typed line: replace it with the "> " form. */
        if (typed && cli->erase_echo) fputs("\033[1A\033[2K", stdout);
        print_message(cli, "> ", "\033[36m", op, (const uint8_t *)msg, len);
    }
    rc = wsc_flush(cli->c);
    return rc < 0 ? rc : 0;
}

/* The exit status for how the connection ended (rc from the library), with the reason
 * on stderr for failures. */
static int outcome(struct cli *cli, int rc)
{
    if (rc == WSC_DONE) {
        unsigned code = wsc_close_code(cli->c);
        if (code == WS_CLOSE_NORMAL || code == WS_CLOSE_GOING_AWAY || code == WS_CLOSE_NO_STATUS)
            return EXIT_OK;
        const char *reason = wsc_close_reason(cli->c);
        fprintf(stderr, PROG ": the server closed the connection with %u%s%s\n", code,
                reason[0] ? ": " : "", reason);
        return EXIT_FAIL;
    }
    if (rc == WSC_ERR_CLOSED) status_line(cli, "closed 1006 (connection lost)");
    fprintf(stderr, PROG ": %s\n", rc < 0 ? wsc_error_detail(cli->c) : "connection ended");
    return EXIT_FAIL;
}

/* Sends our close and waits for the server's. */
static int close_and_wait(struct cli *cli)
{
    int rc = wsc_close(cli->c, WS_CLOSE_NORMAL, NULL);
    if (rc < 0) return outcome(cli, wsc_state(cli->c) == WSC_STATE_CLOSED ? rc : WSC_ERR_STATE);
    int64_t deadline = now_ms() + CLOSE_TIMEOUT;
    rc = wsc_flush(cli->c);
    while (rc >= 0 && rc != WSC_DONE) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr, PROG ": no answer to the close frame within %d s\n",
                    CLOSE_TIMEOUT / 1000);
            return EXIT_FAIL;
        }
        rc = wsc_poll(cli->c, (int)left, on_event, cli);
    }
    return outcome(cli, rc);
}

static int run_execute(struct cli *cli)
{
    if (wsc_state(cli->c) == WSC_STATE_CLOSED) return outcome(cli, wsc_read(cli->c, NULL, NULL));
    for (size_t i = 0; i < cli->n_execute; i++) {
        int rc = send_message(cli, cli->execute[i], strlen(cli->execute[i]), false);
        if (rc < 0) return outcome(cli, rc);
    }
    int64_t deadline = now_ms() + (int64_t)(cli->wait_sec * 1000.0);
    int rc = 0;
    while (rc == 0 && !interrupted) {
        int64_t left = deadline - now_ms();
        if (left <= 0) break;
        rc = wsc_poll(cli->c, (int)(left > 1000000 ? 1000000 : left), on_event, cli);
    }
    if (rc != 0) return outcome(cli, rc);
    return close_and_wait(cli);
}

struct linebuf {
    char *p;
    size_t len, cap;
};

static int lb_append(struct linebuf *lb, const char *s, size_t n)
{
    if (lb->cap - lb->len < n) {
        size_t want = lb->cap ? lb->cap : 4096;
        while (want - lb->len < n) {
            if (want > SIZE_MAX / 2) return -1;
            want *= 2;
        }
        char *np = realloc(lb->p, want);
        if (!np) return -1;
        lb->p = np;
        lb->cap = want;
    }
    memcpy(lb->p + lb->len, s, n);
    lb->len += n;
    return 0;
}

/* Sends every complete line in lb (all of it at end of input). */
static int send_lines(struct cli *cli, struct linebuf *lb, bool eof)
{
    size_t start = 0;
    if (lb->len == 0) return 0;
    for (;;) {
        char *nl = memchr(lb->p + start, '\n', lb->len - start);
        size_t end = nl ? (size_t)(nl - lb->p) : lb->len;
        if (!nl && (!eof || end == start)) break;
        size_t n = end - start;
        if (n && lb->p[start + n - 1] == '\r') n--;
        int rc = send_message(cli, lb->p + start, n, true);
        if (rc < 0) return rc;
        start = nl ? end + 1 : end;
    }
    if (start) {
        memmove(lb->p, lb->p + start, lb->len - start);
        lb->len -= start;
    }
    return 0;
}

static int run_interactive(struct cli *cli)
{
    struct linebuf lb = {0};
    bool stdin_open = true;
    int rc = 0;
    while (rc == 0) {
        if (wsc_state(cli->c) == WSC_STATE_CLOSED) { /* closed right behind the 101 */
            rc = wsc_read(cli->c, NULL, NULL);
            break;
        }
        if (!stdin_open || interrupted) {
            free(lb.p);
            return close_and_wait(cli);
        }
        struct pollfd pfd[2] = {
            {.fd = wsc_fd(cli->c), .events = POLLIN},
            {.fd = STDIN_FILENO, .events = POLLIN},
        };
        if (wsc_want_write(cli->c)) pfd[0].events |= POLLOUT;
        int n = poll(pfd, 2, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror(PROG ": poll");
            free(lb.p);
            return EXIT_FAIL;
        }
        if (pfd[0].revents & POLLOUT) rc = wsc_flush(cli->c);
        if (rc >= 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)))
            rc = wsc_read(cli->c, on_event, cli);
        if (rc < 0) break;
        if (rc == 1) break; /* the server closed; rc == WSC_DONE */
        if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
            char buf[65536];
            ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
            if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (got > 0 && lb_append(&lb, buf, (size_t)got) != 0) {
                fprintf(stderr, PROG ": out of memory for an input line\n");
                free(lb.p);
                return EXIT_FAIL;
            }
            if (got <= 0) stdin_open = false;
            rc = send_lines(cli, &lb, !stdin_open);
        }
    }
    free(lb.p);
    return outcome(cli, rc);
}

int main(int argc, char **argv)
{
    struct cli cli = {.wait_sec = DEFAULT_WAIT_SEC};
    struct wsc_url *url = malloc(sizeof *url);
    int status = EXIT_FAIL;
    if (!url) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FAIL;
    }
    status = parse_args(&cli, argc, argv, url);
    if (status >= 0) goto out;
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct wsc_options opt = {
        .headers = cli.headers, .subprotocols = cli.subprotocols, .ca_file = cli.ca_file};
    int err = 0;
    cli.c = wsc_new(url, &opt, &err);
    if (!cli.c) {
        fprintf(stderr, PROG ": %s\n", wsc_strerror(err));
        status = EXIT_FAIL;
        goto out;
    }
    if (wsc_connect(cli.c, CONNECT_TIMEOUT, on_event, &cli) != 0) {
        fprintf(stderr, PROG ": %s\n", wsc_error_detail(cli.c));
        status = EXIT_FAIL;
        goto out;
    }
    status = cli.n_execute ? run_execute(&cli) : run_interactive(&cli);
out:
    wsc_free(cli.c);
    free(cli.headers);
    free(cli.subprotocols);
    free(cli.execute);
    free(cli.token_header);
    free(url);
    return status;
}
