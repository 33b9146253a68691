/* Tests for the /proc sampler: a fake proc root in a temporary directory lets every
 * figure be checked exactly across two samples (CPU share, network rates, memory,
 * load), including the edges that a live host rarely shows on demand: missing files,
 * garbage, counters going backwards, lines longer than the read buffer, old kernels.
 * The JSON is checked by parsing it with jansson. One test reads the real /proc. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "services/hoststats.h"

#define NETDEV_HEAD                                                                                \
    "Inter-|   Receive                                                |  Transmit\n"               \
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "     \
    "drop fifo colls carrier compressed\n"

#define MEMINFO_OK                                                                                 \
    "MemTotal:       16000000 kB\n"                                                                \
    "MemFree:         2000000 kB\n"                                                                \
    "MemAvailable:    4000000 kB\n"                                                                \
    "Buffers:          100000 kB\n"                                                                \
    "Cached:          1000000 kB\n"

struct fx {
    char dir[64];
};

static void put(const struct fx *f, const char *rel, const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, rel);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void put_s(const struct fx *f, const char *rel, const char *text)
{
    put(f, rel, text, strlen(text));
}

static void drop(const struct fx *f, const char *rel)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, rel);
    assert_int_equal(unlink(path), 0);
}

/* A plausible host: 4 CPU fields beyond the 8 counted ones (guest, guest_nice) are
 * non-zero so that counting them would show up in the percentages. */
static void put_all(const struct fx *f)
{
    put_s(f, "stat",
          "cpu  100 0 100 700 100 0 0 0 40 0\n"
          "cpu0 50 0 50 350 50 0 0 0 20 0\n"
          "intr 12345 1 2 3\n");
    put_s(f, "meminfo", MEMINFO_OK);
    put_s(f, "loadavg", "0.50 0.40 0.30 1/123 4567\n");
    put_s(f, "net/dev",
          NETDEV_HEAD "    lo:    5000      50    0    0    0     0          0         0     5000  "
                      "    50    0    0    0     0       0          0\n"
                      "  eth0:    1000      10    0    0    0     0          0         0     2000  "
                      "    20    0    0    0     0       0          0\n"
                      " wlan0:     500       5    0    0    0     0          0         0        0  "
                      "     0    0    0    0     0       0          0\n");
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/hoststats-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    char net[128];
    snprintf(net, sizeof net, "%s/net", f->dir);
    if (mkdir(net, 0700) != 0) return -1;
    put_all(f);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    int rc = nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static void sample(struct hoststats *h, uint64_t ms, struct hoststats_sample *s)
{
    hoststats_sample(h, ms, s);
}

/* ---- exact figures ---- */

static void test_first_sample(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s);
    assert_true(s.ok);
    assert_true(s.cpu_percent == 0);
    assert_int_equal(s.mem_total_kib, 16000000);
    assert_int_equal(s.mem_available_kib, 4000000);
    assert_true(s.mem_used_percent == 75.0);
    assert_true(s.load1 == 0.5 && s.load5 == 0.4 && s.load15 == 0.3);
    assert_int_equal(s.net_rx_bytes, 1500); /* lo's 5000 left out */
    assert_int_equal(s.net_tx_bytes, 2000);
    assert_true(s.net_rx_bytes_per_s == 0 && s.net_tx_bytes_per_s == 0);
    assert_int_equal(s.taken_ms, 1000);
}

