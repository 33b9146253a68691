/* Host figures for the live data stream, read straight from /proc (or a fake root in
 * tests). Each file is streamed through a small stack buffer line by line, so a host
 * with hundreds of interfaces or a /proc/stat with a huge "intr" line costs no heap
 * and no truncation surprises. Parsing trusts nothing: numbers must start with a digit
 * and fit in 64 bits, lines that do not look right are skipped, and a file that yields
 * nothing usable counts as unread. Rates and CPU use are deltas against the sampler's
 * previous reading; a source that fails keeps its old baseline, so the next good read
 * simply measures over the longer interval. */
#include "services/hoststats.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Big enough for any line we care about (a /proc/net/dev line is ~130 bytes); longer
 * lines, like the "intr" line of /proc/stat, are skipped whole. */
#define LINE_BUF 4096

/* Returns false to stop reading early. `line` is NUL-terminated, without its '\n'. */
typedef bool (*line_fn)(void *ctx, char *line);

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static char *skip_blank(char *p)
{
    while (is_blank(*p))
        p++;
    return p;
}

/* strtoull alone would accept "-1" (as 2^64-1), a leading '+', and newlines; requiring a
 * digit first and checking ERANGE keeps garbage from becoming a plausible counter. */
static bool parse_u64(char **pp, uint64_t *out)
{
    char *p = skip_blank(*pp);
    if (!is_digit(*p)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno == ERANGE || end == p) return false;
    *out = (uint64_t)v;
    *pp = end;
    return true;
}

/* Load averages are fixed-point text; parsing them by hand keeps them independent of
 * the locale's decimal separator, which strtod would honour. */
static bool parse_fixed(char **pp, double *out)
{
    uint64_t ip;
    if (!parse_u64(pp, &ip)) return false;
    char *p = *pp;
    /* One division at the end rounds once, so "0.30" gives exactly 0.3, which a running
     * sum of digit * 0.1^k does not. Digits past nine are below any useful precision. */
    uint64_t frac = 0, scale = 1;
    if (*p == '.') {
        for (p++; is_digit(*p); p++) {
            if (scale < 1000000000) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            }
        }
    }
    *out = (double)ip + (double)frac / (double)scale;
    *pp = p;
    return true;
}

static bool add_u64(uint64_t a, uint64_t b, uint64_t *sum)
{
    if (a > UINT64_MAX - b) return false;
    *sum = a + b;
    return true;
}

/* Streams root/rel line by line into fn. Returns false if the file cannot be opened or
 * read; what fn makes of the contents is fn's business. */
static bool for_each_line(const char *root, const char *rel, line_fn fn, void *ctx)
{
    char path[512];
    int n = snprintf(path, sizeof path, "%s/%s", root, rel);
    if (n < 0 || (size_t)n >= sizeof path) return false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;

    char buf[LINE_BUF];
    size_t have = 0;       /* bytes of the current, incomplete line kept at buf[0..] */
    bool skipping = false; /* inside a line too long for buf: drop until its '\n' */
    bool ok = true, go_on = true;
    while (go_on) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0) {
            if (errno == EINTR) continue;
            ok = false;
            break;
        }
        if (r == 0) {
            if (have > 0 && !skipping) {
                buf[have] = '\0';
                fn(ctx, buf);
            }
            break;
        }
        size_t len = have + (size_t)r, start = 0;
        for (size_t i = have; i < len && go_on; i++) {
            if (buf[i] != '\n') continue;
            buf[i] = '\0';
            if (!skipping) go_on = fn(ctx, buf + start);
            skipping = false;
            start = i + 1;
        }
        if (!go_on) break;
        have = len - start;
        if (have == sizeof buf - 1) {
            skipping = true;
            have = 0;
        } else if (skipping) {
            have = 0;
        } else if (start > 0) {
            memmove(buf, buf + start, have);
        }
    }
    close(fd);
    return ok;
}

/* ---- /proc/stat ---- */

struct cpu_read {
    bool found;
    uint64_t busy, total;
};

