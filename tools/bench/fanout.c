/* wshub-bench fanout mode: subscribers join rooms, publishers send to them; counts
 * deliveries, latency, lost and duplicated deliveries per publisher and room. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "bench.h"

static struct {
    enum phase phase;
    size_t S, P, R;
    uint32_t *last;    /* [s * P + j]: last n seen by subscriber s from publisher j */
    uint32_t *seq;     /* [j * R + r]: last n sent by publisher j to room r */
    uint32_t *minlast; /* [j * R + r]: min over room r's subscribers of last[.][j] */
    uint64_t *room_sent, *room_minsum; /* per room: sum over j of seq, of minlast */
    uint64_t *room_recalc;             /* per room: loop turn of the last recomputation */
    uint32_t *members;                 /* subscribers per room */
    uint64_t expected, advanced;       /* sum of members*seq; sum of last */
    uint64_t baselined;                /* (s, j) pairs that have seen a message */
    uint64_t turn;
    /* counters */
    uint64_t deliveries, published; /* in the measured window */
    uint64_t lost_gaps, dups, bad, other, pub_errors, rate_behind;
    struct bench_hist hist;
    /* publishers */
    int64_t *next_due; /* rate mode */
    uint32_t *next_room;
    int64_t interval; /* rate mode: ns between two messages of one publisher */
    size_t msg_max;   /* upper bound of one message frame */
    char *pad;        /* size bytes of 'x' */
} F;

static const char *fan_token(const struct conn *c)
{
    return c->role == R_SUB ? "sub" : "pub";
}

static size_t fan_build(uint8_t *dst, uint32_t j, uint32_t r, uint32_t n, int64_t t)
{
    char js[20], rs[20], ns[20], ts[20];
    size_t jl = bench_wire_utoa(js, j), rl = bench_wire_utoa(rs, r), nl = bench_wire_utoa(ns, n),
           tl = bench_wire_utoa(ts, (uint64_t)t);
    static const char p1[] = "{\"type\":\"send_to_room\",\"payload\":{\"room_id\":\"bench";
    static const char p2[] = "\",\"pub\":";
    static const char p3[] = ",\"n\":";
    static const char p4[] = ",\"t\":";
    static const char p5[] = ",\"content\":\"wsb:";
    static const char p6[] = "\"}}";
    size_t plen = (sizeof p1 - 1) + rl + (sizeof p2 - 1) + jl + (sizeof p3 - 1) + nl +
                  (sizeof p4 - 1) + tl + (sizeof p5 - 1) + jl + 1 + nl + 1 + tl + 1 +
                  (size_t)O.size + (sizeof p6 - 1);
    uint8_t mask[4];
    next_mask(mask);
    size_t hl = ws_frame_header(dst, WS_OP_TEXT, true, false, plen, mask);
    char *p = (char *)dst + hl;
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        memcpy(p, (s), (l));                                                                       \
        p += (l);                                                                                  \
    } while (0)
    PUT(p1, sizeof p1 - 1);
    PUT(rs, rl);
    PUT(p2, sizeof p2 - 1);
    PUT(js, jl);
    PUT(p3, sizeof p3 - 1);
    PUT(ns, nl);
    PUT(p4, sizeof p4 - 1);
    PUT(ts, tl);
    PUT(p5, sizeof p5 - 1);
    PUT(js, jl);
    *p++ = ':';
    PUT(ns, nl);
    *p++ = ':';
    PUT(ts, tl);
    *p++ = ':';
    PUT(F.pad, (size_t)O.size);
    PUT(p6, sizeof p6 - 1);
#undef PUT
    ws_mask(dst + hl, plen, mask, 0);
    return hl + plen;
}

/* Queues one message from publisher c to room r (caller checked the space). */
static void fan_publish(struct conn *c, uint32_t r)
{
    uint32_t j = c->id;
    uint32_t n = ++F.seq[(size_t)j * F.R + r];
    F.room_sent[r]++;
    F.expected += F.members[r];
    c->out_len += (uint32_t)fan_build(c->out + c->out_len, j, r, n, now_ns());
    if (F.phase == PH_MEASURE) F.published++;
}

