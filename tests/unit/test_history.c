/* Unit tests for the stream store (history/history.h): positions and epochs, the ring
 * (size limit, consecutive reads, gaps), resume decisions, the memory cap's eviction
 * order and accounting, the sweep of unused streams, references to the very frames
 * appended, and the parsing of --history rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "history/history.h"

static struct hist_config cfg(uint32_t size, uint64_t ttl_ms, uint64_t cap)
{
    struct hist_config c;
    memset(&c, 0, sizeof c);
    c.room = (struct hist_limits){size, ttl_ms};
    c.user = c.room;
    c.memory_cap = cap;
    return c;
}

static struct wh_msg *frame(uint32_t len)
{
    struct wh_msg *m = msg_new(len);
    memset(m->data, 'x', len);
    return m;
}

/* Appends n frames of len bytes; returns the last position. */
static uint64_t append_n(struct hist_stream *s, int n, uint32_t len)
{
    uint64_t seq = 0;
    for (int i = 0; i < n; i++) {
        struct wh_msg *m = frame(len);
        hist_lock(s);
        seq = hist_append(s, m, false);
        hist_unlock(s);
        msg_unref(m);
    }
    return seq;
}

static void test_positions_and_reads(void **state)
{
    (void)state;
    struct hist_config c = cfg(4, 0, 1 << 30);
    struct hist_store *st = hist_store_new(&c);
    bool created;
    struct hist_stream *s = hist_get(st, HIST_ROOM, "r", true, &created);
    assert_true(created);
    assert_int_equal(strlen(hist_epoch(s)), HIST_EPOCH_LEN);
    struct hist_stream *again = hist_get(st, HIST_ROOM, "r", true, &created);
    assert_false(created);
    assert_ptr_equal(again, s);
    hist_unref(again);
    /* A user and a room of the same name are different streams. */
    struct hist_stream *u = hist_get(st, HIST_USER, "r", true, NULL);
    assert_ptr_not_equal(u, s);
    assert_string_not_equal(hist_epoch(u), hist_epoch(s));
    hist_unref(u);

    assert_int_equal(append_n(s, 6, 10), 6);
    struct hist_entry e[8];
    hist_lock(s);
    assert_int_equal(hist_top(s), 6);
    assert_int_equal(hist_first(s), 3);          /* size 4: 3..6 kept */
    assert_int_equal(hist_read(s, 1, e, 8), -1); /* 2 is gone */
    assert_int_equal(hist_read(s, 6, e, 8), 0);
    int n = hist_read(s, 3, e, 2); /* 4, 5 */
    assert_int_equal(n, 2);
    for (int i = 0; i < n; i++)
        msg_unref(e[i].frame);
    n = hist_read(s, 2, e, 8);
    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++)
        msg_unref(e[i].frame);
    assert_true(hist_can_resume(s, hist_epoch(s), 2));
    assert_true(hist_can_resume(s, hist_epoch(s), 6));
    assert_false(hist_can_resume(s, hist_epoch(s), 1));
    assert_false(hist_can_resume(s, hist_epoch(s), 7)); /* ahead of the stream */
    assert_false(hist_can_resume(s, "0000000000000000", 6));
    assert_false(hist_can_resume(s, NULL, 6));
    hist_unlock(s);
    hist_unref(s);
    hist_store_free(st);
}

static void test_the_frame_is_shared(void **state)
{
    (void)state;
    struct hist_config c = cfg(10, 0, 1 << 30);
    struct hist_store *st = hist_store_new(&c);
    struct hist_stream *s = hist_get(st, HIST_ROOM, "r", true, NULL);
    struct wh_msg *m = frame(5);
    hist_lock(s);
    hist_append(s, m, true);
    struct hist_entry e;
    assert_int_equal(hist_read(s, 0, &e, 1), 1);
    hist_unlock(s);
    assert_ptr_equal(e.frame, m); /* the very frame, not a copy */
    assert_true(hist_entry_presence(&e));
    assert_int_equal(atomic_load(&m->refs), 3); /* ours, the history's, the read's */
    msg_unref(e.frame);
    msg_unref(m);
    hist_unref(s);
    hist_store_free(st);
}

