/* wshub-bench idle mode: many open, silent connections; the connect rate and the
 * server's RSS growth per connection. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* --users: each connection its own user, ?token=user<i> (the user id under
 * --auth none), as on a hub endpoint where every client is somebody else. */
static const char *idle_token(const struct conn *c)
{
    (void)c;
    return "user";
}

int run_idle(void)
{
    g.n_conns = (size_t)O.connections;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_IDLE;
        g.conns[i].id = (uint32_t)i;
        g.conns[i].fd = -1;
    }
    long rss0 = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    struct cpu_mark a, b;
    cpu_mark(&a);
    progress("idle: opening %zu connections to %s (%ld in progress at most)", g.n_conns, O.url,
             O.max_pending);
    bool ok =
        connect_all(0, g.n_conns, O.users ? idle_token : NULL, a.t + (int64_t)(O.timeout * 1e9));
    cpu_mark(&b);
    double connect_s = (double)(b.t - a.t) / 1e9;
    double rate = connect_s > 0 ? (double)g.opened / connect_s : 0;
    long rss1 = -1;
    size_t still_open = 0;
    if (ok) {
        progress("idle: %zu open in %.2f s (%.0f/s); holding %.1f s", g.opened, connect_s, rate,
                 O.hold);
        int64_t end = now_ns() + (int64_t)(O.hold * 1e9);
        while (!interrupted && now_ns() < end)
            loop_once(end);
        still_open = g.open_now;
        rss1 = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    }
    close_all();
    double per = rss0 >= 0 && rss1 >= 0 && g.opened
                     ? (double)(rss1 - rss0) * 1024.0 / (double)g.opened
                     : NAN;
    if (ok && still_open != g.opened && !g.first_error[0])
        note_error("%zu of %zu connections were closed during the hold", g.opened - still_open,
                   g.opened);
    bool success = ok && !interrupted && still_open == g.opened && g.disconnects == 0 &&
                   g.failures <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("idle %s: %zu connections (%ld sources), held %.1f s\n", O.url, g.opened, O.sources,
               O.hold);
        printf("  connect        %.2f s, %.0f connections/s, %llu failed\n", connect_s, rate,
               (unsigned long long)g.failures);
        if (rss0 >= 0 && rss1 >= 0)
            printf("  server RSS     %ld -> %ld KiB: %.0f bytes per connection\n", rss0, rss1, per);
        printf("  still open     %zu\n", still_open);
    }
    json_begin();
    jcat(",\"params\":{\"connections\":%ld,\"sources\":%ld,\"hold_s\":%g,\"max_pending\":%ld,"
         "\"users\":%s}",
         O.connections, O.sources, O.hold, O.max_pending, O.users ? "true" : "false");
    jcat(",\"results\":{\"opened\":%zu,\"still_open\":%zu,\"connect_s\":%.3f,"
         "\"connect_rate_per_s\":%.0f,\"connect_failures\":%llu,\"disconnects\":%llu,"
         "\"rss_before_kib\":",
         g.opened, still_open, connect_s, rate, (unsigned long long)g.failures,
         (unsigned long long)g.disconnects);
    if (rss0 >= 0)
        jcat("%ld", rss0);
    else
        jcat("null");
    jcat(",\"rss_after_kib\":");
    if (rss1 >= 0)
        jcat("%ld", rss1);
    else
        jcat("null");
    jcat(",\"bytes_per_connection\":");
    jnum(per, 1);
    jcat("}");
    /* server CPU of the connect phase, per connection */
    report_common(&a, &b, g.opened, "server_cpu_per_conn_us", "per connection", success);
    return success ? EXIT_OK : EXIT_FAIL;
}
