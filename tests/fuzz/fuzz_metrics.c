/* Fuzzes the Prometheus text writer: arbitrary counter values (from the input) must
 * render to text in which every line is a HELP, TYPE or UNIT line or a sample of the
 * family just described, with histogram buckets that never decrease and a +Inf bucket
 * equal to _count; and prom_escape of the input, read back by the format's rules, must
 * give the input again. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/prometheus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_escape(const uint8_t *data, size_t size, bool label)
{
    char *in = malloc(size + 1), *out = malloc(2 * size + 1), *back = malloc(size + 1);
    if (!in || !out || !back) abort();
    size_t n = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i]) in[n++] = (char)data[i]; /* a C string: no NUL inside */
    in[n] = 0;
    size_t len = prom_escape(out, 2 * size + 1, in, label);
    if (len != strlen(out)) abort();
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\n' || (label && out[i] == '"')) abort(); /* left unescaped */
        if (out[i] != '\\') {
            back[k++] = out[i];
            continue;
        }
        char c = out[++i];
        back[k++] = c == 'n' ? '\n' : c; /* \\ and \" */
        if (c != 'n' && c != '\\' && !(label && c == '"')) abort();
    }
    back[k] = 0;
    if (strcmp(back, in) != 0) abort();
    free(in);
    free(out);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_escape(data, size, true);
    check_escape(data, size, false);

    struct metrics_source src;
    memset(&src, 0, sizeof src);
    memcpy(&src, data, size < sizeof src ? size : sizeof src);
    /* Keep bucket sums from wrapping: a real server cannot count 2^64 frames. */
    for (size_t i = 0; i < STATS_QDEPTH_BUCKETS; i++)
        src.stats.hub_qdepth_buckets[i] &= 0xffffffffffffull;
    for (size_t i = 0; i < STATS_LATENCY_BUCKETS; i++)
        src.stats.hub_latency_buckets[i] &= 0xffffffffffffull;
    for (size_t i = 0; i < METRICS_REDIS_RTT_BUCKETS; i++)
        src.redis_rtt_buckets[i] &= 0xffffffffffffull;
    size_t len = 0;
    char *text = prom_render(&src, &len);
    if (!text) return 0;
    if (len == 0 || strlen(text) != len || text[len - 1] != '\n') abort();
    char family[128] = "";
    unsigned long long prev = 0;
    int helps = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            size_t k = strcspn(line + 7, " ");
            if (k == 0 || k >= sizeof family) abort();
            memcpy(family, line + 7, k);
            family[k] = 0;
            helps++;
            prev = 0;
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0 || strncmp(line, "# UNIT ", 7) == 0) {
            if (strncmp(line + 7, family, strlen(family)) != 0) abort();
            continue;
        }
        size_t fl = strlen(family);
        if (!fl || strncmp(line, family, fl) != 0) abort();
        const char *rest = line + fl, *sp = strrchr(line, ' ');
        if (!sp || sp[1] == 0) abort();
        char *end;
        if (strncmp(rest, "_bucket{", 8) == 0) {
            unsigned long long v = strtoull(sp + 1, &end, 10);
            if (*end || v < prev) abort();
            prev = v;
        } else if (strncmp(rest, "_count ", 7) == 0) {
            if (strtoull(sp + 1, &end, 10) != prev || *end) abort();
        } else if (strncmp(rest, "_sum ", 5) == 0) {
            (void)strtod(sp + 1, &end);
            if (*end) abort();
        } else if (*rest == ' ' || *rest == '{') {
            (void)strtoll(sp + 1, &end, 10);
            if (*end) abort();
        } else {
            abort();
        }
    }
    if (helps != (int)metrics_collected_count(&src)) abort();
    free(text);
    return 0;
}
