/* Unit tests for the ordered set in sorted blocks (base/ordset.h): random inserts and
 * removes (enough to split, merge and drop blocks) checked against a sorted
 * reference after every round, finds and seeks from present, absent and NULL keys, keys
 * arriving in order (the append path), blocks kept at least three quarters full by
 * handing entries to neighbours, paging through the whole set, emptying it
 * (no block left), duplicates refused, and clearing. Prints, without asserting on
 * it, the cost of 100k inserts and seeks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/ordset.h"

#define N 4000

static char keys[N][16];

/* Entries are the key strings themselves. */
static const char *key_of(const void *e)
{
    return e;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static size_t present(const unsigned char *in, const char **out)
{
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        if (in[i]) out[n++] = keys[i];
    qsort(out, n, sizeof *out, cmp);
    return n;
}

static void check_equal(const struct ordset *s, const unsigned char *in)
{
    static const char *ref[N];
    size_t n = present(in, ref);
    assert_int_equal(ordset_count(s), n);
    struct ordset_pos p;
    size_t k = 0;
    for (const char *e = ordset_after(s, NULL, &p); e; e = ordset_next(s, &p), k++) {
        assert_true(k < n);
        assert_ptr_equal(e, ref[k]);
    }
    assert_int_equal(k, n);
    /* Every block holds something: n entries need at least n / ORDSET_BLOCK. */
    assert_true(s->nb <= n);
    assert_true((size_t)s->nb * ORDSET_BLOCK >= n);
    for (size_t i = 0; i < n; i += 7) {
        const char *e = ordset_after(s, ref[i], &p);
        if (i + 1 < n)
            assert_ptr_equal(e, ref[i + 1]);
        else
            assert_null(e);
        char probe[20];
        snprintf(probe, sizeof probe, "%s!", ref[i]); /* just after ref[i], absent */
        e = ordset_after(s, probe, &p);
        if (i + 1 < n)
            assert_ptr_equal(e, ref[i + 1]);
        else
            assert_null(e);
    }
    if (n) assert_ptr_equal(ordset_after(s, "", &p), ref[0]); /* before every key */
    /* find: every key, present or not, and keys between and around them */
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(ordset_find(s, keys[i]), in[i] ? keys[i] : NULL);
    assert_null(ordset_find(s, ""));
    assert_null(ordset_find(s, "k!"));
    assert_null(ordset_find(s, "l"));
}

static void test_random_against_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < N; i++)
        snprintf(keys[i], sizeof keys[i], "k%lu", (unsigned long)((i * 7919) % 100003));
    struct ordset s;
    ordset_init(&s, key_of);
    static unsigned char in[N];
    memset(in, 0, sizeof in);
    srand(7);
    for (int round = 0; round < 30; round++) {
        /* Rounds 10-19 mostly remove (blocks thin out, merge and go), the others mostly
         * insert. */
        int insert_share = round >= 10 && round < 20 ? 1 : 3;
        for (int op = 0; op < 2000; op++) {
            size_t i = (size_t)rand() % N;
            if (rand() % 4 < insert_share) {
                assert_int_equal(ordset_insert(&s, keys[i]), in[i] ? 1 : 0);
                in[i] = 1;
            } else {
                assert_ptr_equal(ordset_remove(&s, keys[i]), in[i] ? keys[i] : NULL);
                in[i] = 0;
            }
        }
        check_equal(&s, in);
    }
    /* Emptied one by one: no block is left behind. */
    for (size_t i = 0; i < N; i++)
        if (in[i]) assert_ptr_equal(ordset_remove(&s, keys[i]), keys[i]);
    assert_int_equal(ordset_count(&s), 0);
    assert_int_equal(s.nb, 0);
    struct ordset_pos p;
    assert_null(ordset_after(&s, NULL, &p));
    assert_null(ordset_after(&s, "a", &p));
    assert_null(ordset_find(&s, "a"));
    assert_null(ordset_remove(&s, "a"));
    assert_int_equal(ordset_insert(&s, (void *)"a"), 0);
    assert_string_equal(ordset_after(&s, NULL, &p), "a");
    ordset_clear(&s);
    assert_int_equal(ordset_count(&s), 0);
    assert_int_equal(ordset_insert(&s, (void *)"b"), 0); /* usable after clear */
    ordset_clear(&s);
}