static void fan_recalc_room(uint32_t r)
{
    if (F.room_recalc[r] == F.turn) return;
    F.room_recalc[r] = F.turn;
    uint64_t sum = 0;
    for (size_t j = 0; j < F.P; j++) {
        uint32_t m = UINT32_MAX;
        for (size_t s = r; s < F.S; s += F.R) {
            uint32_t v = F.last[s * F.P + j];
            if (v < m) m = v;
        }
        if (m == UINT32_MAX) m = F.seq[j * F.R + r];
        F.minlast[j * F.R + r] = m;
        sum += m;
    }
    F.room_minsum[r] = sum;
}

/* May another message go to room r now (as-fast-as-possible mode)? */
static bool fan_room_open(uint32_t r)
{
    if (F.expected - F.advanced >= (uint64_t)O.max_lag) return false;
    if (F.room_sent[r] - F.room_minsum[r] < (uint64_t)O.window) return true;
    fan_recalc_room(r);
    return F.room_sent[r] - F.room_minsum[r] < (uint64_t)O.window;
}

static void fan_pump(void)
{
    if (F.phase != PH_WARMUP && F.phase != PH_MEASURE) return;
    F.turn++;
    for (size_t i = 0; i < F.P; i++) {
        struct conn *c = &g.conns[F.S + i];
        if (c->state != CS_OPEN) continue;
        if (O.rate > 0) {
            int64_t now = now_ns();
            if (now - F.next_due[i] > NS_PER_S) { /* more than 1 s behind: skip ahead */
                F.rate_behind += (uint64_t)((now - F.next_due[i]) / F.interval);
                F.next_due[i] = now;
            }
            while (F.next_due[i] <= now && c->out_len - c->out_off < PUB_BATCH &&
                   out_reserve(c, F.msg_max)) {
                uint32_t r = F.next_room[i]++ % (uint32_t)F.R;
                fan_publish(c, r);
                F.next_due[i] += F.interval;
            }
        } else {
            uint32_t blocked = 0;
            while (blocked < F.R && c->out_len - c->out_off < PUB_BATCH &&
                   out_reserve(c, F.msg_max)) {
                uint32_t r = F.next_room[i] % (uint32_t)F.R;
                F.next_room[i]++;
                if (!fan_room_open(r)) {
                    blocked++;
                    continue;
                }
                blocked = 0;
                fan_publish(c, r);
            }
        }
        if (c->out_len > c->out_off) conn_send_queued(c);
    }
}

/* Settling: every publisher sends one message to every room in turn (as many as fit
 * in one batch per round; the next round goes on from there). */
static void fan_probe(void)
{
    for (size_t i = 0; i < F.P; i++) {
        struct conn *c = &g.conns[F.S + i];
        if (c->state != CS_OPEN) continue;
        for (size_t k = 0; k < F.R; k++) {
            if (c->out_len - c->out_off >= PUB_BATCH || !out_reserve(c, F.msg_max)) break;
            fan_publish(c, F.next_room[i]++ % (uint32_t)F.R);
        }
        conn_send_queued(c);
    }
}

void fan_on_message(struct conn *c, uint8_t op, uint8_t *data, size_t len)
{
    if (c->role == R_PUB) {
        if (op == WS_OP_TEXT && memmem(data, len, "\"type\":\"error\"", 14)) {
            F.pub_errors++;
            if (!g.first_error[0])
                note_error("publisher %u got an error: %.*s", c->id, (int)(len > 200 ? 200 : len),
                           (const char *)data);
        }
        return;
    }
    uint64_t j, n, t;
    if (op != WS_OP_TEXT || !bench_wire_scan_bench(data, len, &j, &n, &t)) {
        F.other++;
        if (op == WS_OP_TEXT && memmem(data, len, "\"type\":\"error\"", 14)) {
            F.bad++;
            if (!g.first_error[0])
                note_error("subscriber %u got an error: %.*s", c->id, (int)(len > 200 ? 200 : len),
                           (const char *)data);
        }
        return;
    }
    if (j >= F.P || n == 0 || n > UINT32_MAX || (int64_t)t > g.now) {
        F.bad++;
        return;
    }
    uint32_t *last = &F.last[(size_t)c->id * F.P + j];
    uint32_t nn = (uint32_t)n;
    if (*last == 0) {
        F.baselined++;
        F.advanced += nn;
        *last = nn;
    } else if (nn > *last) {
        F.lost_gaps += nn - *last - 1;
        F.advanced += nn - *last;
        *last = nn;
    } else {
        F.dups++;
        return;
    }
    if (F.phase == PH_MEASURE) {
        F.deliveries++;
        bench_hist_record(&F.hist, (uint64_t)(g.now - (int64_t)t));
    }
}