static void test_two_samples(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s);

    /* total 1000 -> 2000 (guest +1000 must not count); busy = total - idle - iowait:
     * 200 -> 500, so 300 of 1000 jiffies busy. */
    put_s(f, "stat", "cpu  200 0 200 1300 200 50 50 0 1040 0\n");
    put_s(f, "meminfo", "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n");
    put_s(f, "loadavg", "1.25 0.75 0.05 2/130 4600\n");
    put_s(f, "net/dev",
          NETDEV_HEAD "    lo: 9999999 0 0 0 0 0 0 0 9999999 0 0 0 0 0 0 0\n"
                      "  eth0: 3000 0 0 0 0 0 0 0 2500 0 0 0 0 0 0 0\n"
                      " wlan0: 1500 0 0 0 0 0 0 0 500 0 0 0 0 0 0 0\n");
    sample(&h, 3000, &s);
    assert_true(s.ok);
    assert_true(s.cpu_percent == 30.0);
    assert_int_equal(s.mem_total_kib, 8000000);
    assert_int_equal(s.mem_available_kib, 6000000);
    assert_true(s.mem_used_percent == 25.0);
    assert_true(s.load1 == 1.25 && s.load5 == 0.75 && s.load15 == 0.05);
    assert_int_equal(s.net_rx_bytes, 4500);
    assert_int_equal(s.net_tx_bytes, 3000);
    /* 3000 rx bytes and 1000 tx bytes over 2 s */
    assert_true(s.net_rx_bytes_per_s == 1500.0);
    assert_true(s.net_tx_bytes_per_s == 500.0);

    /* Third sample measures against the second, not the first. */
    put_s(f, "stat", "cpu  200 0 200 2300 200 50 50 0 1040 0\n");
    put_s(f, "net/dev",
          NETDEV_HEAD "  eth0: 3250 0 0 0 0 0 0 0 2500 0 0 0 0 0 0 0\n"
                      " wlan0: 1500 0 0 0 0 0 0 0 500 0 0 0 0 0 0 0\n");
    sample(&h, 3500, &s);
    assert_true(s.ok);
    assert_true(s.cpu_percent == 0.0); /* all idle */
    assert_true(s.net_rx_bytes_per_s == 500.0);
    assert_true(s.net_tx_bytes_per_s == 0.0);
}

static void test_all_busy_and_still_clock(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s);
    /* Same files, same time: nothing moved, so no division by zero and no rate. */
    sample(&h, 1000, &s);
    assert_true(s.ok);
    assert_true(s.cpu_percent == 0);
    assert_true(s.net_rx_bytes_per_s == 0 && s.net_tx_bytes_per_s == 0);

    put_s(f, "stat", "cpu  400 100 200 700 100 100 100 100 40 0\n");
    sample(&h, 2000, &s);
    assert_true(s.cpu_percent == 100.0);
}

static void test_lo_only(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    put_s(f, "net/dev", NETDEV_HEAD "    lo: 123 1 0 0 0 0 0 0 456 1 0 0 0 0 0 0\n");
    hoststats_init(&h, f->dir);
    sample(&h, 10, &s);
    assert_true(s.ok);
    assert_int_equal(s.net_rx_bytes, 0);
    assert_int_equal(s.net_tx_bytes, 0);
    /* Names that merely start or end with "lo" are real interfaces. */
    put_s(f, "net/dev",
          NETDEV_HEAD "    lo: 123 1 0 0 0 0 0 0 456 1 0 0 0 0 0 0\n"
                      "   lo0: 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n"
                      " vlo: 10 0 0 0 0 0 0 0 20 0 0 0 0 0 0 0\n");
    sample(&h, 20, &s);
    assert_int_equal(s.net_rx_bytes, 11);
    assert_int_equal(s.net_tx_bytes, 22);
}

static void test_odd_whitespace(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    put_s(f, "stat", "cpu\t100\t0  100 700\t100 0 0 0\r\ncpu0 1 1 1 1\n");
    put_s(f, "meminfo", "MemTotal:\t1000 kB\r\nMemAvailable:250\n");
    put_s(f, "loadavg", "0.5\t2 10.125 1/1 1"); /* no trailing newline */
    /* Old kernels printed "eth0:123" with no space after the colon. */
    put_s(f, "net/dev",
          NETDEV_HEAD "eth0:100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n"
                      "\t eth1 :\t1\t0 0 0 0 0 0 0\t2 0 0 0 0 0 0 0");
    hoststats_init(&h, f->dir);
    sample(&h, 0, &s);
    assert_true(s.ok);
    assert_int_equal(s.mem_total_kib, 1000);
    assert_int_equal(s.mem_available_kib, 250);
    assert_true(s.mem_used_percent == 75.0);
    assert_true(s.load1 == 0.5 && s.load5 == 2.0 && s.load15 == 10.125);
    assert_int_equal(s.net_rx_bytes, 101);
    assert_int_equal(s.net_tx_bytes, 202);

    put_s(f, "stat", "cpu  150 0 150 750 150 0 0 0\n");
    sample(&h, 100, &s);
    assert_true(s.ok);
    assert_true(s.cpu_percent == 50.0); /* busy 200 -> 300 of total 1000 -> 1200 */
}

