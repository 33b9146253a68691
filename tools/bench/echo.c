/* wshub-bench echo mode: N connections to /echo, K messages in flight on each; every
 * echo is timed and answered with the next message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static struct {
    enum phase phase;
    bool sending;
    struct bench_hist hist;
    uint64_t received, bad;
    uint64_t outstanding;
} E;

void echo_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    int64_t t;
    if (!echo_time(op, data, len, &t)) {
        E.bad++;
        if (!g.first_error[0])
            note_error("connection %u: an echo that is not what was sent (%s, %zu bytes)", c->id,
                       op == WS_OP_TEXT ? "text" : "binary", len);
    } else if (E.phase == PH_MEASURE) {
        bench_hist_record(&E.hist, (uint64_t)(g.now - t));
        E.received++;
    }
    if (c->outstanding) {
        c->outstanding--;
        E.outstanding--;
    }
    if (E.sending && c->state == CS_OPEN && out_reserve(c, tmpl.frame_len)) {
        frame_append(c);
        c->outstanding++;
        E.outstanding++;
    }
}

void echo_on_down(struct conn *c)
{
    E.outstanding -= c->outstanding;
    c->outstanding = 0;
}

int run_echo(void)
{
    templates_build((size_t)O.size, O.binary);
    g.n_conns = (size_t)O.connections;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_ECHO;
        g.conns[i].id = (uint32_t)i;
        g.conns[i].fd = -1;
    }
    progress("echo: connecting %zu connections to %s", g.n_conns, O.url);
    int64_t t0 = now_ns();
    bool ok = connect_all(0, g.n_conns, NULL, t0 + (int64_t)(O.timeout * 1e9));
    struct cpu_mark a = {0}, b = {0};
    if (ok) {
        progress("echo: %zu open in %.2f s; warm-up %.1f s, then %.1f s measured", g.opened,
                 (double)(now_ns() - t0) / 1e9, O.warmup, O.duration);
        E.sending = true;
        E.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
        g.now = now_ns();
        int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
        int64_t end = warm_end + (int64_t)(O.duration * 1e9);
        if (E.phase == PH_MEASURE) cpu_mark(&a);
        for (size_t i = 0; i < g.n_conns; i++) {
            struct conn *c = &g.conns[i];
            if (c->state != CS_OPEN) continue;
            if (!out_reserve(c, (size_t)O.inflight * tmpl.frame_len)) continue;
            for (long k = 0; k < O.inflight; k++) {
                frame_append(c);
                c->outstanding++;
                E.outstanding++;
            }
            conn_send_queued(c);
        }
        while (!interrupted && E.phase != PH_DONE) {
            if (g.open_now == 0) {
                note_error("every connection was lost");
                break;
            }
            if (E.phase == PH_WARMUP && g.now >= warm_end) {
                cpu_mark(&a);
                bench_hist_reset(&E.hist);
                E.received = 0;
                E.phase = PH_MEASURE;
            }
            if (E.phase == PH_MEASURE && g.now >= end) {
                cpu_mark(&b);
                E.phase = PH_DONE;
                break;
            }
            loop_once(E.phase == PH_WARMUP ? warm_end : end);
        }
        if (E.phase != PH_DONE) cpu_mark(&b);
        if (!a.t) a = b;
        /* let the frames in flight come back, then close */
        E.sending = false;
        int64_t dl = now_ns() + DRAIN_WAIT_NS;
        while (E.outstanding > 0 && g.open_now > 0 && now_ns() < dl && !interrupted)
            loop_once(dl);
    } else {
        cpu_mark(&a);
        b = a;
    }
    close_all();

    double window = (double)(b.t - a.t) / 1e9;
    double rate = window > 0 ? (double)E.received / window : 0;
    bool success = ok && !interrupted && g.disconnects == 0 && E.bad == 0 &&
                   g.failures <= (uint64_t)O.max_failures && E.received > 0;
    if (ok && E.received == 0 && !g.first_error[0]) note_error("no echo received");

    if (!O.json_only) {
        printf("echo %s: %ld connections x %ld in flight, %ld B %s, %.1f s measured (+%.1f s "
               "warm-up)\n",
               O.url, O.connections, O.inflight, O.size, O.binary ? "binary" : "text", window,
               O.warmup);
        printf("  messages/s     %.0f  (%llu echoes)\n", rate, (unsigned long long)E.received);
        print_hist_line("RTT us", &E.hist);
        if (g.failures || g.disconnects || E.bad)
            printf("  errors         %llu connect, %llu disconnects, %llu bad echoes\n",
                   (unsigned long long)g.failures, (unsigned long long)g.disconnects,
                   (unsigned long long)E.bad);
    }
    json_begin();
    jcat(",\"params\":{\"connections\":%ld,\"inflight\":%ld,\"size\":%ld,\"binary\":%s,"
         "\"duration_s\":%g,\"warmup_s\":%g,\"sources\":%ld}",
         O.connections, O.inflight, O.size, O.binary ? "true" : "false", O.duration, O.warmup,
         O.sources);
    jcat(",\"results\":{\"window_s\":%.3f,\"messages\":%llu,\"messages_per_s\":%.0f,\"rtt_us\":",
         window, (unsigned long long)E.received, rate);
    jhist_us(&E.hist);
    jcat(",\"connect_failures\":%llu,\"disconnects\":%llu,\"bad_echoes\":%llu,"
         "\"protocol_errors\":%llu}",
         (unsigned long long)g.failures, (unsigned long long)g.disconnects,
         (unsigned long long)E.bad, (unsigned long long)g.protocol_errors);
    report_common(&a, &b, E.received, "server_cpu_per_msg_us", "per message", success);
    return success ? EXIT_OK : EXIT_FAIL;
}
