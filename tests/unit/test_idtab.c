/* Unit tests for the tables of records by id (hub/idtab.c, struct id_tab), as each
 * shard's table of online users uses them (the per-address table is the same code
 * on another record). Random adds and removes
 * checked against a reference after every round, once with the real hash and once
 * with hashes squeezed into a few values (long runs that wrap around the end of the
 * slot array, so the backward shift on removal is exercised), growing through many
 * sizes and shrinking back when emptied. Prints, without asserting on it, the cost of
 * a lookup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hub/internal.h"

#define N 3000

static struct online_user *rec[N];

static void make_records(uint32_t squeeze)
{
    for (int i = 0; i < N; i++) {
        char id[32];
        int len = snprintf(id, sizeof id, "user%d", i);
        rec[i] = calloc(1, sizeof *rec[i] + (size_t)len + 1);
        assert_non_null(rec[i]);
        memcpy(rec[i]->key, id, (size_t)len + 1);
        /* squeeze: few distinct hashes, many of them near the top slot (wrap-around) */
        rec[i]->hashv = squeeze ? UINT32_MAX - (user_hash(id) % squeeze) : user_hash(id);
    }
}

static void free_records(void)
{
    for (int i = 0; i < N; i++)
        free(rec[i]);
}

static struct online_user *find(const struct id_tab *t, int i, uint32_t squeeze)
{
    return squeeze ? ou_of(id_tab_find(t, rec[i]->key, rec[i]->hashv))
                   : user_tab_find(t, rec[i]->key);
}

static void check(const struct id_tab *t, const unsigned char *in, uint32_t squeeze)
{
    uint32_t n = 0;
    for (int i = 0; i < N; i++) {
        struct online_user *u = find(t, i, squeeze);
        if (in[i]) {
            assert_ptr_equal(u, rec[i]);
            n++;
        } else {
            assert_null(u);
        }
    }
    assert_int_equal(t->n, n);
    /* load at most 3/4, and every stored record is one of ours, once */
    assert_true(t->n * 4 <= t->cap * 3 || t->cap == 0);
    uint32_t seen = 0;
    for (uint32_t s = 0; s < t->cap; s++)
        seen += t->slot[s] != NULL;
    assert_int_equal(seen, n);
}

static void random_rounds(uint32_t squeeze)
{
    make_records(squeeze);
    struct id_tab t = {0};
    static unsigned char in[N];
    memset(in, 0, sizeof in);
    srand(squeeze + 7);
    for (int round = 0; round < 12; round++) {
        /* rounds 0-5 mostly add, 6-11 mostly remove: grow, then shrink */
        int add_pct = round < 6 ? 80 : 15;
        for (int k = 0; k < N; k++) {
            int i = rand() % N;
            if (!in[i] && rand() % 100 < add_pct) {
                assert_int_equal(user_tab_add(&t, rec[i]), 0);
                in[i] = 1;
            } else if (in[i] && rand() % 100 >= add_pct) {
                user_tab_del(&t, rec[i]);
                in[i] = 0;
            }
        }
        check(&t, in, squeeze);
    }
    uint32_t grown = t.cap;
    for (int i = 0; i < N; i++)
        if (in[i]) {
            user_tab_del(&t, rec[i]);
            in[i] = 0;
        }
    check(&t, in, squeeze);
    assert_true(t.cap <= 16 && t.cap <= grown); /* memory given back */
    user_tab_del(&t, rec[0]);                   /* absent: nothing happens */
    assert_int_equal(t.n, 0);
    id_tab_free(&t);
    assert_null(t.slot);
    free_records();
}

static void test_real_hash(void **state)
{
    (void)state;
    random_rounds(0);
}

static void test_colliding_hashes(void **state)
{
    (void)state;
    random_rounds(5);
}

static void test_empty_table(void **state)
{
    (void)state;
    struct id_tab t = {0};
    assert_null(user_tab_find(&t, "nobody"));
    assert_null(id_tab_find(&t, "nobody", 3));
    id_tab_free(&t);
}

static void test_cost_printed(void **state)
{
    (void)state;
    make_records(0);
    struct id_tab t = {0};
    for (int i = 0; i < N; i++)
        assert_int_equal(user_tab_add(&t, rec[i]), 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    size_t found = 0;
    for (int r = 0; r < 100; r++)
        for (int i = 0; i < N; i++)
            found += user_tab_find(&t, rec[i]->key) != NULL;
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(found, (size_t)100 * N);
    double ns =
        ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / (100.0 * N);
    printf("idtab: %d users in %u slots, lookup %.0f ns\n", N, t.cap, ns);
    id_tab_free(&t);
    free_records();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_hash),
        cmocka_unit_test(test_colliding_hashes),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_cost_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