static void test_old_kernel_formats(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    /* 2.4: four CPU fields; before 3.14: no MemAvailable. */
    put_s(f, "stat", "cpu 10 10 10 70\n");
    put_s(f, "meminfo", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n");
    hoststats_init(&h, f->dir);
    sample(&h, 0, &s);
    assert_true(s.ok);
    assert_int_equal(s.mem_available_kib, 400);
    assert_true(s.mem_used_percent == 60.0);
    put_s(f, "stat", "cpu 20 20 20 140\n");
    sample(&h, 1000, &s);
    assert_true(s.cpu_percent == 30.0);
}

static void test_memory_edges(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    /* More available than total (seen in some containers): used is 0, not negative. */
    put_s(f, "meminfo", "MemTotal: 1000 kB\nMemAvailable: 2000 kB\n");
    sample(&h, 0, &s);
    assert_true(s.ok);
    assert_true(s.mem_used_percent == 0);
    /* A zero total cannot be divided by. */
    put_s(f, "meminfo", "MemTotal: 0 kB\nMemAvailable: 0 kB\n");
    sample(&h, 0, &s);
    assert_false(s.ok);
    /* Neither MemAvailable nor MemFree. */
    put_s(f, "meminfo", "MemTotal: 1000 kB\nCached: 5 kB\n");
    sample(&h, 0, &s);
    assert_false(s.ok);
}

/* ---- failures ---- */

static void test_missing_root(void **state)
{
    (void)state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, "/nonexistent/hoststats-test");
    sample(&h, 0, &s);
    assert_false(s.ok);
    sample(&h, 1000, &s);
    assert_false(s.ok);
    assert_int_equal(s.mem_total_kib, 0);
    assert_int_equal(s.taken_ms, 1000);
}

static void test_missing_file_keeps_fields(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s);
    assert_true(s.ok);

    drop(f, "meminfo");
    drop(f, "loadavg");
    put_s(f, "stat", "cpu  200 0 200 1300 200 50 50 0 40 0\n");
    sample(&h, 2000, &s);
    assert_false(s.ok);
    /* The readable sources still report; the others keep what *out held. */
    assert_true(s.cpu_percent == 30.0);
    assert_int_equal(s.mem_total_kib, 16000000);
    assert_true(s.mem_used_percent == 75.0);
    assert_true(s.load1 == 0.5);
    assert_int_equal(s.net_rx_bytes, 1500);
}

static void test_failed_source_keeps_baseline(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s); /* rx 1500, tx 2000 */

    drop(f, "net/dev");
    drop(f, "stat");
    sample(&h, 2000, &s);
    assert_false(s.ok);

    put_s(f, "net/dev", NETDEV_HEAD "eth0: 5500 0 0 0 0 0 0 0 6000 0 0 0 0 0 0 0\n");
    put_s(f, "stat", "cpu  200 0 200 1300 200 50 50 0 40 0\n");
    sample(&h, 5000, &s);
    assert_true(s.ok);
    /* Over the 4 s since the last good read, not the 3 s since the failed one. */
    assert_true(s.net_rx_bytes_per_s == 1000.0);
    assert_true(s.net_tx_bytes_per_s == 1000.0);
    assert_true(s.cpu_percent == 30.0);
}

static void test_first_delta_needs_both_baselines(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    drop(f, "net/dev");
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s);
    assert_false(s.ok);
    /* net/dev appears only now: its counters since boot are no rate. */
    put_all(f);
    sample(&h, 2000, &s);
    assert_true(s.ok);
    assert_true(s.net_rx_bytes_per_s == 0 && s.net_tx_bytes_per_s == 0);
}

