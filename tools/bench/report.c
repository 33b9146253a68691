/* wshub-bench figures: the server's CPU time and RSS read from /proc, the client's own
 * CPU, and the JSON line every mode ends with (built in one buffer, printed last). */
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

bool proc_cpu_s(long pid, double *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parens */
    if (!p) return false;
    p++;
    /* fields after the name start at 3 (state); utime is 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            *out = (double)(ut + st) / (double)g.clk_tck;
            return true;
        }
    }
    return false;
}

long proc_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static double client_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void cpu_mark(struct cpu_mark *m)
{
    m->t = now_ns();
    m->client = client_cpu_s();
    m->server_ok = O.server_pid && proc_cpu_s(O.server_pid, &m->server);
}

/* ------------------------------------------------------------------ JSON output */

static char jbuf[16384];
static size_t jlen;

BENCH_PRINTF(1, 2) void jcat(const char *fmt, ...)
{
    if (jlen >= sizeof jbuf) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(jbuf + jlen, sizeof jbuf - jlen, fmt, ap);
    va_end(ap);
    if (n > 0) jlen += (size_t)n;
    if (jlen > sizeof jbuf) jlen = sizeof jbuf;
}

static void jstr(const char *s)
{
    jcat("\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            jcat("\\%c", ch);
        else if (ch < 0x20)
            jcat("\\u%04x", ch);
        else
            jcat("%c", ch);
    }
    jcat("\"");
}

/* a number, or null when not finite */
void jnum(double v, int decimals)
{
    if (!isfinite(v))
        jcat("null");
    else
        jcat("%.*f", decimals, v);
}

void jhist_us(const struct bench_hist *h)
{
    jcat("{\"count\":%llu,\"p50\":", (unsigned long long)h->count);
    jnum((double)bench_hist_percentile(h, 50) / 1e3, 1);
    jcat(",\"p90\":");
    jnum((double)bench_hist_percentile(h, 90) / 1e3, 1);
    jcat(",\"p99\":");
    jnum((double)bench_hist_percentile(h, 99) / 1e3, 1);
    jcat(",\"p999\":");
    jnum((double)bench_hist_percentile(h, 99.9) / 1e3, 1);
    jcat(",\"max\":");
    jnum((double)h->max / 1e3, 1);
    jcat(",\"mean\":");
    jnum(bench_hist_mean(h) / 1e3, 1);
    jcat("}");
}

void print_hist_line(const char *label, const struct bench_hist *h)
{
    if (h->count == 0) {
        printf("  %-14s (no samples)\n", label);
        return;
    }
    printf("  %-14s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f, %llu "
           "samples)\n",
           label, (double)bench_hist_percentile(h, 50) / 1e3,
           (double)bench_hist_percentile(h, 90) / 1e3, (double)bench_hist_percentile(h, 99) / 1e3,
           (double)bench_hist_percentile(h, 99.9) / 1e3, (double)h->max / 1e3,
           bench_hist_mean(h) / 1e3, (unsigned long long)h->count);
}

/* The common tail of every JSON line and the human CPU/RSS lines. per_unit: the
 * count server CPU is divided by (0: not applicable); unit_key: its JSON name. */
void report_common(const struct cpu_mark *a, const struct cpu_mark *b, uint64_t per_unit,
                   const char *unit_key, const char *unit_label, bool ok)
{
    double window = (double)(b->t - a->t) / 1e9;
    double ccpu = b->client - a->client;
    bool scpu = a->server_ok && b->server_ok;
    double server = scpu ? b->server - a->server : NAN;
    long rss = O.server_pid ? proc_rss_kib(O.server_pid) : -1;
    double per = scpu && per_unit ? server * 1e6 / (double)per_unit : NAN;

    jcat(",\"server_cpu_s\":");
    jnum(server, 2);
    if (unit_key) {
        jcat(",\"%s\":", unit_key);
        jnum(per, 3);
    }
    jcat(",\"client_cpu_s\":");
    jnum(ccpu, 2);
    jcat(",\"client_cpu_pct\":");
    jnum(window > 0 ? ccpu * 100 / window : NAN, 1);
    jcat(",\"server_rss_kib\":");
    if (rss >= 0)
        jcat("%ld", rss);
    else
        jcat("null");
    jcat(",\"ok\":%s,\"error\":", ok ? "true" : "false");
    if (g.first_error[0])
        jstr(g.first_error);
    else if (interrupted)
        jstr("interrupted");
    else
        jcat("null");
    jcat("}");

    if (!O.json_only) {
        if (scpu) {
            printf("  server CPU     %.2f s (%.0f %% of one core)", server,
                   window > 0 ? server * 100 / window : 0.0);
            if (unit_key && per_unit) printf(", %.3f us %s", per, unit_label);
            printf("\n");
        }
        if (rss >= 0) printf("  server RSS     %ld KiB\n", rss);
        printf("  client CPU     %.2f s (%.0f %% of one core)\n", ccpu,
               window > 0 ? ccpu * 100 / window : 0.0);
        if (!ok) printf("  FAILED: %s\n", g.first_error[0] ? g.first_error : "see above");
        fflush(stdout);
    }
    fwrite(jbuf, 1, jlen, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

void json_begin(void)
{
    jlen = 0;
    jcat("{\"mode\":\"%s\",\"url\":", mode_names[O.mode]);
    jstr(O.url);
}
