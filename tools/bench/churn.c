/* wshub-bench churn mode: new connections at a fixed rate, each connect, handshake,
 * one echo, close handshake, TCP close. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static struct {
    enum phase phase;
    size_t *free_slots;
    size_t n_free;
    uint64_t completed, completed_total, failed, started;
    uint64_t behind;
    struct bench_hist hist;
} C;

void churn_on_open(struct conn *c)
{
    if (!out_reserve(c, tmpl.frame_len)) return;
    frame_append(c);
    conn_send_queued(c);
}

void churn_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    int64_t t;
    if (c->churn_echoed) return;
    c->churn_echoed = true;
    if (!echo_time(op, data, len, &t)) {
        conn_fail(c, "the echo is not what was sent");
        return;
    }
    conn_send_close(c, WS_CLOSE_NORMAL);
}

void churn_on_down(struct conn *c, bool clean)
{
    if (clean && c->churn_echoed && c->got_close) {
        C.completed_total++;
        if (C.phase == PH_MEASURE) {
            C.completed++;
            bench_hist_record(&C.hist, (uint64_t)(now_ns() - c->t_start));
        }
    } else {
        C.failed++;
        if (!g.first_error[0]) note_error("connection %u did not complete", c->id);
    }
    c->state = CS_FREE;
    C.free_slots[C.n_free++] = (size_t)(c - g.conns);
}

int run_churn(void)
{
    templates_build((size_t)O.size, O.binary);
    g.n_conns = (size_t)O.max_pending;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    C.free_slots = xcalloc(g.n_conns, sizeof *C.free_slots);
    for (size_t i = 0; i < g.n_conns; i++) {
        g.conns[i].role = R_CHURN;
        g.conns[i].fd = -1;
        C.free_slots[C.n_free++] = g.n_conns - 1 - i;
    }
    progress("churn: %.0f connections/s to %s, warm-up %.1f s, then %.1f s measured", O.rate, O.url,
             O.warmup, O.duration);
    struct cpu_mark a = {0}, b = {0};
    int64_t interval = (int64_t)((double)NS_PER_S / O.rate);
    if (interval < 1) interval = 1;
    g.now = now_ns();
    int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
    int64_t end = warm_end + (int64_t)(O.duration * 1e9);
    int64_t next_open = g.now, next_check = g.now;
    C.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
    if (C.phase == PH_MEASURE) cpu_mark(&a);
    uint64_t seq = 0;
    while (!interrupted) {
        g.now = now_ns();
        if (C.phase == PH_WARMUP && g.now >= warm_end) {
            cpu_mark(&a);
            bench_hist_reset(&C.hist);
            C.completed = 0;
            C.phase = PH_MEASURE;
        }
        if (C.phase == PH_MEASURE && g.now >= end) {
            cpu_mark(&b);
            C.phase = PH_DRAIN;
            break;
        }
        if (g.now - next_open > NS_PER_S) { /* a second behind: give up catching up */
            C.behind += (uint64_t)((g.now - next_open) / interval);
            next_open = g.now;
        }
        while (next_open <= g.now && C.n_free > 0) {
            struct conn *c = &g.conns[C.free_slots[--C.n_free]];
            c->id = (uint32_t)seq;
            conn_start(c, seq++, NULL);
            c->t_start = now_ns();
            c->deadline = c->t_start + CHURN_CONN_TIMEOUT_NS;
            C.started++;
            next_open += interval;
        }
        if (g.now >= next_check) { /* per-connection time limits */
            for (size_t i = 0; i < g.n_conns; i++) {
                struct conn *c = &g.conns[i];
                if (c->state != CS_FREE && c->state != CS_CLOSED && g.now > c->deadline)
                    conn_fail(c, "timed out after %.0f s", CHURN_CONN_TIMEOUT_NS / 1e9);
            }
            next_check = g.now + NS_PER_S / 10;
        }
        int64_t wake = C.phase == PH_WARMUP ? warm_end : end;
        if (next_open < wake) wake = next_open;
        if (next_check < wake) wake = next_check;
        loop_once(wake);
    }
    if (C.phase != PH_DRAIN) cpu_mark(&b);
    if (!a.t) a = b;
    C.phase = PH_DRAIN;
    /* let the connections in progress finish */
    int64_t dl = now_ns() + DRAIN_WAIT_NS;
    while (C.n_free < g.n_conns && now_ns() < dl && !interrupted)
        loop_once(dl);
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        if (c->state != CS_FREE && c->state != CS_CLOSED) conn_fail(c, "unfinished at the end");
    }
    double window = (double)(b.t - a.t) / 1e9;
    double rate = window > 0 ? (double)C.completed / window : 0;
    if (C.completed == 0 && !g.first_error[0]) note_error("no connection completed");
    bool success = !interrupted && C.completed > 0 && C.failed <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("churn %s: target %.0f connections/s, %ld B %s message, %.1f s measured (+%.1f s "
               "warm-up)\n",
               O.url, O.rate, O.size, O.binary ? "binary" : "text", window, O.warmup);
        printf("  completed/s    %.0f  (%llu; %llu failed, %llu started late or skipped)\n", rate,
               (unsigned long long)C.completed, (unsigned long long)C.failed,
               (unsigned long long)C.behind);
        print_hist_line("conn+echo+close us", &C.hist);
    }
    json_begin();
    jcat(",\"params\":{\"rate\":%g,\"size\":%ld,\"binary\":%s,\"duration_s\":%g,\"warmup_s\":%g,"
         "\"sources\":%ld,\"max_pending\":%ld}",
         O.rate, O.size, O.binary ? "true" : "false", O.duration, O.warmup, O.sources,
         O.max_pending);
    jcat(",\"results\":{\"window_s\":%.3f,\"completed\":%llu,\"completed_per_s\":%.0f,"
         "\"failures\":%llu,\"started\":%llu,\"behind\":%llu,\"latency_us\":",
         window, (unsigned long long)C.completed, rate, (unsigned long long)C.failed,
         (unsigned long long)C.started, (unsigned long long)C.behind);
    jhist_us(&C.hist);
    jcat(",\"protocol_errors\":%llu}", (unsigned long long)g.protocol_errors);
    report_common(&a, &b, C.completed, "server_cpu_per_conn_us", "per connection", success);
    return success ? EXIT_OK : EXIT_FAIL;
}