static void test_counters_backwards(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 1000, &s); /* rx 1500, tx 2000 */

    /* wlan0 vanished: rx sum drops; tx still rose. */
    put_s(f, "net/dev", NETDEV_HEAD "  eth0: 1200 0 0 0 0 0 0 0 3000 0 0 0 0 0 0 0\n");
    /* CPU counters going backwards (a hot-unplugged CPU) give 0, not a huge share. */
    put_s(f, "stat", "cpu  50 0 50 300 50 0 0 0\n");
    sample(&h, 2000, &s);
    assert_true(s.ok);
    assert_int_equal(s.net_rx_bytes, 1200);
    assert_true(s.net_rx_bytes_per_s == 0);
    assert_true(s.net_tx_bytes_per_s == 1000.0);
    assert_true(s.cpu_percent == 0);

    /* The lowered counters are the new baseline. */
    put_s(f, "net/dev", NETDEV_HEAD "  eth0: 1700 0 0 0 0 0 0 0 3000 0 0 0 0 0 0 0\n");
    put_s(f, "stat", "cpu  100 0 50 350 50 0 0 0\n");
    sample(&h, 3000, &s);
    assert_true(s.net_rx_bytes_per_s == 500.0);
    assert_true(s.cpu_percent == 50.0);
}

static void test_garbage(void **state)
{
    struct fx *f = *state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    static const char *const bad_stat[] = {
        "",
        "cpu\n",
        "cpu 1 2 3\n",
        "cpu -1 -2 -3 -4\n",
        "cpu 99999999999999999999999 1 1 1\n",
        "cpu 18446744073709551615 18446744073709551615 1 1\n", /* sum overflows */
        "cpux 1 2 3 4\n",
        "cpu0 1 2 3 4\n",
        "xyz\n\n\n",
        "cpu +1 +2 +3 +4\n",
    };
    static const char *const bad_mem[] = {
        "",
        "MemTotal\n",
        "MemTotal: -5 kB\nMemAvailable: 1 kB\n",
        ":::\n",
        "MemTotal: kB\nMemAvailable: 1\n",
        "MemTotal: 99999999999999999999999 kB\nMemFree: 1\n",
    };
    static const char *const bad_load[] = {
        "",
        "0.5 0.4\n",
        "a b c\n",
        "-1.0 0.4 0.3\n",
        "0.5,0.4,0.3\n",
        "nan inf inf\n",
        "1e3 1 1\n",
        "0.5 0.4 0.3x 1/1 1\n",
    };
    static const char *const bad_net[] = {
        "",
        NETDEV_HEAD,
        "eth0: 1 2 3\n",
        ": 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n",
        "eth0: -1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n",
        "eth0 1 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0\n",
    };
    hoststats_init(&h, f->dir);
    for (size_t i = 0; i < sizeof bad_stat / sizeof *bad_stat; i++) {
        put_all(f);
        put_s(f, "stat", bad_stat[i]);
        sample(&h, i, &s);
        if (s.ok) fail_msg("stat accepted: %s", bad_stat[i]);
    }
    for (size_t i = 0; i < sizeof bad_mem / sizeof *bad_mem; i++) {
        put_all(f);
        put_s(f, "meminfo", bad_mem[i]);
        sample(&h, i, &s);
        if (s.ok) fail_msg("meminfo accepted: %s", bad_mem[i]);
    }
    for (size_t i = 0; i < sizeof bad_load / sizeof *bad_load; i++) {
        put_all(f);
        put_s(f, "loadavg", bad_load[i]);
        sample(&h, i, &s);
        if (s.ok) fail_msg("loadavg accepted: %s", bad_load[i]);
    }
    for (size_t i = 0; i < sizeof bad_net / sizeof *bad_net; i++) {
        put_all(f);
        put_s(f, "net/dev", bad_net[i]);
        sample(&h, i, &s);
        if (s.ok) fail_msg("net/dev accepted: %s", bad_net[i]);
    }
    /* Embedded NULs end a field, not the parser. */
    put_all(f);
    put(f, "loadavg", "0.5\0 0.4 0.3\n", 13);
    sample(&h, 0, &s);
    assert_false(s.ok);
}