static void test_size_zero_keeps_position_only(void **state)
{
    (void)state;
    struct hist_config c = cfg(100, 0, 1 << 30);
    char err[128];
    assert_int_equal(hist_rules_parse("stats:0:0,live-*:5:30s", &c, err, sizeof err), 0);
    struct hist_store *st = hist_store_new(&c);
    struct hist_stream *s = hist_get(st, HIST_ROOM, "stats", true, NULL);
    assert_int_equal(append_n(s, 3, 10), 3);
    struct hist_totals t;
    hist_totals(st, &t);
    assert_int_equal(t.messages, 0);
    hist_lock(s);
    assert_true(hist_can_resume(s, hist_epoch(s), 3));
    assert_false(hist_can_resume(s, hist_epoch(s), 2));
    hist_unlock(s);
    hist_unref(s);
    struct hist_limits l = hist_limits_for(&c, HIST_ROOM, "live-prices");
    assert_int_equal(l.size, 5);
    assert_int_equal(l.ttl_ms, 30000);
    l = hist_limits_for(&c, HIST_ROOM, "lobby");
    assert_int_equal(l.size, 100);
    l = hist_limits_for(&c, HIST_USER, "stats"); /* rules are for rooms */
    assert_int_equal(l.size, 100);
    hist_store_free(st);
}

static void test_rules_parse(void **state)
{
    (void)state;
    struct hist_config c = cfg(1, 0, 1);
    char err[128];
    assert_int_equal(hist_rules_parse("a:b:1:2m", &c, err, sizeof err), 0);
    assert_string_equal(c.rules[0].pattern, "a:b"); /* the last two ':' split */
    assert_int_equal(c.rules[0].lim.ttl_ms, 120000);
    assert_int_equal(hist_rules_parse("", &c, err, sizeof err), 0);
    const char *bad[] = {"x",      "x:1",  ":1:1", "x:-1:1",     "x:1:-1",
                         "x:1:1y", "x::1", "x:1:", "x:2000000:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct hist_config d = cfg(1, 0, 1);
        assert_int_equal(hist_rules_parse(bad[i], &d, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
}

static void test_memory_cap_evicts_least_recent(void **state)
{
    (void)state;
    /* Ten streams of 20 frames of ~1 KiB against a 64 KiB cap. */
    struct hist_config c = cfg(20, 0, 64 * 1024);
    struct hist_store *st = hist_store_new(&c);
    struct hist_stream *s[10];
    char name[16];
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "r%d", i);
        s[i] = hist_get(st, HIST_ROOM, name, true, NULL);
    }
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 10; i++) {
            append_n(s[i], 1, 1000);
            hist_enforce_cap(st);
        }
    struct hist_totals t;
    hist_totals(st, &t);
    assert_true(t.bytes <= c.memory_cap);
    assert_true(t.evicted_messages > 0);
    assert_true(t.evicted_streams > 0);
    assert_int_equal(t.streams, 10); /* referenced streams stay, only history goes */
    /* The last one appended to keeps its latest message; positions go on; some
     * streams lost the start of theirs and say so. */
    int lost = 0;
    for (int i = 0; i < 10; i++) {
        hist_lock(s[i]);
        assert_int_equal(hist_top(s[i]), 20);
        if (!hist_can_resume(s[i], hist_epoch(s[i]), 0)) lost++;
        if (i == 9) assert_true(hist_first(s[i]) <= 20);
        hist_unlock(s[i]);
    }
    assert_true(lost > 0);
    for (int i = 0; i < 10; i++)
        hist_unref(s[i]);
    hist_store_free(st);
}

static void test_sweep_forgets_unused_streams(void **state)
{
    (void)state;
    struct hist_config c = cfg(10, 0, 1 << 30); /* ttl 0: no age limit */
    struct hist_store *st = hist_store_new(&c);
    struct hist_stream *a = hist_get(st, HIST_ROOM, "kept", true, NULL);
    struct hist_stream *b = hist_get(st, HIST_ROOM, "empty", true, NULL);
    append_n(a, 2, 10);
    char epoch[HIST_EPOCH_LEN + 1];
    snprintf(epoch, sizeof epoch, "%s", hist_epoch(b));
    hist_unref(a);
    hist_unref(b);
    hist_sweep(st);
    struct hist_totals t;
    hist_totals(st, &t);
    assert_int_equal(t.streams, 1); /* "empty" had nothing to keep */
    struct hist_stream *b2 = hist_get(st, HIST_ROOM, "empty", true, NULL);
    assert_string_not_equal(hist_epoch(b2), epoch); /* a new stream, a new epoch */
    hist_unref(b2);
    a = hist_get(st, HIST_ROOM, "kept", false, NULL);
    assert_non_null(a);
    hist_lock(a);
    assert_int_equal(hist_top(a), 2);
    hist_unlock(a);
    hist_unref(a);
    assert_null(hist_get(st, HIST_ROOM, "never", false, NULL));
    char longname[HIST_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_null(hist_get(st, HIST_ROOM, longname, true, NULL)); /* no valid id is so long */
    hist_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_positions_and_reads),
        cmocka_unit_test(test_the_frame_is_shared),
        cmocka_unit_test(test_size_zero_keeps_position_only),
        cmocka_unit_test(test_rules_parse),
        cmocka_unit_test(test_memory_cap_evicts_least_recent),
        cmocka_unit_test(test_sweep_forgets_unused_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