static bool stat_line(void *ctx, char *line)
{
    struct cpu_read *c = ctx;
    /* Only the aggregate line; "cpu0".. follow it and are not wanted. */
    if (strncmp(line, "cpu", 3) != 0 || !is_blank(line[3])) return true;
    /* user nice system idle iowait irq softirq steal. guest and guest_nice come after
     * and are already counted in user and nice, so they are left out. Kernels older
     * than 2.6 had only the first four. */
    uint64_t v[8] = {0};
    char *p = line + 3;
    int n = 0;
    while (n < 8 && parse_u64(&p, &v[n]))
        n++;
    if (n < 4) return false;
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        if (!add_u64(total, v[i], &total)) return false;
    c->total = total;
    c->busy = total - v[3] - v[4];
    c->found = true;
    return false;
}

/* ---- /proc/meminfo ---- */

struct mem_read {
    bool total_ok, avail_ok, free_ok;
    uint64_t total, avail, free_ish; /* free_ish: MemFree + Buffers + Cached */
};

static bool meminfo_line(void *ctx, char *line)
{
    struct mem_read *m = ctx;
    char *colon = strchr(line, ':');
    if (!colon) return true;
    *colon = '\0';
    char *p = colon + 1;
    uint64_t v;
    if (!parse_u64(&p, &v)) return true;
    if (strcmp(line, "MemTotal") == 0) {
        m->total = v;
        m->total_ok = true;
    } else if (strcmp(line, "MemAvailable") == 0) {
        m->avail = v;
        m->avail_ok = true;
    } else if (strcmp(line, "MemFree") == 0 || strcmp(line, "Buffers") == 0 ||
               strcmp(line, "Cached") == 0) {
        if (add_u64(m->free_ish, v, &m->free_ish) && strcmp(line, "MemFree") == 0)
            m->free_ok = true;
    }
    return true;
}

/* ---- /proc/loadavg ---- */

struct load_read {
    bool ok;
    double l[3];
};

static bool loadavg_line(void *ctx, char *line)
{
    struct load_read *l = ctx;
    char *p = line;
    for (int i = 0; i < 3; i++) {
        if (!parse_fixed(&p, &l->l[i])) return false;
        if (*p != '\0' && !is_blank(*p)) return false;
    }
    l->ok = true;
    return false;
}

/* ---- /proc/net/dev ---- */

struct net_read {
    bool any; /* at least one well-formed interface line, lo included */
    uint64_t rx, tx;
};

static bool netdev_line(void *ctx, char *line)
{
    struct net_read *nr = ctx;
    /* The two header lines have no ':'; interface names cannot contain one. */
    char *colon = strchr(line, ':');
    if (!colon) return true;
    *colon = '\0';
    char *name = skip_blank(line);
    char *e = colon;
    while (e > name && is_blank(e[-1]))
        *--e = '\0';
    if (*name == '\0') return true;

    /* rx: bytes packets errs drop fifo frame compressed multicast, then tx bytes. */
    uint64_t f[9];
    char *p = colon + 1;
    for (int i = 0; i < 9; i++)
        if (!parse_u64(&p, &f[i])) return true;
    nr->any = true;
    if (strcmp(name, "lo") == 0) return true;
    /* Sums saturate rather than wrap: a wrapped sum would look like a reset. */
    if (!add_u64(nr->rx, f[0], &nr->rx)) nr->rx = UINT64_MAX;
    if (!add_u64(nr->tx, f[8], &nr->tx)) nr->tx = UINT64_MAX;
    return true;
}

/* ---- sampler ---- */

void hoststats_init(struct hoststats *h, const char *proc_root)
{
    memset(h, 0, sizeof *h);
    h->proc_root = proc_root ? proc_root : "/proc";
}

static double clamp_pct(double v)
{
    if (!(v > 0)) /* also catches NaN */
        return 0;
    return v > 100 ? 100 : v;
}

static double rate(uint64_t now, uint64_t prev, uint64_t dt_ms)
{
    if (dt_ms == 0 || now < prev) return 0;
    return (double)(now - prev) * 1000.0 / (double)dt_ms;
}