/* Random bytes into every file, many times: only ASan/UBSan can fail this. */
static void test_random_bytes(void **state)
{
    struct fx *f = *state;
    static const char *const files[] = {"stat", "meminfo", "loadavg", "net/dev"};
    static const char alphabet[] = "0123456789 \t\n:.-cpulo\r";
    char buf[9000];
    struct hoststats h;
    struct hoststats_sample s = {0};
    srand(12345);
    hoststats_init(&h, f->dir);
    for (int round = 0; round < 300; round++) {
        for (size_t k = 0; k < 4; k++) {
            size_t n = (size_t)rand() % sizeof buf;
            for (size_t i = 0; i < n; i++)
                buf[i] = round % 2 ? (char)rand() : alphabet[rand() % (sizeof alphabet - 1)];
            put(f, files[k], buf, n);
        }
        sample(&h, (uint64_t)round * 10, &s);
        assert_true(s.cpu_percent >= 0 && s.cpu_percent <= 100);
        assert_true(s.mem_used_percent >= 0 && s.mem_used_percent <= 100);
        char json[1024];
        assert_true(hoststats_json(&s, json, sizeof json) > 0);
    }
}

/* Lines longer than the read buffer are skipped whole, and lines split across reads
 * are joined: a long junk line first, then many interfaces. */
static void test_long_files(void **state)
{
    struct fx *f = *state;
    size_t cap = 200000, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, NETDEV_HEAD "junk0:");
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(text + len, cap - len, " 7");
    text[len++] = '\n';
    uint64_t rx = 0, tx = 0;
    for (int i = 0; i < 1000; i++) {
        len += (size_t)snprintf(text + len, cap - len,
                                "veth%04d: %d 1 0 0 0 0 0 0 %d 1 0 0 0 0 0 0\n", i, i, 2 * i);
        rx += (uint64_t)i;
        tx += 2 * (uint64_t)i;
    }
    assert_true(len < cap);
    put(f, "net/dev", text, len);

    /* /proc/stat's "intr" line runs to many kilobytes; the cpu line comes first. */
    len = (size_t)snprintf(text, cap, "cpu  100 0 100 700 100 0 0 0\nintr");
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, " %d", i);
    text[len++] = '\n';
    put(f, "stat", text, len);

    /* A junk line over 4 KiB ahead of the fields that matter. */
    memset(text, 'x', 10000);
    len = 10000;
    len += (size_t)snprintf(text + len, cap - len, "\n" MEMINFO_OK);
    put(f, "meminfo", text, len);
    free(text);

    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, f->dir);
    sample(&h, 0, &s);
    assert_true(s.ok);
    assert_int_equal(s.net_rx_bytes, rx);
    assert_int_equal(s.net_tx_bytes, tx);
    assert_int_equal(s.mem_total_kib, 16000000);
}

/* ---- JSON ---- */