void fan_on_open(struct conn *c)
{
    if (c->role != R_SUB) return;
    char msg[128];
    int n = snprintf(msg, sizeof msg,
                     "{\"type\":\"join_room\",\"payload\":{\"room_id\":\"bench%u\"}}", c->room);
    if (!out_reserve(c, WS_MAX_HEADER + (size_t)n)) return;
    uint8_t mask[4];
    next_mask(mask);
    uint8_t *dst = c->out + c->out_len;
    size_t hl = ws_frame_header(dst, WS_OP_TEXT, true, false, (uint64_t)n, mask);
    memcpy(dst + hl, msg, (size_t)n);
    ws_mask(dst + hl, (size_t)n, mask, 0);
    c->out_len += (uint32_t)(hl + (size_t)n);
    conn_send_queued(c);
}

size_t fan_msg_max(void)
{
    return F.msg_max;
}

int run_fanout(void)
{
    F.S = (size_t)O.subscribers;
    F.P = (size_t)O.publishers;
    F.R = (size_t)O.rooms;
    g.n_conns = F.S + F.P;
    g.conns = xcalloc(g.n_conns, sizeof *g.conns);
    F.last = xcalloc(F.S * F.P, sizeof *F.last);
    F.seq = xcalloc(F.P * F.R, sizeof *F.seq);
    F.minlast = xcalloc(F.P * F.R, sizeof *F.minlast);
    F.room_sent = xcalloc(F.R, sizeof *F.room_sent);
    F.room_minsum = xcalloc(F.R, sizeof *F.room_minsum);
    F.room_recalc = xcalloc(F.R, sizeof *F.room_recalc);
    F.members = xcalloc(F.R, sizeof *F.members);
    F.next_due = xcalloc(F.P, sizeof *F.next_due);
    F.next_room = xcalloc(F.P, sizeof *F.next_room);
    F.pad = xcalloc(1, (size_t)O.size + 1);
    memset(F.pad, 'x', (size_t)O.size);
    F.msg_max = WS_MAX_HEADER + 256 + (size_t)O.size;
    for (size_t i = 0; i < g.n_conns; i++) {
        struct conn *c = &g.conns[i];
        c->fd = -1;
        if (i < F.S) {
            c->role = R_SUB;
            c->id = (uint32_t)i;
            c->room = (uint32_t)(i % F.R);
            F.members[c->room]++;
        } else {
            c->role = R_PUB;
            c->id = (uint32_t)(i - F.S);
            F.next_room[c->id] = c->id; /* spread publishers over the rooms */
        }
    }
    for (size_t r = 0; r < F.R; r++)
        F.room_recalc[r] = UINT64_MAX;

    struct cpu_mark a = {0}, b = {0};
    int64_t t0 = now_ns();
    progress("fanout: connecting %zu subscribers and %zu publishers to %s", F.S, F.P, O.url);
    bool ok = connect_all(0, g.n_conns, fan_token, t0 + (int64_t)(O.timeout * 1e9));
    double settle_s = 0, drain_s = 0;
    if (ok) {
        /* settle: probes until every subscriber has heard from every publisher */
        progress("fanout: %zu open in %.2f s; settling the joins", g.opened,
                 (double)(now_ns() - t0) / 1e9);
        F.phase = PH_SETTLE;
        int64_t s0 = now_ns(), deadline = s0 + (int64_t)(O.timeout * 1e9), next_probe = s0;
        while (!interrupted && F.baselined < (uint64_t)F.S * F.P) {
            if (g.disconnects) break;
            g.now = now_ns();
            if (g.now >= deadline) {
                note_error("joins did not settle within %.0f s: %llu of %zu subscriber/publisher "
                           "pairs heard from",
                           O.timeout, (unsigned long long)F.baselined, F.S * F.P);
                break;
            }
            if (g.now >= next_probe) {
                fan_probe();
                next_probe = g.now + NS_PER_S / 20;
            }
            loop_once(next_probe);
        }
        settle_s = (double)(now_ns() - s0) / 1e9;
        ok = F.baselined == (uint64_t)F.S * F.P && !interrupted && !g.disconnects;
    }
    if (ok) {
        progress("fanout: settled in %.2f s; warm-up %.1f s, then %.1f s measured", settle_s,
                 O.warmup, O.duration);
        /* let the probes drain so the window starts clean */
        int64_t dl = now_ns() + DRAIN_WAIT_NS;
        while (F.expected > F.advanced && now_ns() < dl && !interrupted && !g.disconnects)
            loop_once(dl);
        for (uint32_t r = 0; r < F.R; r++)
            fan_recalc_room(r);
        g.now = now_ns();
        int64_t warm_end = g.now + (int64_t)(O.warmup * 1e9);
        int64_t end = warm_end + (int64_t)(O.duration * 1e9);
        F.phase = O.warmup > 0 ? PH_WARMUP : PH_MEASURE;
        if (F.phase == PH_MEASURE) cpu_mark(&a);
        if (O.rate > 0) {
            F.interval = (int64_t)((double)NS_PER_S * (double)F.P / O.rate);
            if (F.interval < 1) F.interval = 1;
            for (size_t i = 0; i < F.P; i++) /* stagger the publishers */
                F.next_due[i] = g.now + F.interval * (int64_t)i / (int64_t)F.P;
        }
        while (!interrupted) {
            g.now = now_ns();
            if (F.phase == PH_WARMUP && g.now >= warm_end) {
                cpu_mark(&a);
                bench_hist_reset(&F.hist);
                F.deliveries = F.published = 0;
                F.phase = PH_MEASURE;
            }
            if (F.phase == PH_MEASURE && g.now >= end) {
                cpu_mark(&b);
                F.phase = PH_DRAIN;
                break;
            }
            fan_pump();
            int64_t wake = F.phase == PH_WARMUP ? warm_end : end;
            if (O.rate > 0)
                for (size_t i = 0; i < F.P; i++)
                    if (F.next_due[i] < wake) wake = F.next_due[i];
            loop_once(wake);
        }
        if (F.phase != PH_DRAIN) cpu_mark(&b);
        if (!a.t) a = b;
        /* Drain: wait for what is still on its way for as long as deliveries keep
         * coming (a server that fell behind a fixed rate may need a while), up to
         * --timeout; what has not arrived after DRAIN_STALL_NS without progress is
         * counted as lost. */
        F.phase = PH_DRAIN;
        int64_t d0 = now_ns(), progress = d0, hard = d0 + (int64_t)(O.timeout * 1e9);
        uint64_t seen = F.advanced;
        while (F.expected > F.advanced && !interrupted) {
            int64_t t = now_ns();
            if (F.advanced != seen) {
                seen = F.advanced;
                progress = t;
            }
            if (t - progress >= DRAIN_STALL_NS || t >= hard) break;
            loop_once(progress + DRAIN_STALL_NS < hard ? progress + DRAIN_STALL_NS : hard);
        }
        drain_s = (double)(now_ns() - d0) / 1e9;
    } else {
        cpu_mark(&a);
        b = a;
    }
    uint64_t tail_lost = ok ? F.expected - F.advanced : 0;
    close_all();

    uint64_t lost = F.lost_gaps + tail_lost;
    if (ok && tail_lost && !g.first_error[0])
        note_error("%llu deliveries had not arrived %.1f s after the window (%s)",
                   (unsigned long long)tail_lost, drain_s,
                   drain_s >= O.timeout ? "gave up after --timeout" : "no progress for 2 s");
    double window = (double)(b.t - a.t) / 1e9;
    double drate = window > 0 ? (double)F.deliveries / window : 0;
    double prate = window > 0 ? (double)F.published / window : 0;
    /* rate mode: deliveries a second the server was asked for (messages go round-robin
     * over the rooms, so each reaches S/R subscribers on average) */
    double offered = O.rate * (double)F.S / (double)F.R;
    if (ok && lost && !g.first_error[0])
        note_error("%llu deliveries lost", (unsigned long long)lost);
    if (ok && F.dups && !g.first_error[0])
        note_error("%llu deliveries duplicated", (unsigned long long)F.dups);
    if (ok && F.deliveries == 0 && !g.first_error[0]) note_error("no delivery in the window");
    bool success = ok && !interrupted && lost == 0 && F.dups == 0 && g.disconnects == 0 &&
                   F.deliveries > 0 && F.bad == 0 && F.pub_errors == 0 &&
                   g.failures <= (uint64_t)O.max_failures;

    if (!O.json_only) {
        printf("fanout %s: %zu publisher(s) -> %zu subscribers in %zu room(s), %ld B pad, rate "
               "%s, %.1f s measured (+%.1f s warm-up)\n",
               O.url, F.P, F.S, F.R, O.size, O.rate > 0 ? "fixed" : "max", window, O.warmup);
        if (O.rate > 0) {
            printf("  target rate    %.0f msg/s (%.0f deliveries/s)\n", O.rate, offered);
            if (drate < 0.95 * offered)
                printf("  NOTE           the server fell behind the offered load: latency "
                       "grows with the run\n");
        }
        printf("  deliveries/s   %.0f  (%llu)\n", drate, (unsigned long long)F.deliveries);
        if (O.deflate)
            printf("  compressed     %llu messages received compressed (permessage-deflate)\n",
                   (unsigned long long)g.inflated);
        printf("  published/s    %.0f  (%llu)\n", prate, (unsigned long long)F.published);
        print_hist_line("latency us", &F.hist);
        printf("  lost %llu (%llu never arrived), duplicated %llu, disconnects %llu, settle "
               "%.2f s, drain %.2f s\n",
               (unsigned long long)lost, (unsigned long long)tail_lost, (unsigned long long)F.dups,
               (unsigned long long)g.disconnects, settle_s, drain_s);
    }
    json_begin();
    jcat(",\"params\":{\"subscribers\":%zu,\"publishers\":%zu,\"rooms\":%zu,\"size\":%ld,"
         "\"rate\":%g,\"window\":%ld,\"max_lag\":%ld,\"duration_s\":%g,\"warmup_s\":%g,"
         "\"sources\":%ld,\"deflate\":%s}",
         F.S, F.P, F.R, O.size, O.rate, O.window, O.max_lag, O.duration, O.warmup, O.sources,
         O.deflate ? "true" : "false");
    jcat(",\"results\":{\"window_s\":%.3f,\"deliveries\":%llu,\"deliveries_per_s\":%.0f,"
         "\"published\":%llu,\"published_per_s\":%.0f,\"offered_deliveries_per_s\":",
         window, (unsigned long long)F.deliveries, drate, (unsigned long long)F.published, prate);
    if (O.rate > 0)
        jcat("%.0f", offered);
    else
        jcat("null");
    jcat(",\"latency_us\":");
    jhist_us(&F.hist);
    jcat(",\"lost\":%llu,\"never_arrived\":%llu,\"duplicated\":%llu,\"settle_s\":%.3f,"
         "\"drain_s\":%.3f,\"connect_failures\":%llu,"
         "\"disconnects\":%llu,\"protocol_errors\":%llu,\"bad_messages\":%llu,"
         "\"publisher_errors\":%llu,\"rate_behind\":%llu,\"other_messages\":%llu}",
         (unsigned long long)lost, (unsigned long long)tail_lost, (unsigned long long)F.dups,
         settle_s, drain_s, (unsigned long long)g.failures, (unsigned long long)g.disconnects,
         (unsigned long long)g.protocol_errors, (unsigned long long)F.bad,
         (unsigned long long)F.pub_errors, (unsigned long long)F.rate_behind,
         (unsigned long long)F.other);
    report_common(&a, &b, F.deliveries, "server_cpu_per_msg_us", "per delivery", success);
    return success ? EXIT_OK : EXIT_FAIL;
}