/* Keys in no order and keys ascending from the middle of the set (user ids that
 * connect in numeric order: "u1", "u10", "u100", "u1000", "u1001", ...): a full
 * block gives an entry to a neighbour with room before it splits, so blocks end up
 * at least three quarters full (half full with splits alone). */
static void test_blocks_stay_full(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        for (size_t i = 0; i < N; i++)
            snprintf(keys[i], sizeof keys[i], order ? "u%lu" : "k%lu",
                     order ? (unsigned long)i : (unsigned long)((i * 7919) % 100003));
        struct ordset s;
        ordset_init(&s, key_of);
        for (size_t i = 0; i < N; i++)
            assert_int_equal(ordset_insert(&s, keys[i]), 0);
        assert_int_equal(ordset_count(&s), N);
        assert_true((size_t)s.nb * ORDSET_BLOCK * 3 <= (size_t)N * 4);
        static unsigned char all[N];
        memset(all, 1, sizeof all);
        check_equal(&s, all);
        ordset_clear(&s);
    }
}

static void test_in_order_and_paging(void **state)
{
    (void)state;
    struct ordset s;
    ordset_init(&s, key_of);
    static char k[1000][16];
    /* Ascending keys: each full block stays full (the append path). */
    for (int i = 0; i < 1000; i++) {
        snprintf(k[i], sizeof k[i], "%03d", i);
        assert_int_equal(ordset_insert(&s, k[i]), 0);
    }
    assert_int_equal(s.nb, (1000 + ORDSET_BLOCK - 1) / ORDSET_BLOCK);
    assert_int_equal(ordset_insert(&s, k[500]), 1);
    /* Pages of 33 from a cursor: each key once, in order. */
    const char *cursor = NULL;
    int seen = 0;
    for (;;) {
        struct ordset_pos p;
        const char *e = ordset_after(&s, cursor, &p);
        for (int got = 0; e && got < 33; e = ordset_next(&s, &p), got++) {
            char want[16];
            snprintf(want, sizeof want, "%03d", seen++);
            assert_string_equal(e, want);
            cursor = e;
        }
        if (!e) break;
    }
    assert_int_equal(seen, 1000);
    /* Removing the cursor's own key does not break the next seek. */
    struct ordset_pos p;
    assert_non_null(ordset_remove(&s, "500"));
    assert_string_equal(ordset_after(&s, "500", &p), "501");
    assert_null(ordset_remove(&s, "500"));
    assert_null(ordset_remove(&s, "zzz"));
    assert_null(ordset_after(&s, "999", &p));
    ordset_clear(&s);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cost_printed(void **state)
{
    (void)state;
    enum { M = 100000 };
    char(*k)[24] = malloc(sizeof *k * M);
    assert_non_null(k);
    for (int i = 0; i < M; i++)
        snprintf(k[i], sizeof k[i], "user-%d", (int)(((uint64_t)i * 2654435761u) % 1000003));
    struct ordset s;
    ordset_init(&s, key_of);
    double t0 = now_s();
    for (int i = 0; i < M; i++)
        assert_true(ordset_insert(&s, k[i]) >= 0);
    double t1 = now_s();
    size_t walked = 0;
    for (int i = 0; i < M; i++) {
        struct ordset_pos p;
        const char *e = ordset_after(&s, k[i], &p);
        for (int j = 0; e && j < 10; j++, e = ordset_next(&s, &p))
            walked++;
    }
    double t2 = now_s();
    printf("ordset: %d inserts %.0f ns each; %d seeks+10-step walks %.0f ns each (%zu); "
           "%u blocks, %.1f bytes per entry\n",
           M, (t1 - t0) * 1e9 / M, M, (t2 - t1) * 1e9 / M, walked, s.nb,
           (double)s.nb * (8.0 * ORDSET_BLOCK + 16) / M);
    ordset_clear(&s);
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_in_order_and_paging),
        cmocka_unit_test(test_blocks_stay_full),
        cmocka_unit_test(test_cost_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
