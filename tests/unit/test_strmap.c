/*
 * test_strmap.c: the string-keyed hash map and the loop work queue.
 */
#include "internal.h"

#include "testutils.h"

#include "loop.h"
#include "strmap.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

START_TEST(test_put_get_remove)
{
    struct sg_strmap *m = sg_strmap_new();
    int a = 1, b = 2;

    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(sg_strmap_get(m, "x"));
    ck_assert_int_eq(sg_strmap_put(m, "x", &a), 0);
    ck_assert_ptr_eq(sg_strmap_get(m, "x"), &a);
    /* Replacing keeps one entry. */
    ck_assert_int_eq(sg_strmap_put(m, "x", &b), 0);
    ck_assert_ptr_eq(sg_strmap_get(m, "x"), &b);
    ck_assert_uint_eq(sg_strmap_size(m), 1);
    /* A prefix or an extension of a key is another key. */
    ck_assert_ptr_null(sg_strmap_get(m, ""));
    ck_assert_ptr_null(sg_strmap_get(m, "xx"));
    ck_assert_ptr_eq(sg_strmap_remove(m, "x"), &b);
    ck_assert_ptr_null(sg_strmap_remove(m, "x"));
    ck_assert_uint_eq(sg_strmap_size(m), 0);
    sg_strmap_free(m);
    sg_strmap_free(NULL);
}
END_TEST

static int count_entries(void *opaque, const char *key, void *value)
{
    size_t *n = opaque;
    /* Each value is the index encoded in its key. */
    ck_assert_int_eq((int)strtol(key + 1, NULL, 10), *(int *)value);
    (*n)++;
    return 0;
}

START_TEST(test_many_keys_survive_growth)
{
    enum { N = 20000 };
    struct sg_strmap *m = sg_strmap_new();
    static int vals[N];
    char key[32];
    size_t seen = 0;

    for (int i = 0; i < N; i++) {
        vals[i] = i;
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(sg_strmap_put(m, key, &vals[i]), 0);
    }
    ck_assert_uint_eq(sg_strmap_size(m), N);
    for (int i = 0; i < N; i += 7) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_ptr_eq(sg_strmap_get(m, key), &vals[i]);
    }
    sg_strmap_foreach(m, count_entries, &seen);
    ck_assert_uint_eq(seen, N);
    for (int i = 0; i < N; i += 2) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_ptr_eq(sg_strmap_remove(m, key), &vals[i]);
    }
    ck_assert_uint_eq(sg_strmap_size(m), N / 2);
    snprintf(key, sizeof(key), "k%d", 2);
    ck_assert_ptr_null(sg_strmap_get(m, key));
    snprintf(key, sizeof(key), "k%d", 3);
    ck_assert_ptr_eq(sg_strmap_get(m, key), &vals[3]);
    sg_strmap_free(m);
}
END_TEST

/* The loop test runs in its own forked process: plain globals are fine. */
static int values[32];
static int seen_order[64];
static int n_seen;

static void record(void *arg)
{
    seen_order[n_seen++] = *(int *)arg;
}

static void poster(void *arg)
{
    struct sg_loop_queue *q = arg;

    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(sg_loop_post(q, record, &values[i]), 0);
}

START_TEST(test_loop_post_runs_in_order_on_loop)
{
    uv_loop_t loop;
    struct sg_loop_queue *q;
    uv_thread_t t;

    uv_loop_init(&loop);
    q = sg_loop_queue_new(&loop, NULL);
    ck_assert_ptr_nonnull(q);
    for (int i = 0; i < 32; i++)
        values[i] = i;
    uv_thread_create(&t, poster, q);
    uv_thread_join(&t);
    /* Nothing runs before the loop does. */
    ck_assert_int_eq(n_seen, 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(n_seen, 32);
    for (int i = 0; i < 32; i++)
        ck_assert_int_eq(seen_order[i], i);
    /* Queued items still run at close; afterwards posts are refused. */
    ck_assert_int_eq(sg_loop_post(q, record, &values[7]), 0);
    sg_loop_queue_close(q);
    ck_assert_int_eq(sg_loop_post(q, record, &values[0]), -1);
    ck_assert_int_eq(n_seen, 33);
    ck_assert_int_eq(seen_order[32], 7);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

static Suite *strmap_suite(void)
{
    Suite *s = suite_create("strmap");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_put_get_remove);
    tcase_add_test(tc, test_many_keys_survive_growth);
    tcase_add_test(tc, test_loop_post_runs_in_order_on_loop);
    suite_add_tcase(s, tc);
    return s;
}

SG_TEST_MAIN(strmap_suite)