void hoststats_sample(struct hoststats *h, uint64_t now_ms, struct hoststats_sample *out)
{
    const char *root = h->proc_root ? h->proc_root : "/proc";
    bool ok = true;
    out->taken_ms = now_ms;

    /* Both baselines must exist before any delta is trusted; otherwise the first delta
     * would be "since boot" rather than "since the last sample". */
    bool primed = h->primed;

    struct cpu_read c = {0};
    if (for_each_line(root, "stat", stat_line, &c) && c.found) {
        out->cpu_percent = 0;
        if (primed && c.total > h->cpu_total && c.busy >= h->cpu_busy)
            out->cpu_percent = clamp_pct((double)(c.busy - h->cpu_busy) * 100.0 /
                                         (double)(c.total - h->cpu_total));
        h->cpu_busy = c.busy;
        h->cpu_total = c.total;
    } else {
        ok = false;
    }

    struct mem_read m = {0};
    bool mem_read = for_each_line(root, "meminfo", meminfo_line, &m);
    /* Kernels before 3.14 lack MemAvailable; free + buffers + cache is the usual
     * stand-in. */
    if (mem_read && m.total_ok && m.total > 0 && (m.avail_ok || m.free_ok)) {
        uint64_t avail = m.avail_ok ? m.avail : m.free_ish;
        out->mem_total_kib = m.total;
        out->mem_available_kib = avail;
        out->mem_used_percent =
            avail >= m.total ? 0 : clamp_pct((double)(m.total - avail) * 100.0 / (double)m.total);
    } else {
        ok = false;
    }

    struct load_read l = {0};
    if (for_each_line(root, "loadavg", loadavg_line, &l) && l.ok) {
        out->load1 = l.l[0];
        out->load5 = l.l[1];
        out->load15 = l.l[2];
    } else {
        ok = false;
    }

    struct net_read nr = {0};
    bool net_ok = for_each_line(root, "net/dev", netdev_line, &nr) && nr.any;
    if (net_ok) {
        out->net_rx_bytes = nr.rx;
        out->net_tx_bytes = nr.tx;
        out->net_rx_bytes_per_s = 0;
        out->net_tx_bytes_per_s = 0;
        if (primed && now_ms > h->last_ms) {
            out->net_rx_bytes_per_s = rate(nr.rx, h->rx, now_ms - h->last_ms);
            out->net_tx_bytes_per_s = rate(nr.tx, h->tx, now_ms - h->last_ms);
        }
        h->rx = nr.rx;
        h->tx = nr.tx;
        /* last_ms dates the network baseline only (CPU deltas are in jiffies), so it
         * moves only when that baseline does. */
        h->last_ms = now_ms;
    } else {
        ok = false;
    }

    /* Primed once both delta sources have a baseline; a later failure of one keeps its
     * old baseline, which stays valid. */
    if (c.found && net_ok) h->primed = true;
    out->ok = ok;
}

/* ---- JSON ---- */

struct jbuf {
    char *p;
    size_t cap, len;
    bool full;
};

static void jput(struct jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jput(struct jbuf *j, const char *fmt, ...)
{
    if (j->full) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(j->p + j->len, j->cap - j->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= j->cap - j->len) {
        j->full = true;
        return;
    }
    j->len += (size_t)n;
}

/* JSON has no NaN or Infinity; a bad double must not make the whole message invalid. */
static double json_num(double v)
{
    return isfinite(v) ? v : 0;
}

size_t hoststats_json(const struct hoststats_sample *s, char *buf, size_t cap)
{
    if (!buf || cap == 0) return 0;
    struct jbuf j = {buf, cap, 0, false};
    jput(&j, "{\"cpu_percent\":%.2f", json_num(s->cpu_percent));
    jput(&j, ",\"memory\":{\"total_kib\":%" PRIu64 ",\"available_kib\":%" PRIu64, s->mem_total_kib,
         s->mem_available_kib);
    jput(&j, ",\"used_percent\":%.2f}", json_num(s->mem_used_percent));
    jput(&j, ",\"load\":{\"1m\":%.2f,\"5m\":%.2f,\"15m\":%.2f}", json_num(s->load1),
         json_num(s->load5), json_num(s->load15));
    jput(&j, ",\"network\":{\"rx_bytes\":%" PRIu64 ",\"tx_bytes\":%" PRIu64, s->net_rx_bytes,
         s->net_tx_bytes);
    jput(&j, ",\"rx_bytes_per_s\":%.2f,\"tx_bytes_per_s\":%.2f}}", json_num(s->net_rx_bytes_per_s),
         json_num(s->net_tx_bytes_per_s));
    if (j.full) {
        buf[0] = '\0';
        return 0;
    }
    return j.len;
}
