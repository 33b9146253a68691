/* Unit tests for the ordered string index (base/skiplist.h): random inserts and removes
 * checked against a sorted reference, seeks from present, absent and NULL keys, paging
 * through the whole set (every key once, in order), duplicates refused, and clearing.
 * Prints, without asserting on it, the cost of 100k inserts and of 100k seeks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/skiplist.h"

#define N 4000

static char keys[N][16];

static int cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The reference: the keys present, sorted. */
static size_t present(const unsigned char *in, const char **out)
{
    size_t n = 0;
    for (size_t i = 0; i < N; i++)
        if (in[i]) out[n++] = keys[i];
    qsort(out, n, sizeof *out, cmp);
    return n;
}

static void check_equal(const struct skiplist *s, const unsigned char *in)
{
    static const char *ref[N];
    size_t n = present(in, ref);
    assert_int_equal(skl_count(s), n);
    size_t k = 0;
    for (struct skl_node *x = skl_after(s, NULL); x; x = skl_next(x), k++) {
        assert_true(k < n);
        assert_string_equal(x->key, ref[k]);
        assert_ptr_equal(x->val, (void *)x->key);
    }
    assert_int_equal(k, n);
    /* Seeks: from each present key, the next one; from absent keys, the next bigger. */
    for (size_t i = 0; i < n; i += 7) {
        struct skl_node *x = skl_after(s, ref[i]);
        if (i + 1 < n)
            assert_string_equal(x->key, ref[i + 1]);
        else
            assert_null(x);
        char probe[20];
        snprintf(probe, sizeof probe, "%s!", ref[i]); /* just after ref[i] */
        x = skl_after(s, probe);
        if (i + 1 < n)
            assert_string_equal(x->key, ref[i + 1]);
        else
            assert_null(x);
    }
}

static void test_random_against_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < N; i++)
        snprintf(keys[i], sizeof keys[i], "k%lu", (unsigned long)((i * 7919) % 100003));
    struct skiplist s;
    skl_init(&s, 42);
    static unsigned char in[N];
    memset(in, 0, sizeof in);
    srand(7);
    for (int round = 0; round < 20; round++) {
        for (int op = 0; op < 2000; op++) {
            size_t i = (size_t)rand() % N;
            if (rand() % 3) {
                int rc = skl_insert(&s, keys[i], keys[i]);
                assert_int_equal(rc, in[i] ? 1 : 0);
                in[i] = 1;
            } else {
                void *v = skl_remove(&s, keys[i]);
                assert_ptr_equal(v, in[i] ? keys[i] : NULL);
                in[i] = 0;
            }
        }
        check_equal(&s, in);
    }
    skl_clear(&s);
    assert_int_equal(skl_count(&s), 0);
    assert_null(skl_after(&s, NULL));
    assert_null(skl_after(&s, "a"));
    assert_int_equal(skl_insert(&s, "a", (void *)"a"), 0); /* usable after clear */
    assert_string_equal(skl_after(&s, NULL)->key, "a");
    skl_clear(&s);
}

static void test_paging_covers_all(void **state)
{
    (void)state;
    struct skiplist s;
    skl_init(&s, 1);
    static char k[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(k[i], sizeof k[i], "%03d", (i * 37) % 1000);
        assert_int_equal(skl_insert(&s, k[i], k[i]), 0);
    }
    /* Pages of 33 from a cursor: each key once, in order. */
    const char *cursor = NULL;
    int seen = 0;
    for (;;) {
        struct skl_node *x = skl_after(&s, cursor);
        int got = 0;
        for (; x && got < 33; x = skl_next(x), got++) {
            char want[16];
            snprintf(want, sizeof want, "%03d", seen++);
            assert_string_equal(x->key, want);
            cursor = x->key;
        }
        if (!x) break;
    }
    assert_int_equal(seen, 1000);
    /* Removing the cursor's own key does not break the next seek. */
    assert_non_null(skl_remove(&s, "500"));
    assert_string_equal(skl_after(&s, "500")->key, "501");
    assert_null(skl_remove(&s, "500"));
    assert_null(skl_remove(&s, "zzz"));
    skl_clear(&s);
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
        snprintf(k[i], sizeof k[i], "room-%d", (int)(((uint64_t)i * 2654435761u) % 1000003));
    struct skiplist s;
    skl_init(&s, 99);
    double t0 = now_s();
    for (int i = 0; i < M; i++)
        assert_true(skl_insert(&s, k[i], k[i]) >= 0);
    double t1 = now_s();
    size_t walked = 0;
    for (int i = 0; i < M; i++) {
        struct skl_node *x = skl_after(&s, k[i]);
        for (int j = 0; x && j < 10; j++, x = skl_next(x))
            walked++;
    }
    double t2 = now_s();
    printf("skiplist: %d inserts %.0f ns each; %d seeks+10-step walks %.0f ns each (%zu)\n", M,
           (t1 - t0) * 1e9 / M, M, (t2 - t1) * 1e9 / M, walked);
    skl_clear(&s);
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_reference),
        cmocka_unit_test(test_paging_covers_all),
        cmocka_unit_test(test_cost_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
