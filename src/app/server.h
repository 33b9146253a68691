/* The running server: N worker threads, each with its own event loop, its own
 * SO_REUSEPORT listener per address and its own connections (nothing shared on the
 * hot path); graceful shutdown. The binary's main() and embedders drive it:
 * server_start, then server_shutdown from any thread, then server_wait.
 *
 * Ownership: the server keeps a pointer to cfg, which must outlive it. */
#ifndef WSHUB_APP_SERVER_H
#define WSHUB_APP_SERVER_H

#include <stdint.h>

#include "app/config.h"
#include "base/stats.h"
#include "telemetry/metrics.h"

struct wh_server;

/* Opens the listeners and starts the workers. Returns NULL (with an error printed)
 * when it cannot: *exit_code is then 2 for a configuration that cannot be used (bad
 * rate limit, stream or key file) and 1 for a failure to start (address in use). */
struct wh_server *server_start(const struct wh_config *cfg, int *exit_code);

/* Starts the graceful shutdown: stop accepting, close 1001 to every WebSocket, end
 * HTTP connections after their current response, force what is left after
 * cfg->shutdown_timeout_ms. Thread-safe; idempotent. */
void server_shutdown(struct wh_server *s);

/* Nonzero once every worker has finished. */
int server_done(struct wh_server *s);

/* Joins the workers and frees everything. */
void server_wait(struct wh_server *s);

/* Rebuilds the TLS context from the --tls-cert/--tls-key files for new connections
 * (open ones keep theirs); on failure logs it and keeps the old one. Returns 0 or -1.
 * Call from one thread at a time (main's signal loop). */
int server_reload_tls(struct wh_server *s);

/* Background chores of the thread that drives the server (main()'s signal loop), off
 * every worker's loop: returns freed memory to the system once a load has gone away
 * (base/memtrim.h). Call every few tens of milliseconds; it rate-limits itself. Not
 * thread-safe: one caller. */
void server_housekeeping(struct wh_server *s);

/* Sums every worker's counters into out. */
void server_stats(struct wh_server *s, struct wh_stats *out);

/* Gathers what a metrics collection reads (telemetry/metrics.h): the workers'
 * counters summed, the hub's room and user counts, the start time. A
 * metrics_gather_fn with s as ud: any thread, from server_start until server_wait
 * (which frees the workers: stop an exporter thread before calling it). */
void server_metrics_gather(void *s, struct metrics_source *out);

/* The port actually bound for listen address i (differs from cfg with port 0). */
uint16_t server_port(const struct wh_server *s, int i);

#endif