static void test_json(void **state)
{
    (void)state;
    struct hoststats_sample s = {
        .ok = true,
        .cpu_percent = 12.346,
        .mem_total_kib = 16000000,
        .mem_available_kib = 4000000,
        .mem_used_percent = 75,
        .load1 = 0.5,
        .load5 = 0.4,
        .load15 = 0.3,
        .net_rx_bytes = UINT64_MAX,
        .net_tx_bytes = 2000,
        .net_rx_bytes_per_s = 1500.126,
        .net_tx_bytes_per_s = 1.0 / 3,
    };
    char buf[512];
    size_t n = hoststats_json(&s, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(strlen(buf), n);
    assert_string_equal(buf, "{\"cpu_percent\":12.35,\"memory\":{\"total_kib\":16000000,"
                             "\"available_kib\":4000000,\"used_percent\":75.00},"
                             "\"load\":{\"1m\":0.50,\"5m\":0.40,\"15m\":0.30},"
                             "\"network\":{\"rx_bytes\":18446744073709551615,"
                             "\"tx_bytes\":2000,\"rx_bytes_per_s\":1500.13,"
                             "\"tx_bytes_per_s\":0.33}}");

    /* jansson refuses integers above INT64_MAX, though they are valid JSON. */
    s.net_rx_bytes = 1500;
    n = hoststats_json(&s, buf, sizeof buf);
    json_error_t err;
    json_t *root = json_loads(buf, JSON_REJECT_DUPLICATES, &err);
    if (!root) fail_msg("invalid JSON (%s): %s", err.text, buf);
    assert_true(json_is_object(root));
    assert_true(fabs(json_number_value(json_object_get(root, "cpu_percent")) - 12.35) < 1e-9);
    json_t *mem = json_object_get(root, "memory");
    assert_int_equal(json_integer_value(json_object_get(mem, "total_kib")), 16000000);
    assert_int_equal(json_integer_value(json_object_get(mem, "available_kib")), 4000000);
    assert_true(json_number_value(json_object_get(mem, "used_percent")) == 75.0);
    json_t *load = json_object_get(root, "load");
    assert_true(json_number_value(json_object_get(load, "15m")) == 0.3);
    json_t *net = json_object_get(root, "network");
    assert_int_equal(json_integer_value(json_object_get(net, "tx_bytes")), 2000);
    assert_int_equal(json_integer_value(json_object_get(net, "rx_bytes")), 1500);
    assert_true(json_number_value(json_object_get(net, "tx_bytes_per_s")) == 0.33);
    json_decref(root);

    /* Every cap short of length + NUL fails cleanly and writes nothing past cap. */
    for (size_t cap = 0; cap <= n; cap++) {
        char small[512];
        memset(small, '#', sizeof small);
        assert_int_equal(hoststats_json(&s, small, cap), 0);
        for (size_t i = cap; i < sizeof small; i++)
            assert_int_equal(small[i], '#');
        if (cap > 0) assert_int_equal(small[0], '\0');
    }
    assert_int_equal(hoststats_json(&s, buf, n + 1), n);
    assert_int_equal(hoststats_json(&s, NULL, 100), 0);
}

static void test_json_non_finite(void **state)
{
    (void)state;
    struct hoststats_sample s = {0};
    s.cpu_percent = NAN;
    s.load1 = INFINITY;
    s.net_tx_bytes_per_s = -INFINITY;
    char buf[512];
    assert_true(hoststats_json(&s, buf, sizeof buf) > 0);
    json_t *root = json_loads(buf, 0, NULL);
    if (!root) fail_msg("invalid JSON: %s", buf);
    assert_true(json_number_value(json_object_get(root, "cpu_percent")) == 0);
    json_decref(root);
}

/* ---- the real host ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_real_proc(void **state)
{
    (void)state;
    struct hoststats h;
    struct hoststats_sample s = {0};
    hoststats_init(&h, "/proc");
    hoststats_sample(&h, mono_ms(), &s);
    assert_true(s.ok);
    struct timespec pause = {0, 200 * 1000 * 1000};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
    hoststats_sample(&h, mono_ms(), &s);
    assert_true(s.ok);
    assert_true(s.mem_total_kib > 0);
    assert_true(s.mem_available_kib <= s.mem_total_kib);
    assert_true(s.cpu_percent >= 0 && s.cpu_percent <= 100);
    assert_true(s.load1 >= 0);
    assert_true(s.net_rx_bytes_per_s >= 0 && s.net_tx_bytes_per_s >= 0);
    char buf[512];
    size_t n = hoststats_json(&s, buf, sizeof buf);
    assert_true(n > 0);
    json_t *root = json_loads(buf, 0, NULL);
    assert_non_null(root);
    json_decref(root);
    print_message("real /proc: %s\n", buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_sample, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_samples, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_busy_and_still_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lo_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_whitespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_kernel_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_edges, setup, teardown),
        cmocka_unit_test(test_missing_root),
        cmocka_unit_test_setup_teardown(test_missing_file_keeps_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_source_keeps_baseline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_delta_needs_both_baselines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_backwards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_files, setup, teardown),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_non_finite),
        cmocka_unit_test(test_real_proc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
