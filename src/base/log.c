/* Logging core. Formats a whole line into a stack buffer and writes it with a single
 * write(2) so that concurrent threads never interleave partial lines; a line longer
 * than the buffer is truncated rather than split. Timestamps are UTC, RFC 3339 with
 * milliseconds. JSON mode rewrites the logfmt key=value pairs into JSON members, so
 * call sites stay format-agnostic. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
static int log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_configure(int min_level, int json)
{
    log_min_level = min_level;
    log_json = json;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i <= LOG_OFF; i++)
        if (strcmp(s, level_names[i]) == 0) return i;
    if (strcmp(s, "warning") == 0) return LOG_WARN;
    return -1;
}

/* Appends with bounds; returns the new length, never past cap-1. */
static size_t put(char *b, size_t n, size_t cap, const char *s, size_t len)
{
    if (n >= cap - 1) return n;
    if (len > cap - 1 - n) len = cap - 1 - n;
    memcpy(b + n, s, len);
    return n + len;
}

static size_t put_json_str(char *b, size_t n, size_t cap, const char *s, size_t len)
{
    n = put(b, n, cap, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = put(b, n, cap, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            n = put(b, n, cap, esc, 6);
        } else {
            n = put(b, n, cap, (const char *)&s[i], 1);
        }
    }
    return put(b, n, cap, "\"", 1);
}

/* Converts logfmt pairs (values optionally double-quoted with \" escapes) to JSON
 * members. A malformed pair is kept as a string value rather than dropped. */
static size_t kv_to_json(char *b, size_t n, size_t cap, const char *kv)
{
    const char *p = kv;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p) break;
        const char *k = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t klen = (size_t)(p - k);
        n = put(b, n, cap, ",", 1);
        n = put_json_str(b, n, cap, k, klen);
        n = put(b, n, cap, ":", 1);
        if (*p != '=') {
            n = put(b, n, cap, "true", 4);
            continue;
        }
        p++;
        char val[1024];
        size_t vlen = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (vlen < sizeof val) val[vlen++] = *p;
                p++;
            }
            if (*p == '"') p++;
        } else {
            while (*p && *p != ' ') {
                if (vlen < sizeof val) val[vlen++] = *p;
                p++;
            }
        }
        n = put_json_str(b, n, cap, val, vlen);
    }
    return n;
}

void log_write(int level, const char *msg, const char *kv_fmt, ...)
{
    char kv[2048];
    kv[0] = 0;
    if (kv_fmt && *kv_fmt) {
        va_list ap;
        va_start(ap, kv_fmt);
        vsnprintf(kv, sizeof kv, kv_fmt, ap);
        va_end(ap);
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
    const char *lv = level_names[level < 0 ? 0 : level > LOG_ERROR ? LOG_ERROR : level];

    char line[4096];
    size_t n = 0, cap = sizeof line - 1; /* keep room for the newline */
    if (log_json) {
        char head[128];
        int h = snprintf(head, sizeof head, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, lv);
        n = put(line, n, cap, head, (size_t)h);
        n = put_json_str(line, n, cap, msg, strlen(msg));
        n = kv_to_json(line, n, cap, kv);
        n = put(line, n, cap, "}", 1);
    } else {
        char q[512];
        int h = snprintf(line, cap, "ts=%s level=%s msg=%s", when, lv,
                         log_quote(q, sizeof q, msg, strlen(msg)));
        n = h < 0 ? 0 : (size_t)h < cap ? (size_t)h : cap - 1;
        if (kv[0]) {
            n = put(line, n, cap, " ", 1);
            n = put(line, n, cap, kv, strlen(kv));
        }
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nothing sensible to do when stderr itself fails */
}

const char *log_quote(char *out, size_t cap, const char *s, size_t len)
{
    int needs = len == 0;
    for (size_t i = 0; i < len && !needs; i++) {
        unsigned char c = (unsigned char)s[i];
        needs = c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f;
    }
    if (!needs) {
        size_t m = len < cap - 1 ? len : cap - 1;
        memcpy(out, s, m);
        out[m] = 0;
        return out;
    }
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len && n + 6 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = 0;
    return out;
}
