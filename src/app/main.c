/* wshub: the binary. Loads the configuration, starts the server and turns signals
 * into a graceful shutdown: the first SIGINT/SIGTERM starts it, a second one ends the
 * process at once; SIGHUP reloads the TLS certificate. Signals are blocked in every thread and
 * taken here synchronously, so no handler runs in the middle of a worker's loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "app/config.h"
#include "app/server.h"
#include "base/log.h"

extern char **environ;

int main(int argc, char **argv)
{
    struct wh_config cfg;
    int rc = config_load(&cfg, argc, argv, environ, stdout, stderr);
    if (rc != 0) {
        config_free(&cfg);
        return rc == 1 ? 0 : 2;
    }
    log_configure(cfg.log_level, cfg.log_format == WH_LOG_JSON);

    /* Block before any thread starts, so every worker inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code;
    struct wh_server *srv = server_start(&cfg, &exit_code);
    if (!srv) {
        config_free(&cfg);
        return exit_code;
    }
    log_info("wshub started", "version=%s pid=%d", WSHUB_VERSION, (int)getpid());

    int signals = 0;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
    while (!server_done(srv)) {
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &tick);
        server_housekeeping(srv);
        if (sig == SIGHUP) {
            server_reload_tls(srv);
            continue;
        }
        if (sig != SIGINT && sig != SIGTERM) continue;
        if (++signals == 1) {
            log_info("shutting down", "signal=%d timeout_ms=%u", sig, cfg.shutdown_timeout_ms);
            server_shutdown(srv);
        } else {
            log_warn("second signal: exiting now", "signal=%d", sig);
            _exit(1);
        }
    }
    server_wait(srv);
    log_info("wshub stopped", NULL);
    config_free(&cfg);
    return 0;
}
