/* Live host figures for the data stream: CPU use, memory, load averages and network
 * counters, read from /proc. A sampler keeps the previous reading so that CPU use and
 * network rates are computed over the interval between two samples.
 *
 * Sources: /proc/stat (first "cpu" line: user nice system idle iowait irq softirq
 * steal), /proc/meminfo (MemTotal, MemAvailable), /proc/loadavg, /proc/net/dev (sum of
 * every interface but "lo": rx/tx bytes). A file that cannot be read, or holds nothing
 * usable, leaves its fields in *out as they were (so zero *out before the first sample)
 * and sets `ok` false; nothing aborts. Its baseline is kept, so the next good read
 * measures over the longer interval.
 *
 * Ownership: caller-owned struct; no heap. Not thread-safe (one sampler per user). */
#ifndef WSHUB_SERVICES_HOSTSTATS_H
#define WSHUB_SERVICES_HOSTSTATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hoststats_sample {
    bool ok;            /* every source was read */
    double cpu_percent; /* busy share of all CPUs over the interval, 0..100 */
    uint64_t mem_total_kib, mem_available_kib;
    double mem_used_percent;
    double load1, load5, load15;
    uint64_t net_rx_bytes, net_tx_bytes;           /* counters since boot, all non-lo */
    double net_rx_bytes_per_s, net_tx_bytes_per_s; /* over the interval */
    uint64_t taken_ms;                             /* the caller's monotonic clock at sampling */
};

struct hoststats {
    uint64_t cpu_busy, cpu_total; /* previous /proc/stat totals (jiffies) */
    uint64_t rx, tx;              /* previous net counters */
    uint64_t last_ms;             /* when rx/tx were read */
    bool primed;                  /* both CPU and net baselines exist */
    const char *proc_root;        /* "/proc" normally; tests point it elsewhere */
};

void hoststats_init(struct hoststats *h, const char *proc_root);

/* Takes a sample at now_ms. The first one reports cpu_percent 0 and rates 0. */
void hoststats_sample(struct hoststats *h, uint64_t now_ms, struct hoststats_sample *out);

/* Writes the sample as compact JSON into buf, NUL-terminated, numbers with at most two
 * decimals:
 *   {"cpu_percent":..,"memory":{"total_kib":..,"available_kib":..,"used_percent":..},
 *    "load":{"1m":..,"5m":..,"15m":..},"network":{"rx_bytes":..,"tx_bytes":..,
 *    "rx_bytes_per_s":..,"tx_bytes_per_s":..}}
 * Returns the length without the NUL, or 0 (and buf empty) when cap is too small. */
size_t hoststats_json(const struct hoststats_sample *s, char *buf, size_t cap);

#endif
